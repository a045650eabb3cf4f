"""The schedule events the scheduler writes for a decision, with their message ids. Pure."""

from __future__ import annotations

from legion.actors.scheduler.plan import Firing, Skip
from legion.actors.scheduler.table import ScheduleRow
from legion.actors.scheduler.timing import NS
from legion.contracts.scheduler import ScheduleFired, ScheduleSkipped

__all__ = ["fired_event", "invalid_event", "skipped_event"]


def skipped_event(row: ScheduleRow, skip: Skip) -> tuple[ScheduleSkipped, str]:
    event = ScheduleSkipped(
        schedule_id=row.schedule_id,
        agent=row.agent,
        slot_ns=skip.first_ns,
        last_slot_ns=skip.last_ns,
        count=skip.count,
        reason=skip.reason,
        detail=skip.detail,
        running_task_id=skip.running_task_id,
        trace=row.trace,
    )
    return event, f"sched:{row.agent}:{row.schedule_id}:{skip.first_ns}:skip:{skip.reason}:{skip.last_ns}"


def invalid_event(row: ScheduleRow) -> tuple[ScheduleSkipped, str]:
    """Reported once per definition (its sequence is in the message id)."""
    event = ScheduleSkipped(
        schedule_id=row.schedule_id,
        agent=row.agent,
        slot_ns=0,
        last_slot_ns=0,
        count=0,
        reason="invalid",
        detail=row.invalid,
        trace=row.trace,
    )
    return event, f"sched:{row.agent}:{row.schedule_id}:invalid:{row.definition_seq}"


def fired_event(row: ScheduleRow, firing: Firing, *, probe_seq: int = 0) -> ScheduleFired:
    """Its message id is the slot's key."""
    return ScheduleFired(
        schedule_id=row.schedule_id,
        agent=row.agent,
        slot_ns=firing.slot_ns,
        fire_ns=firing.fire_ns,
        task_id=firing.task_id,
        key=firing.key,
        late_s=firing.late_ns / NS,
        trace=row.trace,
        probe_seq=probe_seq,
    )
