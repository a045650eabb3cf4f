"""Agents manage their own schedules through legion.scheduler.<agent>.<op>, with their own credentials."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import datetime
from zoneinfo import ZoneInfo

import pytest
import pytest_asyncio

from legion.actors.scheduler import Limits
from legion.broker import Broker
from legion.contracts import CronList, CronRemove, CronReply, CronSet, PermissionDenied
from legion.contracts import subjects as subj
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


async def agent_broker(rig: Rig, agent: str) -> Broker:
    base = agent.rsplit("-", 1)[0]
    handle = await rig.fleet.add_agent(base)
    assert handle.name == agent
    return await rig.fleet.connect(handle.creds, name=agent)


async def ask(broker: Broker, agent: str, op: str, req: CronSet | CronList | CronRemove) -> CronReply:
    reply = await broker.request(subj.SCHEDULER.render(agent=agent, op=op), req, timeout=10)
    assert isinstance(reply, CronReply), reply
    return reply


async def test_an_agent_sets_lists_and_removes_its_own_schedules_which_then_fire(rig: Rig) -> None:
    alpha = rig.agents[0]
    await rig.start()
    nc = await agent_broker(rig, alpha)
    reply = await ask(
        nc, alpha, "set", CronSet(agent=alpha, name="news", schedule="every 1m", text="news", request_id="r1")
    )
    assert reply.ok, reply.message
    assert [j["name"] for j in reply.jobs] == ["news"] and reply.jobs[0]["next_run"]
    await rig.next_minute()
    assert await rig.inbox_count(alpha) == 1
    listed = await ask(nc, alpha, "list", CronList(agent=alpha, request_id="r2"))
    assert listed.jobs[0]["last_task_id"].startswith("sched-news-")
    removed = await ask(nc, alpha, "remove", CronRemove(agent=alpha, name="news", request_id="r3"))
    assert removed.ok and removed.jobs == []
    await rig.next_minute()
    assert await rig.inbox_count(alpha) == 1, "a removed schedule does not fire"


async def test_bad_schedules_and_caps_are_refused_with_the_reason(rig: Rig) -> None:
    alpha = rig.agents[0]
    await rig.start(limits=Limits(max_schedules=2, min_interval_s=300))
    nc = await agent_broker(rig, alpha)

    async def set_(name: str, schedule: str) -> CronReply:
        return await ask(
            nc, alpha, "set", CronSet(agent=alpha, name=name, schedule=schedule, text="t", request_id=name)
        )

    bad = await set_("zero", "*/0 * * * *")
    assert not bad.ok and "step '*/0' is zero" in bad.message
    fast = await set_("fast", "every 1m")
    assert not fast.ok and "minimum interval of 300 s" in fast.message
    assert (await set_("a", "@hourly")).ok
    assert (await set_("b", "every 10m")).ok
    full = await set_("c", "@daily")
    assert not full.ok and "the most allowed is 2" in full.message
    assert (await set_("b", "every 20m")).ok, "replacing one of them is not a new schedule"


async def test_an_agent_cannot_touch_another_agents_schedules(rig: Rig) -> None:
    alpha, beta = rig.agents
    await rig.start()
    nc = await agent_broker(rig, alpha)
    await rig.fleet.add_agent(beta.rsplit("-", 1)[0])
    with pytest.raises(PermissionDenied):
        await nc.request(subj.SCHEDULER.render(agent=beta, op="list"), CronList(agent=beta, request_id="x"), timeout=5)
    spoofed = await ask(
        nc, alpha, "set", CronSet(agent=beta, name="evil", schedule="@hourly", text="t", request_id="e")
    )
    assert not spoofed.ok and "its own schedules" in spoofed.message


async def test_an_agent_schedule_runs_in_the_zone_it_names(rig: Rig) -> None:
    alpha = rig.agents[0]
    await rig.start()
    nc = await agent_broker(rig, alpha)
    req = CronSet(agent=alpha, name="ny", schedule="30 2 * * *", text="t", request_id="tz1", tz="America/New_York")
    reply = await ask(nc, alpha, "set", req)
    assert reply.ok, reply.message
    (job,) = reply.jobs
    assert job["tz"] == "America/New_York"
    hour = datetime.fromisoformat(job["next_run"]).astimezone(ZoneInfo("America/New_York")).strftime("%H:%M")
    assert hour in ("02:30", "03:00"), job  # 03:00 only on a spring-forward day
    bad = CronSet(agent=alpha, name="x", schedule="@daily", text="t", request_id="tz2", tz="Mars/Base")
    refused = await ask(nc, alpha, "set", bad)
    assert not refused.ok and "'Mars/Base' is unknown" in refused.message
