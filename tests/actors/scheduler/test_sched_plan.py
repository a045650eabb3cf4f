"""The table as a fold over schedule events, and what plan() decides: catch-up, overlap, pause, idempotency."""

from __future__ import annotations

import time
from datetime import UTC, datetime

from legion.actors.scheduler.plan import MAX_COUNTED, plan
from legion.actors.scheduler.table import ScheduleEvent, ScheduleTable, op_of, slot_key
from legion.actors.scheduler.timing import NS
from legion.contracts import subjects as subj
from legion.contracts.scheduler import (
    OverlapPolicy,
    ScheduleCreated,
    ScheduleDeleted,
    ScheduleFired,
    SchedulePaused,
    SchedulePolicy,
    ScheduleResumed,
    ScheduleSkipped,
    ScheduleSpec,
    ScheduleTask,
    ScheduleUpdated,
)

T0 = int(datetime(2026, 6, 1, 10, 0, 30, tzinfo=UTC).timestamp()) * NS
MIN = 60 * NS


class Log:
    """A stand-in for the stream: sequences and timestamps, folded into a table."""

    def __init__(self) -> None:
        self.table = ScheduleTable()
        self.seq = 0
        self.records: list[tuple[int, int, str, ScheduleEvent]] = []

    def add(self, event: ScheduleEvent, ts: int) -> None:
        self.seq += 1
        subject = subj.SCHEDULES.render(agent=event.agent, schedule=event.schedule_id, op=op_of(event))
        self.records.append((self.seq, ts, subject, event))
        self.table.apply(self.seq, ts, subject, event)


def created(
    sid: str = "job", *, every: str = "5m", overlap: OverlapPolicy = "allow", window: float = 600.0
) -> ScheduleCreated:
    return ScheduleCreated(
        schedule_id=sid,
        agent="alpha",
        spec=ScheduleSpec(every=every),
        policy=SchedulePolicy(overlap=overlap, catch_up_window_s=window),
        task=ScheduleTask(text="go"),
        trace="tr1",
    )


def fire_all(log: Log, now: int) -> list[int]:
    """Apply what plan() decides at ``now`` like the actor would; the slots fired."""
    fired: list[int] = []
    for row in list(log.table.rows.values()):
        p = plan(row, now)
        for s in p.skips:
            log.add(
                ScheduleSkipped(
                    schedule_id=row.schedule_id,
                    agent=row.agent,
                    slot_ns=s.first_ns,
                    last_slot_ns=s.last_ns,
                    count=s.count,
                    reason=s.reason,
                ),
                now,
            )
        if p.fire:
            f = p.fire
            log.add(
                ScheduleFired(
                    schedule_id=row.schedule_id,
                    agent=row.agent,
                    slot_ns=f.slot_ns,
                    fire_ns=f.fire_ns,
                    task_id=f.task_id,
                    key=f.key,
                ),
                now,
            )
            fired.append(f.slot_ns)
    return fired


def test_nothing_before_creation_and_each_slot_fires_once() -> None:
    log = Log()
    log.add(created(), T0)
    row = log.table.get("alpha", "job")
    assert row is not None
    first = plan(row, T0)
    assert not first.acts and first.wake_ns == T0 + 4 * MIN + 30 * NS  # 10:05
    assert fire_all(log, T0 + 5 * MIN) == [T0 + 4 * MIN + 30 * NS]
    assert fire_all(log, T0 + 5 * MIN) == [], "an applied firing is not repeated"
    assert row.last_fired is not None and row.last_fired.key == slot_key("alpha", "job", T0 + 4 * MIN + 30 * NS)


def test_after_downtime_latest_slot_in_window_fires_older_are_superseded_or_missed() -> None:
    log = Log()
    log.add(created(window=600), T0)
    now = T0 + 60 * MIN  # 11:00:30, down since creation: slots 10:05 .. 11:00
    p = plan(log.table.rows[("alpha", "job")], now)
    reasons = {s.reason: (s.count, s.first_ns, s.last_ns) for s in p.skips}
    assert reasons["missed"] == (10, T0 + 4 * MIN + 30 * NS, T0 + 49 * MIN + 30 * NS)  # 10:05 .. 10:50
    assert reasons["superseded"][0] == 1  # 10:55, inside the 10 min window
    assert p.fire is not None and p.fire.slot_ns == T0 + 59 * MIN + 30 * NS  # 11:00
    assert p.fire.late_ns == 0 + 30 * NS


def test_a_month_of_downtime_is_one_missed_run() -> None:
    log = Log()
    log.add(created(every="1m", window=60), T0)
    p = plan(log.table.rows[("alpha", "job")], T0 + 30 * 24 * 60 * MIN)
    missed = [s for s in p.skips if s.reason == "missed"]
    assert len(missed) == 1 and missed[0].count > 43_000
    assert p.fire is not None


def test_a_month_of_downtime_of_a_minutely_cron_is_one_run_and_quick() -> None:
    log = Log()
    event = ScheduleCreated(
        schedule_id="cron",
        agent="alpha",
        spec=ScheduleSpec(cron="* * * * *", tz="Europe/Berlin"),
        policy=SchedulePolicy(catch_up_window_s=120),
        task=ScheduleTask(text="go"),
    )
    log.add(event, T0)
    started = time.perf_counter()
    p = plan(log.table.rows[("alpha", "cron")], T0 + 30 * 24 * 60 * MIN)
    assert time.perf_counter() - started < 1.0
    (missed,) = [s for s in p.skips if s.reason == "missed"]
    assert missed.count == MAX_COUNTED and "at least" in missed.detail
    assert missed.last_ns == T0 + (30 * 24 * 60 - 2) * MIN - 30 * NS  # 09:58, the last slot before the window
    assert p.fire is not None and p.fire.slot_ns == T0 + 30 * 24 * 60 * MIN - 30 * NS


def test_overlap_skip_records_the_running_task() -> None:
    log = Log()
    log.add(created(overlap="skip"), T0)
    fire_all(log, T0 + 5 * MIN)
    row = log.table.rows[("alpha", "job")]
    running = row.running_task_id
    p = plan(row, T0 + 10 * MIN)
    assert p.fire is None and [(s.reason, s.running_task_id) for s in p.skips] == [("overlap", running)]
    assert log.table.finish("alpha", running) is row
    fire_all(log, T0 + 10 * MIN)
    assert row.last_fired is not None and row.last_fired.slot_ns == T0 + 9 * MIN + 30 * NS


def test_overlap_queue_one_waits_then_fires_when_the_task_ends() -> None:
    log = Log()
    log.add(created(overlap="queue_one"), T0)
    fire_all(log, T0 + 5 * MIN)
    row = log.table.rows[("alpha", "job")]
    p = plan(row, T0 + 10 * MIN)
    assert p.waiting and not p.acts
    p = plan(row, T0 + 15 * MIN)  # two slots waiting: only the latest is kept
    assert [s.reason for s in p.skips] == ["superseded"] and p.waiting
    fire_all(log, T0 + 15 * MIN)
    log.table.finish("alpha", row.running_task_id)
    assert fire_all(log, T0 + 16 * MIN) == [T0 + 14 * MIN + 30 * NS]


def test_overlap_allow_fires_while_running() -> None:
    log = Log()
    log.add(created(overlap="allow"), T0)
    fire_all(log, T0 + 5 * MIN)
    assert fire_all(log, T0 + 10 * MIN) == [T0 + 9 * MIN + 30 * NS]


def test_paused_time_is_not_caught_up_on_resume() -> None:
    log = Log()
    log.add(created(), T0)
    log.add(SchedulePaused(schedule_id="job", agent="alpha"), T0 + MIN)
    assert not plan(log.table.rows[("alpha", "job")], T0 + 30 * MIN).acts
    log.add(ScheduleResumed(schedule_id="job", agent="alpha"), T0 + 30 * MIN)
    assert fire_all(log, T0 + 30 * MIN) == []
    assert fire_all(log, T0 + 35 * MIN) == [T0 + 34 * MIN + 30 * NS]


def test_update_keeps_handled_slots_and_delete_removes_the_row() -> None:
    log = Log()
    log.add(created(), T0)
    fire_all(log, T0 + 5 * MIN)
    upd = created()
    log.add(
        ScheduleUpdated(
            schedule_id="job", agent="alpha", spec=ScheduleSpec(every="10m"), policy=upd.policy, task=upd.task
        ),
        T0 + 6 * MIN,
    )
    row = log.table.rows[("alpha", "job")]
    assert row.fired == 1 and row.spec.every == "10m"
    assert fire_all(log, T0 + 10 * MIN) == [T0 + 9 * MIN + 30 * NS]
    log.add(ScheduleDeleted(schedule_id="job", agent="alpha"), T0 + 11 * MIN)
    assert log.table.get("alpha", "job") is None


def test_a_malformed_schedule_is_kept_invalid_and_does_not_stop_the_others() -> None:
    log = Log()
    bad = ScheduleCreated(
        schedule_id="bad", agent="alpha", spec=ScheduleSpec(cron="*/0 * * * *"), task=ScheduleTask(text="x")
    )
    log.add(bad, T0)
    log.add(created("good"), T0)
    log.table.apply(99, T0, "legion.schedules.alpha.job.created", ScheduleDeleted(schedule_id="x", agent="alpha"))
    log.seq = 99
    assert log.table.ignored == 1
    assert "zero" in log.table.rows[("alpha", "bad")].invalid
    assert fire_all(log, T0 + 5 * MIN) == [T0 + 4 * MIN + 30 * NS]


def test_replay_gives_the_same_table() -> None:
    log = Log()
    log.add(created("a"), T0)
    log.add(created("b", every="7m", window=60), T0)
    for k in range(1, 40):
        fire_all(log, T0 + k * 3 * MIN)
    rebuilt = ScheduleTable()
    for rec in log.records:
        rebuilt.apply(*rec)
    assert rebuilt.last_seq == log.table.last_seq
    for key, row in log.table.rows.items():
        other = rebuilt.rows[key]
        assert (other.last_slot_ns, other.fired, other.seq, other.running_task_id) == (
            row.last_slot_ns,
            row.fired,
            row.seq,
            row.running_task_id,
        )
