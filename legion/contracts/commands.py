"""Commands that arrive in an agent's inbox (``legion.agent.<agent>.inbox``)."""

from __future__ import annotations

from typing import Any

import msgspec

from legion.contracts.base import Command

__all__ = ["AssignTask", "Cancel", "ChatMessage", "ChatReset", "Steer"]


class AssignTask(Command, frozen=True, kw_only=True, tag="task.assign.v1"):
    """Give an agent a task to work on until it completes or fails."""

    task_id: str
    text: str
    input: dict[str, Any] = msgspec.field(default_factory=dict)
    requested_by: str = ""
    max_iterations: int | None = None


class ChatMessage(Command, frozen=True, kw_only=True, tag="chat.message.v1"):
    """One user turn in a chat session."""

    session: str
    text: str
    sender: str = ""


class ChatReset(Command, frozen=True, kw_only=True, tag="chat.reset.v1"):
    """Forget a chat session's history (saved memories stay)."""

    session: str


class Steer(Command, frozen=True, kw_only=True, tag="task.steer.v1"):
    """A message injected into the agent's current work."""

    text: str
    task_id: str | None = None


class Cancel(Command, frozen=True, kw_only=True, tag="task.cancel.v1"):
    """Stop a task; the agent ends it with TaskFailed(reason='cancelled: ...')."""

    task_id: str
    reason: str = ""
