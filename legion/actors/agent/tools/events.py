"""publish_event: the agent appends an event of a type it names to EVENTS, under its own source.

The subject is ``legion.events.<agent>.<type>`` and the body an :class:`AgentEvent`; the server
refuses any other source for the agent's credential. ``Nats-Msg-Id`` is the call's key, so a call
repeated after a crash is stored once.
"""

from __future__ import annotations

import json
import re
from typing import Any, Final

from pydantic import Field

from legion.actors.agent.tools._store import store
from legion.actors.agent.tools.base import Params, Tool, ToolContext, ToolError
from legion.broker import Broker
from legion.contracts import subjects as subj
from legion.contracts.agent_tools import AgentEvent

__all__ = ["MAX_EVENT_BYTES", "RESERVED_EVENT_ROOTS", "event_tools", "validate_event_type"]

MAX_EVENT_BYTES: Final = 64 * 1024
RESERVED_EVENT_ROOTS: Final = frozenset(
    {"task", "user", "actor", "deadletter", "tool", "llm", "model", "cron", "agent", "chat", "ingest", "budget"}
)
"""First tokens Legion itself publishes under an agent's source; publish_event refuses them."""
_TYPE: Final = re.compile(r"[a-z0-9_-]{1,64}(\.[a-z0-9_-]{1,64}){0,7}")


def validate_event_type(event_type: str) -> str:
    """Dotted lower-case tokens (``report.ready``): they become subject tokens. Raises ``invalid_args``."""
    if _TYPE.fullmatch(event_type) is None:
        raise ToolError(
            "invalid_args",
            f"event type {event_type!r} is invalid: use 1 to 8 dot-separated tokens of lower-case letters, "
            "digits, '_' or '-' (e.g. report.ready), because it becomes part of a NATS subject",
        )
    root = event_type.split(".", 1)[0]
    if root in RESERVED_EVENT_ROOTS:
        raise ToolError(
            "invalid_args", f"event types starting with {root!r} are reserved for Legion; choose another name"
        )
    return event_type


class PublishEventParams(Params):
    type: str = Field(description="Dotted lower-case event type, e.g. report.ready")
    data: dict[str, Any] = Field(default_factory=dict, description="The event's JSON payload")


def event_tools(broker: Broker, agent: str) -> list[Tool]:
    """publish_event, which appends :class:`AgentEvent` to ``legion.events.<agent>.<type>``."""

    async def publish_event(p: PublishEventParams, ctx: ToolContext) -> dict[str, Any]:
        event_type = validate_event_type(p.type)
        size = len(json.dumps(p.data, ensure_ascii=False, default=str).encode())
        if size > MAX_EVENT_BYTES:
            raise ToolError("invalid_args", f"data is {size} bytes; an event holds at most {MAX_EVENT_BYTES}")
        subject = subj.EVENTS.render(source=agent, type=event_type)
        body = AgentEvent(agent=agent, event_type=event_type, data=p.data)
        ack = await store(broker, subject, body, ctx, what="the event")
        return {"stream_seq": ack.seq, "subject": subject, "duplicate": ack.duplicate}

    return [
        Tool(
            "publish_event",
            "Publish an event of your own type (e.g. report.ready) for other agents and systems that "
            "subscribe to it. It is stored in the event log under your name.",
            PublishEventParams,
            publish_event,
            side_effects=True,
            group="events",
        )
    ]
