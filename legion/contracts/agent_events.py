"""Events an agent appends about its work (``legion.events.<agent>.task.*``)."""

from __future__ import annotations

from typing import Any

from legion.contracts.base import Event

__all__ = ["TaskCompleted", "TaskFailed", "TaskStarted"]


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
