"""The scheduler in a real fleet: `legion up -d` provisions SCHEDULES and starts the scheduler kind,
which syncs legion.yaml's ``schedules:``; a run-now and an agent's own set_cron each reach the agent
as a task. Real processes; every wait is on a signal (an event on EVENTS) with a deadline."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import pytest_asyncio
from nats.aio.msg import Msg

from legion.broker import Broker, ConnectSpec
from legion.contracts import decode
from legion.contracts import subjects as subj
from legion.contracts.agent_events import TaskStarted
from legion.contracts.agent_tools import CronReply, CronSet
from legion.runtime.clients import SchedulerClient

pytestmark = [pytest.mark.nats, pytest.mark.slow, pytest.mark.timeout(240)]

LEGION = [sys.executable, "-m", "legion"]
YAML = """\
fleet: schedfleet
models:
  m: {model: legion/offline}
agents:
  alpha: {model: m}
schedules:
  beat:
    agent: alpha
    every: 1h
    task: Look around
    note: declared in the test
"""


def _legion(fleet: Path, *args: str, timeout: float = 180) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*LEGION, "-C", str(fleet), *args], capture_output=True, text=True, timeout=timeout, check=False
    )


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    root = tmp_path_factory.mktemp("schedfleet")
    (root / "legion.yaml").write_text(YAML)
    try:
        up = _legion(root, "up", "-d")
        assert up.returncode == 0, up.stdout + up.stderr
        yield root
    finally:
        if (root / ".legion" / "run" / "launcher.pid").exists():
            _legion(root, "down", timeout=90)


async def _connect(fleet: Path, creds: str, name: str) -> Broker:
    state = fleet / ".legion"
    url = (state / "nats.url").read_text().strip()
    return await Broker.connect(ConnectSpec(url=url, creds=state / "creds" / creds, name=name))


@pytest_asyncio.fixture(loop_scope="session")
async def admin(fleet: Path) -> AsyncIterator[Broker]:
    broker = await _connect(fleet, "admin.creds", "test-sched-fleet")
    try:
        yield broker
    finally:
        await broker.close()


async def _started_tasks(admin: Broker) -> asyncio.Queue[str]:
    """Task ids of alpha's task.started events, as they are published."""
    started: asyncio.Queue[str] = asyncio.Queue()

    async def on_started(msg: Msg) -> None:
        started.put_nowait(decode(msg.data, msg.headers, type=TaskStarted).task_id)

    await admin.subscribe(subj.EVENTS.render(source="alpha", type="task.started"), on_started)
    return started


async def _until(started: asyncio.Queue[str], task_id: str, deadline_s: float = 60) -> None:
    async with asyncio.timeout(deadline_s):
        while await started.get() != task_id:
            pass


def test_ps_shows_the_scheduler_healthy(fleet: Path) -> None:
    ps = _legion(fleet, "ps", "--json", timeout=30)
    assert ps.returncode == 0, ps.stderr
    rows = {row["name"]: row for row in json.loads(ps.stdout)["actors"]}
    assert rows["scheduler"]["state"] == "healthy", rows
    assert rows["scheduler"]["kind"] == "scheduler"
    assert (fleet / ".legion" / "creds" / "scheduler.creds").is_file()


async def test_up_provisions_schedules_and_the_declared_schedule_is_synced(fleet: Path, admin: Broker) -> None:
    info = await admin.js.stream_info("SCHEDULES")
    assert info.config.max_msgs_per_subject == 1
    listed = await SchedulerClient(admin).list()
    (beat,) = listed.schedules
    assert (beat.agent, beat.schedule_id, beat.created_by) == ("alpha", "beat", "legion.yaml")
    assert beat.spec.every == "1h" and beat.next_fire_ns is not None


async def test_a_run_now_of_a_declared_schedule_reaches_the_agent(fleet: Path, admin: Broker) -> None:
    started = await _started_tasks(admin)
    ack = await SchedulerClient(admin).control("trigger", "alpha", "beat", by="test")
    assert ack.ok, ack
    await _until(started, ack.task_id)


async def test_an_agents_own_set_cron_fires_a_task_to_it(fleet: Path, admin: Broker) -> None:
    started = await _started_tasks(admin)
    agent = await _connect(fleet, "alpha.creds", "alpha-test")
    try:
        at = datetime.now(tz=UTC) + timedelta(seconds=2)
        when = f"at {at.isoformat(timespec='seconds')}"
        req = CronSet(agent="alpha", name="soon", schedule=when, text="tick", request_id="soon")
        reply = await agent.request(subj.SCHEDULER.render(agent="alpha", op="set"), req, timeout=10)
        assert isinstance(reply, CronReply) and reply.ok, reply
    finally:
        await agent.close()
    slot = at.replace(microsecond=0).strftime("%Y%m%dT%H%M%SZ")
    await _until(started, f"sched-soon-{slot}")


def test_down_stops_the_scheduler_too(fleet: Path) -> None:
    down = _legion(fleet, "down", timeout=90)
    assert down.returncode == 0, down.stdout + down.stderr
    assert not (fleet / ".legion" / "run" / "launcher.pid").exists()
    assert os.path.exists(fleet / ".legion" / "logs" / "scheduler.log")


def test_up_fails_naming_a_declared_schedule_the_scheduler_refuses(tmp_path: Path) -> None:
    (tmp_path / "legion.yaml").write_text(
        "models:\n  m: {model: legion/offline}\nagents:\n  alpha: {model: m}\n"
        "schedules:\n  bad: {agent: alpha, cron: '*/0 * * * *', task: t}\n"
    )
    try:
        up = _legion(tmp_path, "up", "-d")
        assert up.returncode != 0, up.stdout
        assert "scheduler" in up.stdout + up.stderr
        log = (tmp_path / ".legion" / "logs" / "scheduler.log").read_text()
        assert "schedules.bad" in log and "'*/0'" in log, log
    finally:
        if (tmp_path / ".legion" / "run" / "launcher.pid").exists():
            _legion(tmp_path, "down", timeout=90)
