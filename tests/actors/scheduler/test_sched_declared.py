"""legion.yaml ``schedules:``: parsed with errors naming the entry, and kept in sync through the client."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
import pytest_asyncio

from legion.actors.scheduler.client import SchedulerClient
from legion.actors.scheduler.declared import declared_puts, sync_declared
from legion.contracts.errors import ConfigError
from legion.testing import TestFleet
from tests.actors.scheduler.sched_rig import Rig


def test_entries_become_put_requests() -> None:
    (put,) = declared_puts(
        {
            "morning": {
                "agent": "alpha",
                "cron": "0 7 * * mon-fri",
                "tz": "Europe/Berlin",
                "jitter": "2m",
                "catch_up": "15m",
                "overlap": "queue_one",
                "task": "news",
                "probe": {"subject": "legion.ext.rss.>"},
            }
        }
    )
    assert put.schedule_id == "morning" and put.agent == "alpha" and put.by == "legion.yaml"
    assert put.spec.cron == "0 7 * * mon-fri" and put.spec.tz == "Europe/Berlin" and put.spec.jitter_s == 120
    assert put.policy.catch_up_window_s == 900 and put.policy.overlap == "queue_one"
    assert put.policy.probe is not None and put.policy.probe.stream == "EVENTS"


@pytest.mark.parametrize(
    ("raw", "words"),
    [
        ({"Morning News": {"agent": "a", "every": "1h", "task": "t"}}, ["'Morning News'", "schedule name"]),
        ({"m": {"agent": "a", "every": "1h"}}, ["schedules.m", "task"]),
        ({"m": {"agent": "a", "every": "1h", "task": "t", "jitter": "soon"}}, ["schedules.m.jitter", "'soon'"]),
        ({"m": {"agent": "a", "every": "1h", "task": "t", "colour": "red"}}, ["schedules.m", "colour"]),
    ],
)
def test_bad_entries_name_the_schedule_and_field(raw: dict[str, object], words: list[str]) -> None:
    with pytest.raises(ConfigError) as err:
        declared_puts(raw)  # type: ignore[arg-type]
    for word in words:
        assert word in str(err.value), str(err.value)


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
    first = declared_puts(
        {"a": {"agent": alpha, "every": "1h", "task": "t"}, "b": {"agent": alpha, "every": "2h", "task": "t"}}
    )
    report = await sync_declared(client, first, owned=set())
    assert sorted(report.created) == [f"{alpha}/a", f"{alpha}/b"]
    second = declared_puts(
        {
            "a": {"agent": alpha, "every": "1h", "task": "t", "paused": True},
            "c": {"agent": alpha, "every": "3h", "task": "t"},
        }
    )
    report = await sync_declared(client, second, owned={f"{alpha}/a", f"{alpha}/b"})
    assert report.unchanged == [f"{alpha}/a"] and report.created == [f"{alpha}/c"] and report.deleted == [f"{alpha}/b"]
    listed = {f"{s.agent}/{s.schedule_id}": s for s in (await client.list()).schedules}
    assert sorted(listed) == [f"{alpha}/a", f"{alpha}/c", f"{beta}/by-agent"]
    assert listed[f"{alpha}/a"].paused
