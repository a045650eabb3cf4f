"""legion.yaml ``schedules:`` kept by the scheduler: the sync (through the client, and in process at
start) touches only what the file owns, and the scheduler's own rules refuse a bad entry up front."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_asyncio

from legion.actors.scheduler import Limits, check_declared
from legion.contracts.errors import ConfigError
from legion.contracts.scheduler import SchedulePut
from legion.runtime.clients import SchedulerClient, sync_declared
from legion.runtime.config import ScheduleEntry
from legion.testing import TestFleet
from tests.actors.scheduler.sched_rig import Rig


def puts(raw: dict[str, dict[str, Any]]) -> list[SchedulePut]:
    return [ScheduleEntry.model_validate(body).put(sid) for sid, body in raw.items()]


@pytest.mark.parametrize(
    ("raw", "words"),
    [
        ({"m": {"agent": "a", "cron": "*/0 * * * *", "task": "t"}}, ["schedules.m", "'*/0'"]),
        ({"m": {"agent": "a", "every": "10s", "task": "t"}}, ["schedules.m", "minimum interval"]),
        ({"m": {"agent": "a", "every": "1h", "jitter": "2h", "task": "t"}}, ["schedules.m", "jitter"]),
    ],
    ids=["zero-step", "too-often", "jitter"],
)
def test_the_scheduler_rules_refuse_a_declared_schedule_naming_it(raw: dict[str, Any], words: list[str]) -> None:
    with pytest.raises(ConfigError) as err:
        check_declared(puts(raw), Limits(), time.time_ns())
    for word in words:
        assert word in str(err.value), str(err.value)


def test_a_past_one_shot_is_not_a_configuration_error() -> None:
    check_declared(puts({"m": {"agent": "a", "at": "2001-01-01T00:00", "task": "t"}}), Limits(), time.time_ns())


@pytest_asyncio.fixture(loop_scope="session")
async def rig(legion_fleet: TestFleet) -> AsyncIterator[Rig]:
    r = Rig(legion_fleet, agents=(legion_fleet.name("alpha"), legion_fleet.name("beta")))
    await r.ensure_stream()
    try:
        yield r
    finally:
        await r.stop_all()


@pytest.mark.nats
async def test_sync_creates_updates_pauses_and_deletes_only_what_the_file_owns(rig: Rig) -> None:
    alpha, beta = rig.agents
    await rig.start()
    client = SchedulerClient(rig.admin, service=rig.service)
    await rig.create(beta, "by-agent")  # made by someone else: never touched
    first = puts({"a": {"agent": alpha, "every": "1h", "task": "t"}, "b": {"agent": alpha, "every": "2h", "task": "t"}})
    report = await sync_declared(client, first)
    assert sorted(report.created) == [f"{alpha}/a", f"{alpha}/b"]
    second = puts(
        {
            "a": {"agent": alpha, "every": "1h", "task": "t", "paused": True},
            "c": {"agent": alpha, "every": "3h", "task": "t"},
        }
    )
    report = await sync_declared(client, second)  # owned: what legion.yaml created (created_by)
    assert report.unchanged == [f"{alpha}/a"] and report.created == [f"{alpha}/c"] and report.deleted == [f"{alpha}/b"]
    listed = {f"{s.agent}/{s.schedule_id}": s for s in (await client.list()).schedules}
    assert sorted(listed) == [f"{alpha}/a", f"{alpha}/c", f"{beta}/by-agent"]
    assert listed[f"{alpha}/a"].paused and listed[f"{alpha}/a"].created_by == "legion.yaml"


@pytest.mark.nats
async def test_the_scheduler_syncs_the_declared_schedules_when_it_starts(rig: Rig) -> None:
    alpha, beta = rig.agents
    await rig.create(beta, "by-agent")
    run = await rig.start(declared=tuple(puts({"d": {"agent": alpha, "every": "1h", "task": "t"}})))
    assert run.scheduler.table.get(alpha, "d") is not None
    await run.stop()
    run = await rig.start(declared=())  # the file no longer declares it: gone; the agent's stays
    assert run.scheduler.table.get(alpha, "d") is None
    assert run.scheduler.table.get(beta, "by-agent") is not None
