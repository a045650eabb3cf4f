"""What a schedule should do now: fire a slot, skip slots, or wait. Pure: ``now`` is an argument.

:func:`plan` looks at the slots after the last handled one (``row.after_ns``) whose fire time
(slot + its jitter) has come:

- a slot whose fire time is older than the catch-up window is **missed**;
- of the slots inside the window only the **latest** fires; the earlier ones are **superseded**.
  After an hour of downtime an ``every 5m`` schedule fires once, not twelve times: a task that was
  due at 10:05 and at 10:10 asks the agent for the same work twice, and each firing may spend money.
- while the previous firing's task still runs, the overlap policy decides: ``allow`` fires,
  ``skip`` records the slot as skipped (``overlap``), ``queue_one`` keeps it waiting (no event) until
  the task ends or stops counting as running, when it fires if it is still inside the window.

Skips come in runs (first slot, last slot, count), one event per run, so a long outage costs one
``schedule.skipped`` event, not one per slot. The caller appends the skips, then the firing, each
conditional on the schedule's last sequence, and plans again once its table applied them.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from legion.actors.scheduler.table import ScheduleRow, slot_key, task_id_for
from legion.actors.scheduler.timing import NS, jitter_ns
from legion.contracts.scheduler import SkipReason

__all__ = ["MAX_COUNTED", "Firing", "Plan", "Skip", "fire_time", "plan"]

MAX_COUNTED = 1000
"""Missed cron slots counted one by one after downtime (about 4 ms); beyond that the count is a floor."""


@dataclass(frozen=True, slots=True)
class Firing:
    slot_ns: int
    fire_ns: int
    key: str
    task_id: str
    late_ns: int


@dataclass(frozen=True, slots=True)
class Skip:
    first_ns: int
    last_ns: int
    count: int
    reason: SkipReason
    detail: str = ""
    running_task_id: str = ""


@dataclass(frozen=True, slots=True)
class Plan:
    skips: tuple[Skip, ...] = ()
    fire: Firing | None = None
    wake_ns: int | None = None
    """When to look at this schedule again (None: only after a change to it)."""
    waiting: bool = False
    """A slot waits for the running task (queue_one)."""

    @property
    def acts(self) -> bool:
        return bool(self.skips) or self.fire is not None


@dataclass(slots=True)
class _Run:
    reason: SkipReason
    first: int = 0
    last: int = 0
    count: int = 0

    def add(self, slot: int) -> None:
        if not self.count:
            self.first = slot
        self.last = slot
        self.count += 1

    def skip(self, **kw: str) -> list[Skip]:
        if not self.count:
            return []
        return [Skip(first_ns=self.first, last_ns=self.last, count=self.count, reason=self.reason, **kw)]


@dataclass(slots=True)
class _Due:
    missed: _Run = field(default_factory=lambda: _Run("missed"))
    missed_detail: str = ""
    in_window: list[int] = field(default_factory=list)
    next_fire_ns: int | None = None


def fire_time(row: ScheduleRow, slot_ns: int) -> int:
    timer = row.timer
    assert timer is not None
    return slot_ns + jitter_ns(row.agent, row.schedule_id, slot_ns, timer.jitter_ns)


def _due(row: ScheduleRow, now_ns: int) -> _Due:
    timer = row.timer
    assert timer is not None
    due = _Due()
    window_start = now_ns - int(row.policy.catch_up_window_s * NS)
    after = row.after_ns
    # Long outages: every slot at or before window_start - max jitter is surely missed. Count them
    # (exactly for intervals, up to MAX_COUNTED for cron) and jump past them instead of planning each.
    horizon = window_start - timer.jitter_ns - 1
    first = timer.next_after(after)
    if first is not None and first <= horizon:
        last = timer.last_at_or_before(horizon)
        assert last is not None
        if timer.kind == "every":
            count = (last - first) // timer.every_ns + 1
        else:
            count = len(timer.slots(after, last, MAX_COUNTED))
            if count >= MAX_COUNTED:
                due.missed_detail = f"at least {MAX_COUNTED} slots (not all counted)"
        due.missed.add(first)
        due.missed.last, due.missed.count = last, count
        after = last
    slot = timer.next_after(after)
    while slot is not None and slot <= now_ns:  # at most the window's slots (+ jitter) from here
        fire = fire_time(row, slot)
        if fire > now_ns:
            break
        if fire < window_start:
            due.missed.add(slot)
        else:
            due.in_window.append(slot)
        slot = timer.next_after(slot)
    if slot is not None:
        due.next_fire_ns = fire_time(row, slot)
    return due


def plan(row: ScheduleRow, now_ns: int) -> Plan:
    """The decision for one schedule at ``now_ns`` (see the module docstring)."""
    if row.timer is None or row.paused:
        return Plan()
    due = _due(row, now_ns)
    skips = due.missed.skip(detail=due.missed_detail) if due.missed_detail else due.missed.skip()
    if not due.in_window:
        return Plan(skips=tuple(skips), wake_ns=due.next_fire_ns)
    *older, latest = due.in_window
    superseded = _Run("superseded")
    for s in older:
        superseded.add(s)
    skips += superseded.skip()
    if row.is_running(now_ns) and row.policy.overlap != "allow":
        if row.policy.overlap == "skip":
            overlap = Skip(
                first_ns=latest,
                last_ns=latest,
                count=1,
                reason="overlap",
                detail=f"task {row.running_task_id} was still running",
                running_task_id=row.running_task_id,
            )
            return Plan(skips=(*skips, overlap), wake_ns=due.next_fire_ns)
        # queue_one: the latest slot waits; look again when the task stops counting as running,
        # when the slot leaves the window, or when a later slot comes
        until_free = row.running_since_ns + int(row.policy.running_for_s * NS)
        leaves_window = fire_time(row, latest) + int(row.policy.catch_up_window_s * NS) + 1
        wake = min(t for t in (until_free, leaves_window, due.next_fire_ns) if t is not None)
        return Plan(skips=tuple(skips), wake_ns=wake, waiting=True)
    fire = fire_time(row, latest)
    firing = Firing(
        slot_ns=latest,
        fire_ns=fire,
        key=slot_key(row.agent, row.schedule_id, latest),
        task_id=task_id_for(row.schedule_id, latest),
        late_ns=max(0, now_ns - fire),
    )
    return Plan(skips=tuple(skips), fire=firing, wake_ns=due.next_fire_ns)
