"""Appending to a stream on a tool's behalf: the call key de-duplicates a repeated call, and every
broker failure becomes a :class:`ToolError` the model can read (one mapping for every tool)."""

from __future__ import annotations

from legion.actors.agent.tools.base import ToolContext, ToolError
from legion.broker import Broker, PubAck
from legion.contracts.base import Message
from legion.contracts.errors import LegionError, PermissionDenied, RequestTimeout, Unavailable

__all__ = ["store"]


async def store(
    broker: Broker, subject: str, body: Message, ctx: ToolContext, *, what: str, denied: str | None = None
) -> PubAck:
    """``js_publish`` with ``Nats-Msg-Id`` = the call key. ``what`` names the thing stored in errors."""
    try:
        return await broker.js_publish(subject, body, msg_id=ctx.call_key, trace=ctx.trace or None)
    except PermissionDenied:
        message = denied or f"the server refused publishing to {subject!r} for your credential"
        raise ToolError("denied", message) from None
    except (RequestTimeout, Unavailable) as exc:
        raise ToolError("unavailable", f"{what} was not stored: {exc}", retryable=True) from None
    except LegionError as exc:
        raise ToolError("failed", f"{what} was not stored: {exc}") from None
