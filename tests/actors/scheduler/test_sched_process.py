"""``python -m legion.actors.scheduler`` as a real process on the real clock: fire, kill -9, restart.

It runs on a server of its own: the production scheduler's stream captures ``legion.schedules.>``,
which would overlap the per-test streams of the other scheduler tests on the shared server.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import sys
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import pytest_asyncio
import yaml

from legion.actors.scheduler import scheduler_permissions
from legion.broker import INBOX, Broker
from legion.contracts import CronReply, CronSet, decode
from legion.contracts import subjects as subj
from legion.contracts.scheduler import ScheduleFired
from legion.testing import NatsTestServer, TestFleet

pytestmark = [pytest.mark.nats, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[2]


class SchedulerProcess:
    def __init__(self, fleet_dir: Path, admin: Broker) -> None:
        self.fleet_dir = fleet_dir
        self.admin = admin
        self.proc: asyncio.subprocess.Process | None = None
        self.log = fleet_dir / "scheduler.log"

    async def start(self) -> None:
        started = asyncio.Event()

        async def on_started(_msg: object) -> None:
            started.set()

        sub = await self.admin.subscribe(subj.EVENTS.render(source="scheduler", type="actor.started"), on_started)
        with self.log.open("ab") as out:
            self.proc = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "legion.actors.scheduler",
                "--fleet-dir",
                str(self.fleet_dir),
                stdout=out,
                stderr=out,
                env={**os.environ, "PYTHONPATH": str(REPO)},
            )
        try:
            async with asyncio.timeout(60):
                await started.wait()
        except TimeoutError:
            raise AssertionError(self.log.read_text(errors="replace")) from None
        finally:
            await sub.unsubscribe()

    async def kill9(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        await asyncio.wait_for(self.proc.wait(), 10)
        self.proc = None


@pytest_asyncio.fixture(loop_scope="session")
async def world(tmp_path: Path) -> AsyncIterator[tuple[TestFleet, SchedulerProcess]]:
    async with NatsTestServer() as server:
        admin = await server.admin()
        fleet = TestFleet(server=server, admin=admin)
        fleet_dir = tmp_path / "fleet"
        (fleet_dir / ".legion" / "creds").mkdir(parents=True)
        (fleet_dir / "legion.yaml").write_text(yaml.safe_dump({"fleet": "sched-test"}), encoding="utf-8")
        (fleet_dir / ".legion" / "nats.url").write_text(server.url + "\n", encoding="utf-8")
        creds = server.auth.issue_service("scheduler", scheduler_permissions())
        shutil.copy(creds, fleet_dir / ".legion" / "creds" / "scheduler.creds")
        proc = SchedulerProcess(fleet_dir, admin)
        try:
            yield fleet, proc
        finally:
            if proc.proc is not None and proc.proc.returncode is None:
                proc.proc.kill()
                await proc.proc.wait()
            await fleet.close()
            await admin.close()


async def inbox_count(admin: Broker, agent: str) -> int:
    subject = subj.AGENT_INBOX.render(agent=agent)
    info = await admin.js_api(f"STREAM.INFO.{INBOX}", {"subjects_filter": subject})
    return int(info["state"].get("subjects", {}).get(subject, 0))


async def test_a_real_scheduler_fires_survives_kill_9_and_catches_up(
    world: tuple[TestFleet, SchedulerProcess],
) -> None:
    fleet, proc = world
    agent = await fleet.add_agent("alpha")
    nc = await fleet.connect(agent.creds, name=agent.name)
    fired: asyncio.Queue[ScheduleFired] = asyncio.Queue()

    async def on_fired(msg: object) -> None:
        event = decode(msg.data, msg.headers)  # type: ignore[attr-defined]
        assert isinstance(event, ScheduleFired)
        await fired.put(event)

    await fleet.admin.subscribe(subj.EVENTS.render(source="scheduler", type="schedule.fired"), on_fired)
    await proc.start()

    async def set_at(name: str, seconds: float) -> None:
        at = (datetime.now(tz=UTC) + timedelta(seconds=seconds)).isoformat(timespec="seconds")
        req = CronSet(agent=agent.name, name=name, schedule=f"at {at}", text=f"run {name}", request_id=name)
        reply = await nc.request(subj.SCHEDULER.render(agent=agent.name, op="set"), req, timeout=10)
        assert isinstance(reply, CronReply) and reply.ok, reply

    await set_at("soon", 2)
    first = await asyncio.wait_for(fired.get(), 30)
    assert first.schedule_id == "soon"
    assert await inbox_count(fleet.admin, agent.name) == 1

    await set_at("later", 3)
    await proc.kill9()  # down across the slot of "later"
    await asyncio.wait_for(_past(first.fire_ns + 4_000_000_000), 30)
    await proc.start()
    caught_up = await asyncio.wait_for(fired.get(), 30)
    assert caught_up.schedule_id == "later" and caught_up.late_s > 0
    assert await inbox_count(fleet.admin, agent.name) == 2
    await proc.kill9()
    await proc.start()  # the restart re-sends recent firings' tasks; the duplicate window drops them
    assert await inbox_count(fleet.admin, agent.name) == 2


async def _past(ns: int) -> None:
    """Return once the wall clock is past ``ns`` (the slot of a real-time schedule)."""
    loop = asyncio.get_running_loop()
    delay = (ns - datetime.now(tz=UTC).timestamp() * 1e9) / 1e9
    if delay > 0:
        done = loop.create_future()
        loop.call_later(delay, done.set_result, None)
        await done


async def test_two_real_scheduler_processes_fire_each_slot_once(
    world: tuple[TestFleet, SchedulerProcess],
) -> None:
    fleet, first = world
    second = SchedulerProcess(first.fleet_dir, fleet.admin)
    second.log = first.fleet_dir / "scheduler-2.log"
    agents = [await fleet.add_agent(base) for base in ("alpha", "beta")]
    fired: asyncio.Queue[ScheduleFired] = asyncio.Queue()

    async def on_fired(msg: object) -> None:
        event = decode(msg.data, msg.headers)  # type: ignore[attr-defined]
        assert isinstance(event, ScheduleFired)
        await fired.put(event)

    await fleet.admin.subscribe(subj.EVENTS.render(source="scheduler", type="schedule.fired"), on_fired)
    await first.start()
    await second.start()
    try:
        at = (datetime.now(tz=UTC) + timedelta(seconds=3)).isoformat(timespec="seconds")
        for agent in agents:
            nc = await fleet.connect(agent.creds, name=agent.name)
            for i in range(10):
                req = CronSet(agent=agent.name, name=f"job{i}", schedule=f"at {at}", text="t", request_id=f"r{i}")
                reply = await nc.request(subj.SCHEDULER.render(agent=agent.name, op="set"), req, timeout=10)
                assert isinstance(reply, CronReply) and reply.ok, reply
        keys = set()
        for _ in range(20):
            keys.add((await asyncio.wait_for(fired.get(), 30)).key)
        assert len(keys) == 20
        for agent in agents:
            assert await inbox_count(fleet.admin, agent.name) == 10
    finally:
        if second.proc is not None:
            await second.kill9()
