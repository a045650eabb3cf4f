"""The scheduler actor on a real nats-server with a manual clock: firing, restarts, two instances, bad data."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio

from legion.actors.scheduler.table import slot_key, task_id_for
from legion.contracts import TaskCompleted
from legion.contracts import subjects as subj
from legion.contracts.scheduler import ScheduleCreated, ScheduleFired, SchedulePolicy, ScheduleSpec, ScheduleTask
from legion.testing import TestFleet
from tests.actors.scheduler.sched_rig import Rig

pytestmark = pytest.mark.nats


@pytest_asyncio.fixture(loop_scope="session")
async def rig(legion_fleet: TestFleet) -> AsyncIterator[Rig]:
    r = Rig(legion_fleet, agents=(legion_fleet.name("alpha"), legion_fleet.name("beta")))
    await r.ensure_stream()
    try:
        yield r
    finally:
        await r.stop_all()


async def test_a_due_slot_sends_one_task_with_the_schedules_trace(rig: Rig) -> None:
    alpha = rig.agents[0]
    await rig.create(alpha, "hourly", ScheduleSpec(every="1m"), text="summarise the news", trace="trace-sched-1")
    run = await rig.start()
    await rig.tick(0)
    assert await rig.inbox_count(alpha) == 0, "nothing is due before the first slot"
    slot = await rig.next_minute()
    assert await rig.inbox_count(alpha) == 1
    task, headers = await rig.last_task(alpha)
    assert task.text == "summarise the news"
    assert task.task_id.startswith("sched-hourly-")
    assert headers["Legion-Trace"] == "trace-sched-1"
    fired = await rig.events(run.scheduler.name, "schedule.fired")
    assert len(fired) == 1 and isinstance(fired[0], ScheduleFired)
    assert fired[0].task_id == task.task_id and headers["Nats-Msg-Id"] == fired[0].key
    assert fired[0].slot_ns == slot
    await rig.tick(30)
    assert await rig.inbox_count(alpha) == 1, "the same slot never fires twice"


async def test_restart_on_a_boundary_fires_each_slot_once(rig: Rig) -> None:
    alpha = rig.agents[0]
    await rig.create(alpha, "job")
    first = await rig.start("first")
    await rig.next_minute(0)  # exactly on the boundary
    assert await rig.inbox_count(alpha) == 1
    await first.stop()
    again = await rig.start("again")  # same clock time: the slot is in the table as fired
    await rig.settle()
    assert await rig.inbox_count(alpha) == 1
    await again.stop()
    await rig.next_minute(0)  # down over the next boundary, back right on it
    await rig.start("third")
    await rig.settle()
    assert await rig.inbox_count(alpha) == 2


async def test_a_crash_between_recording_and_sending_is_repaired_on_start(rig: Rig) -> None:
    """kill -9 after ScheduleFired was appended but before the task was sent: the next start sends it once."""
    alpha = rig.agents[0]
    await rig.create(alpha, "job")
    await rig.start("first")
    await rig.next_minute(0)
    await rig.stop_all()
    # what the dead instance wrote for the next slot before it died: the record, not the task
    run_probe = await rig.start("probe", watch_tasks=False)
    row = run_probe.scheduler.table.get(alpha, "job")
    assert row is not None and row.last_fired is not None
    await rig.stop_all()
    slot = row.last_fired.slot_ns + 60 * 1_000_000_000
    key = slot_key(alpha, "job", slot)
    fired = ScheduleFired(
        schedule_id="job", agent=alpha, slot_ns=slot, fire_ns=slot, task_id=task_id_for("job", slot), key=key
    )
    await rig.append(fired, msg_id=key)
    assert await rig.inbox_count(alpha) == 1
    rig.clock.set(slot + 5 * 1_000_000_000)
    await rig.start("after-crash")
    await rig.settle()
    assert await rig.inbox_count(alpha) == 2, "the recorded firing's task was sent"
    await rig.stop_all()
    await rig.start("once-more")
    await rig.settle()
    assert await rig.inbox_count(alpha) == 2, "and only once (the duplicate window drops the resend)"


async def test_two_instances_fire_each_slot_once(rig: Rig) -> None:
    alpha, beta = rig.agents
    for i in range(10):
        await rig.create(alpha if i % 2 else beta, f"job{i}")
    a = await rig.start("a")
    b = await rig.start("b")
    for _ in range(3):
        await rig.next_minute(0)
    assert await rig.inbox_count(alpha) == 15
    assert await rig.inbox_count(beta) == 15
    fired = [
        *await rig.events(a.scheduler.name, "schedule.fired"),
        *await rig.events(b.scheduler.name, "schedule.fired"),
    ]
    assert len(fired) == 30, "one schedule.fired per slot on EVENTS, whichever instance won it"
    assert len({f.key for f in fired}) == 30


async def test_a_malformed_schedule_never_stops_the_others(rig: Rig) -> None:
    alpha = rig.agents[0]
    await rig.ensure_stream()
    await rig.admin.js_publish(subj.SCHEDULES.render(agent=alpha, schedule="junk", op="created"), b"{not json")
    await rig.create(alpha, "badtz", ScheduleSpec(cron="0 9 * * *", tz="Mars/Olympus"))
    await rig.create(alpha, "badcron", ScheduleSpec(cron="*/0 * * * *"))
    await rig.create(alpha, "good")
    run = await rig.start()
    await rig.next_minute()
    assert await rig.inbox_count(alpha) == 1
    invalid = [e for e in await rig.events(run.scheduler.name, "schedule.skipped") if e.reason == "invalid"]
    assert sorted(e.schedule_id for e in invalid) == ["badcron", "badtz"]
    assert any("Mars/Olympus" in e.detail for e in invalid)


async def test_1000_schedules_each_fire_once(rig: Rig) -> None:
    alpha, beta = rig.agents
    t0 = time.perf_counter()
    for start in range(0, 1000, 100):
        await asyncio.gather(*(rig.create(alpha if i % 2 else beta, f"s{i}") for i in range(start, start + 100)))
    created = time.perf_counter() - t0
    t1 = time.perf_counter()
    run = await rig.start()
    replayed = time.perf_counter() - t1
    t2 = time.perf_counter()
    await rig.next_minute()
    fired = time.perf_counter() - t2
    assert await rig.inbox_count(alpha) + await rig.inbox_count(beta) == 1000
    assert len(run.scheduler.table.rows) == 1000
    print(f"\n1000 schedules: create {created:.2f}s, start+replay {replayed:.2f}s, fire all {fired:.2f}s")
    t3 = time.perf_counter()
    await rig.stop_all()
    again = await rig.start("again")
    print(f"restart with 1000 schedules (1000 fired records): {time.perf_counter() - t3:.2f}s")
    await rig.settle()
    assert await rig.inbox_count(alpha) + await rig.inbox_count(beta) == 1000
    assert len(again.scheduler.table.rows) == 1000
    rebuilt, live = again.scheduler.table, run.scheduler.table
    assert rebuilt.last_seq == live.last_seq
    for key, row in live.rows.items():
        other = rebuilt.rows[key]
        assert (other.last_slot_ns, other.seq, other.running_task_id, other.anchor_ns, other.trace) == (
            row.last_slot_ns,
            row.seq,
            row.running_task_id,
            row.anchor_ns,
            row.trace,
        ), "the table rebuilt from the stream is the live one"


async def test_overlap_skip_waits_for_the_task_to_end(rig: Rig) -> None:
    alpha = rig.agents[0]
    await rig.create(alpha, "slow", policy=SchedulePolicy(overlap="skip"))
    run = await rig.start()
    await rig.next_minute()
    task, _ = await rig.last_task(alpha)
    await rig.next_minute()
    assert await rig.inbox_count(alpha) == 1, "the task still runs: the slot is skipped"
    skipped = await rig.events(run.scheduler.name, "schedule.skipped")
    assert [(s.reason, s.running_task_id) for s in skipped] == [("overlap", task.task_id)]
    done = TaskCompleted(task_id=task.task_id, agent=alpha)
    ack = await rig.admin.js_publish(subj.EVENTS.render(source=alpha, type="task.completed"), done)
    await run.scheduler.wait_events_applied(ack.seq)
    await rig.next_minute()
    assert await rig.inbox_count(alpha) == 2


async def test_a_schedule_without_a_trace_fires_with_the_trace_of_its_creation(rig: Rig) -> None:
    alpha = rig.agents[0]
    event = ScheduleCreated(
        schedule_id="traced", agent=alpha, spec=ScheduleSpec(every="1m"), task=ScheduleTask(text="x")
    )
    await rig.append(event, trace="creation-trace")
    await rig.start()
    for _ in range(2):
        await rig.next_minute()
        _, headers = await rig.last_task(alpha)
        assert headers["Legion-Trace"] == "creation-trace"


async def test_a_task_that_ended_while_the_scheduler_was_down_frees_its_schedule(rig: Rig) -> None:
    alpha = rig.agents[0]
    await rig.create(alpha, "slow", policy=SchedulePolicy(overlap="skip"))
    await rig.start("first")
    await rig.next_minute()
    task, _ = await rig.last_task(alpha)
    await rig.stop_all()
    done = TaskCompleted(task_id=task.task_id, agent=alpha)
    await rig.admin.js_publish(subj.EVENTS.render(source=alpha, type="task.completed"), done)
    again = await rig.start("again")
    row = again.scheduler.table.get(alpha, "slow")
    assert row is not None and row.running_task_id == "", "the end was read from EVENTS on start"
    await rig.next_minute()
    assert await rig.inbox_count(alpha) == 2
