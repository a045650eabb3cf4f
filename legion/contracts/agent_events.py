"""Events an agent appends about its work (``legion.events.<agent>.task.*``)."""

from __future__ import annotations

from typing import Any, Literal

import msgspec

from legion.contracts.base import Event

__all__ = ["ChatReplied", "SessionStep", "StepKind", "TaskCompleted", "TaskFailed", "TaskStarted", "TaskSteered"]


class TaskStarted(Event, frozen=True, kw_only=True, tag="task.started.v1"):
    task_id: str
    agent: str


class TaskCompleted(Event, frozen=True, kw_only=True, tag="task.completed.v1"):
    task_id: str
    agent: str
    output: Any = None
    summary: str = ""
    iterations: int = 0


class TaskFailed(Event, frozen=True, kw_only=True, tag="task.failed.v1"):
    task_id: str
    agent: str
    reason: str
    retryable: bool = False


class TaskSteered(Event, frozen=True, kw_only=True, tag="task.steered.v1"):
    """A Steer command arrived: ``accepted`` if a running task takes it before its next model call."""

    task_id: str
    agent: str
    text: str
    accepted: bool = True
    reason: str = ""


class ChatReplied(Event, frozen=True, kw_only=True, tag="chat.replied.v1"):
    """The agent's answer to one chat turn (its tokens were streamed on ``legion.stream.<agent>.<session>``)."""

    session: str
    agent: str
    text: str
    rounds: int = 1
    error: str = ""
    """Set when the turn ended without an answer (budget, model unavailable, round limit)."""


StepKind = Literal["user", "steer", "llm", "tool_start", "tool", "summary", "reset", "end"]


class SessionStep(Event, frozen=True, kw_only=True, tag="agent.step.v1"):
    """One recorded step of a task or chat session, appended before the loop moves on.

    ``session`` is ``task.<id>`` or ``chat.<id>``; ``step`` counts from 1. ``data`` by kind:
    ``user``/``steer``: ``text``; ``llm``: the model's ``content``, ``tool_calls``, token counts and
    ``cost_usd``; ``tool_start``: ``call_id``, ``name``, ``arguments``; ``tool``: the same plus
    ``result`` and ``ok``; ``summary``: ``summary`` and ``facts`` after a context compaction;
    ``reset``: nothing; ``end``: ``status`` (completed, failed) and the task's outcome.
    A resumed session is rebuilt from these steps: recorded model replies are not asked again and
    recorded tool results are not produced again.
    """

    agent: str
    session: str
    step: int
    kind: StepKind
    data: dict[str, Any] = msgspec.field(default_factory=dict)
