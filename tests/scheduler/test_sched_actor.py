"""The scheduler actor on a real nats-server with a manual clock: firing, restarts, two instances, bad data."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
import pytest_asyncio
from sched_rig import Rig

from legion.actors.scheduler.table import slot_key, task_id_for
from legion.contracts import subjects as subj
from legion.contracts.scheduler import ScheduleFired, ScheduleSpec
from legion.testing import TestFleet

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
