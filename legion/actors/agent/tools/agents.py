"""send_task: hand a task to another agent this one may message (legion.yaml ``can_message``).

The tool publishes :class:`AssignTask` to ``legion.agent.<other>.inbox``, which reaches the INBOX
stream through LEGION's inbox service export. The server, not this module, decides who may message
whom: the agent's credential may publish only the inboxes of its ``can_message`` agents, so the
check here only gives the model a clear answer before it tries.

The task id is derived from the call's key, and ``Nats-Msg-Id`` is the call's key, so a call
repeated after a crash is stored once. The tool does not wait for the result: an agent cannot read
another agent's events, so the receiver reports back on the shared blackboard if asked to.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from typing import Any, Final

from pydantic import Field

from legion.actors.agent.tools._store import store
from legion.actors.agent.tools.base import Params, Tool, ToolContext, ToolError
from legion.broker import Broker
from legion.contracts import subjects as subj
from legion.contracts.commands import AssignTask

__all__ = ["MAX_TASK_CHARS", "agent_tools", "task_id_of"]

MAX_TASK_CHARS: Final = 16_000


def task_id_of(call_key: str) -> str:
    """The task id of a send_task call: the same for a repeated call, unique across calls."""
    return hashlib.sha256(call_key.encode()).hexdigest()[:24]


class SendTaskParams(Params):
    agent: str = Field(description="The agent to give the task to (one you may message)")
    text: str = Field(min_length=1, max_length=MAX_TASK_CHARS, description="The task, complete and self-contained")


def agent_tools(broker: Broker, agent: str, can_message: Iterable[str]) -> list[Tool]:
    """send_task, limited to the agents in ``can_message`` (the server enforces the same list)."""
    allowed = tuple(sorted(set(can_message)))
    listed = ", ".join(allowed) or "none"

    async def send_task(p: SendTaskParams, ctx: ToolContext) -> dict[str, Any]:
        if p.agent not in allowed:
            raise ToolError("denied", f"you may not send tasks to {p.agent!r}; agents you may message: {listed}")
        task_id = task_id_of(ctx.call_key)
        subject = subj.AGENT_INBOX.render(agent=p.agent)
        body = AssignTask(task_id=task_id, text=p.text, requested_by=agent)
        denied = f"the server refused sending to {p.agent!r} with your credential (agents: {listed})"
        ack = await store(broker, subject, body, ctx, what=f"the task for {p.agent!r}", denied=denied)
        return {"task_id": task_id, "sent_to": p.agent, "duplicate": ack.duplicate}

    return [
        Tool(
            "send_task",
            f"Give a task to another agent (you may message: {listed}). It works on it on its own; this "
            "returns at once with the task id and never with the result. To get a result back, ask in the "
            "text for it to be written on the shared blackboard under a key you name, then read it with "
            "bb_read or bb_watch.",
            SendTaskParams,
            send_task,
            side_effects=True,
            group="agents",
        )
    ]
