"""How a scheduler is configured (:class:`SchedulerSpec`)."""

from __future__ import annotations

from dataclasses import dataclass, field

from legion.actors.scheduler.clock import Clock, SystemClock
from legion.actors.scheduler.stream import SCHEDULES
from legion.actors.scheduler.validate import Limits
from legion.broker import EVENTS
from legion.contracts.scheduler import SchedulePut

__all__ = ["SchedulerSpec"]


@dataclass(frozen=True, slots=True)
class SchedulerSpec:
    limits: Limits = field(default_factory=Limits)
    clock: Clock = field(default_factory=SystemClock)
    """Decides which slots are due; tests pass a ManualClock."""
    stream: str = SCHEDULES
    events_stream: str = EVENTS
    concurrency: int = 32
    """Schedules acted on at once (each firing is three appends in a row)."""
    wait_s: float = 10.0
    """How long an append may take to come back through the reader."""
    catch_up_s: float = 300.0
    """How long the start-up replay of SCHEDULES may take."""
    retry_s: float = 5.0
    """After a failed firing (NATS unavailable), the schedule is tried again this much later."""
    redispatch_s: float = 100.0
    """Firings recorded this recently have their task sent again on start (below the 120 s duplicate
    window of INBOX, so a task that had landed is dropped as a duplicate)."""
    service: str = "scheduler"
    """Trusted requests are served on ``legion.svc.<service>.<op>``."""
    agents: tuple[str, ...] | None = None
    """Only these agents' schedules and requests (tests sharing one server); None: every agent's."""
    watch_tasks: bool = True
    """Follow task.completed / task.failed on EVENTS for the overlap policy."""
    declared: tuple[SchedulePut, ...] | None = None
    """legion.yaml's ``schedules:``, synced at start (created, replaced, deleted when no longer
    declared); None: no sync (a scheduler without a fleet file, tests)."""
