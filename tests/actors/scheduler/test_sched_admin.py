"""Trusted requests on legion.svc.<scheduler>.<op>: put with a zone and policy, pause, resume, run now,
delete, list, the fleet-wide pause; and queue_one on a real server."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
import pytest_asyncio

from legion.contracts import TaskCompleted
from legion.contracts import subjects as subj
from legion.contracts.scheduler import (
    ScheduleAck,
    ScheduleControl,
    ScheduleList,
    SchedulePolicy,
    ScheduleProbe,
    SchedulePut,
    ScheduleQuery,
    ScheduleSpec,
    ScheduleTask,
)
from legion.testing import NatsTestServer, TestFleet
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


def put(agent: str, sid: str, spec: ScheduleSpec, **kw: object) -> SchedulePut:
    return SchedulePut(agent=agent, schedule_id=sid, spec=spec, task=ScheduleTask(text="t"), request_id=sid, **kw)  # type: ignore[arg-type]


async def control(rig: Rig, action: str, agent: str = "", sid: str = "", rid: str = "") -> ScheduleAck:
    req = ScheduleControl(action=action, agent=agent, schedule_id=sid, request_id=rid or action)  # type: ignore[arg-type]
    ack = await rig.call("control", req)
    assert isinstance(ack, ScheduleAck), ack
    return ack


async def test_put_pause_resume_trigger_delete(rig: Rig) -> None:
    alpha = rig.agents[0]
    await rig.start()
    spec = ScheduleSpec(cron="* * * * *", tz="Europe/Berlin", jitter_s=5)
    ack = await rig.call("put", put(alpha, "berlin", spec, policy=SchedulePolicy(overlap="allow")))
    assert isinstance(ack, ScheduleAck) and ack.ok, ack
    assert ack.schedule is not None and ack.schedule.next_fire_ns
    bad = await rig.call("put", put(alpha, "bad", ScheduleSpec(cron="0 9 * * *", tz="Europe/Berln")))
    assert not bad.ok and "Europe/Berlin" in bad.message
    assert (await control(rig, "pause", alpha, "berlin")).ok
    await rig.next_minute(10)
    assert await rig.inbox_count(alpha) == 0, "paused"
    assert (await control(rig, "resume", alpha, "berlin")).ok
    await rig.settle()
    # (the paused time not being caught up is tested in test_sched_plan.py: here the manual clock runs
    # ahead of the server's timestamps, which place the resume)
    base = await rig.inbox_count(alpha)
    now = await control(rig, "trigger", alpha, "berlin", "run-1")
    assert now.ok and now.task_id
    again = await control(rig, "trigger", alpha, "berlin", "run-1")
    assert again.task_id == now.task_id
    assert await rig.inbox_count(alpha) == base + 1, "a retried run-now sends nothing twice"
    await rig.next_minute(10)
    assert await rig.inbox_count(alpha) == base + 2
    listed = await rig.call("list", ScheduleQuery(agent=alpha))
    assert isinstance(listed, ScheduleList) and [s.schedule_id for s in listed.schedules] == ["berlin"]
    assert (await control(rig, "delete", alpha, "berlin")).ok
    await rig.next_minute(10)
    assert await rig.inbox_count(alpha) == base + 2


async def test_an_agent_cannot_send_trusted_requests_on_its_own_subject(rig: Rig) -> None:
    alpha, beta = rig.agents
    await rig.start()
    handle = await rig.fleet.add_agent(alpha.rsplit("-", 1)[0])
    nc = await rig.fleet.connect(handle.creds, name=alpha)
    reply = await nc.request(
        subj.SCHEDULER.render(agent=alpha, op="put"), put(beta, "evil", ScheduleSpec(every="1h")), timeout=10
    )
    assert getattr(reply, "code", "") == "ConfigError", reply
    listed = await rig.call("list", ScheduleQuery(agent=beta))
    assert listed.schedules == []


async def test_queue_one_fires_the_waiting_slot_when_the_task_ends(rig: Rig) -> None:
    alpha = rig.agents[0]
    run = await rig.start()
    ack = await rig.call("put", put(alpha, "q", ScheduleSpec(every="1m"), policy=SchedulePolicy(overlap="queue_one")))
    assert ack.ok, ack
    await rig.next_minute()
    task, _ = await rig.last_task(alpha)
    await rig.next_minute()
    assert await rig.inbox_count(alpha) == 1, "the slot waits for the running task"
    done = TaskCompleted(task_id=task.task_id, agent=alpha)
    pub = await rig.admin.js_publish(subj.EVENTS.render(source=alpha, type="task.completed"), done)
    await run.scheduler.wait_events_applied(pub.seq)
    await rig.settle()
    assert await rig.inbox_count(alpha) == 2, "it fired once the task ended"
    late, _ = await rig.last_task(alpha)
    assert late.task_id != task.task_id


async def test_the_fleet_wide_pause_stops_every_schedule() -> None:
    async with NatsTestServer() as server:  # unscoped scheduler: its stream captures legion.schedules.>
        admin = await server.admin()
        fleet = TestFleet(server=server, admin=admin)
        rig = Rig(fleet, agents=None)  # type: ignore[arg-type]
        try:
            await rig.ensure_stream()
            await rig.start()
            for agent in ("alpha", "beta"):
                assert (await rig.call("put", put(agent, "job", ScheduleSpec(every="1m")))).ok
            assert (await control(rig, "pause_all")).ok
            await rig.next_minute()
            assert await rig.inbox_count("alpha") + await rig.inbox_count("beta") == 0
            listed = await rig.call("list", ScheduleQuery())
            assert listed.fleet_paused and len(listed.schedules) == 2
            assert (await control(rig, "resume_all")).ok
            await rig.next_minute()
            assert await rig.inbox_count("alpha") == 1 and await rig.inbox_count("beta") == 1
        finally:
            await rig.stop_all()
            await fleet.close()
            await admin.close()


async def test_a_probe_wakes_the_agent_only_when_something_new_arrived(rig: Rig) -> None:
    alpha = rig.agents[0]
    source = rig.fleet.name("github")
    run = await rig.start()
    policy = SchedulePolicy(overlap="allow", probe=ScheduleProbe(subject=subj.EXT.wildcard(source=source)))
    assert (await rig.call("put", put(alpha, "heartbeat", ScheduleSpec(every="1m"), policy=policy))).ok
    await rig.next_minute()
    assert await rig.inbox_count(alpha) == 0, "nothing arrived: quiet"
    await rig.admin.js_publish(subj.EXT.render(source=source, type="push"), b'{"type":"ext.push.v1"}')
    await rig.next_minute()
    assert await rig.inbox_count(alpha) == 1, "something arrived: the slot fired"
    await rig.next_minute()
    assert await rig.inbox_count(alpha) == 1, "nothing new since that firing: quiet again"
    row = run.scheduler.table.get(alpha, "heartbeat")
    assert row is not None and row.probe_seq > 0
    skipped = await rig.events(run.scheduler.name, "schedule.skipped")
    assert skipped == [], "quiet slots are recorded on SCHEDULES only"
    bad = SchedulePolicy(probe=ScheduleProbe(subject="legion..x"))
    ack = await rig.call("put", put(alpha, "bad", ScheduleSpec(every="1m"), policy=bad))
    assert not ack.ok and "'legion..x' is not a subject filter" in ack.message
