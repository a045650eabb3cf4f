"""`legion cron ls|add|rm|pause|resume|run` against a real fleet (`legion up -d`), and the table."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from nats.aio.msg import Msg
from rich.console import Console

from legion.broker import Broker, ConnectSpec
from legion.cli.render import cron_table
from legion.contracts import decode
from legion.contracts import subjects as subj
from legion.contracts.agent_events import TaskStarted
from legion.contracts.scheduler import ScheduleInfo, ScheduleList, SchedulePolicy, ScheduleSpec, ScheduleTask

LEGION = [sys.executable, "-m", "legion"]
YAML = """\
fleet: cronfleet
models:
  m: {model: legion/offline}
agents:
  alpha: {model: m}
schedules:
  declared:
    agent: alpha
    every: 2h
    task: Tidy up
"""


def _cron(fleet: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*LEGION, "-C", str(fleet), "cron", *args], capture_output=True, text=True, timeout=60, check=False
    )


def _ok(fleet: Path, *args: str) -> Any:
    result = _cron(fleet, *args, "--json")
    assert result.returncode == 0, result.stdout + result.stderr
    return json.loads(result.stdout)


def _listed(fleet: Path) -> dict[str, Any]:
    doc = _ok(fleet, "ls")
    return {"fleet_paused": doc["fleet_paused"], **{f"{s['agent']}/{s['schedule_id']}": s for s in doc["schedules"]}}


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    root = tmp_path_factory.mktemp("cronfleet")
    (root / "legion.yaml").write_text(YAML)
    up = subprocess.run(
        [*LEGION, "-C", str(root), "up", "-d"], capture_output=True, text=True, timeout=180, check=False
    )
    try:
        assert up.returncode == 0, up.stdout + up.stderr
        yield root
    finally:
        if (root / ".legion" / "run" / "launcher.pid").exists():
            subprocess.run([*LEGION, "-C", str(root), "down"], capture_output=True, timeout=90, check=False)


@pytest.mark.nats
@pytest.mark.slow
@pytest.mark.timeout(240)
def test_ls_add_pause_resume_rm(fleet: Path) -> None:
    listed = _listed(fleet)
    assert listed["alpha/declared"]["created_by"] == "legion.yaml" and listed["fleet_paused"] is False

    added = _ok(fleet, "add", "alpha", "nightly", "--cron", "0 3 * * *", "--tz", "Europe/Berlin", "--task", "report")
    assert added["ok"] and added["schedule"]["created_by"] == "cli"
    assert added["schedule"]["next_fire_ns"] is not None
    text = _cron(fleet, "ls")
    assert text.returncode == 0 and "nightly" in text.stdout and "cron 0 3 * * * (Europe/Berlin)" in text.stdout

    assert _ok(fleet, "pause", "alpha", "nightly")["schedule"]["paused"] is True
    assert "paused" in _cron(fleet, "ls").stdout
    assert _ok(fleet, "resume", "alpha", "nightly")["schedule"]["paused"] is False

    assert _ok(fleet, "pause", "--all")["ok"] and _listed(fleet)["fleet_paused"] is True
    assert _ok(fleet, "resume", "--all")["ok"] and _listed(fleet)["fleet_paused"] is False

    assert _ok(fleet, "rm", "alpha", "nightly")["ok"]
    assert "alpha/nightly" not in _listed(fleet)
    again = _cron(fleet, "rm", "alpha", "nightly")
    assert again.returncode == 1 and "there is no schedule alpha/nightly" in again.stderr


@pytest.mark.nats
@pytest.mark.slow
@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["--every", "10s"], ["minimum interval"]),
        (["--every", "1h", "--cron", "@daily"], ["exactly one of cron, every and at"]),
        (["--every", "soon"], ["'soon' is not a duration"]),
        (["--cron", "*/0 * * * *"], ["'*/0'"]),
        (["--every", "1h", "--overlap", "never"], ["--overlap 'never'"]),
    ],
    ids=["too-often", "two-whens", "duration", "cron", "overlap"],
)
def test_add_refuses_bad_schedules_naming_the_problem(fleet: Path, args: list[str], words: list[str]) -> None:
    result = _cron(fleet, "add", "alpha", "bad", "--task", "t", *args)
    assert result.returncode == 1, result.stdout
    for word in words:
        assert word in result.stderr, result.stderr


@pytest.mark.nats
@pytest.mark.slow
async def test_run_sends_the_task_now(fleet: Path) -> None:
    state = fleet / ".legion"
    url = (state / "nats.url").read_text().strip()
    admin = await Broker.connect(ConnectSpec(url=url, creds=state / "creds" / "admin.creds", name="test-cron"))
    try:
        started: asyncio.Queue[str] = asyncio.Queue()

        async def on_started(msg: Msg) -> None:
            started.put_nowait(decode(msg.data, msg.headers, type=TaskStarted).task_id)

        await admin.subscribe(subj.EVENTS.render(source="alpha", type="task.started"), on_started)
        proc = await asyncio.create_subprocess_exec(
            *LEGION, "-C", str(fleet), "cron", "run", "alpha", "declared", "--json", stdout=asyncio.subprocess.PIPE
        )
        out, _ = await asyncio.wait_for(proc.communicate(), 60)
        assert proc.returncode == 0
        task_id = json.loads(out)["task_id"]
        assert task_id.startswith("sched-declared-now-")
        async with asyncio.timeout(60):
            while await started.get() != task_id:
                pass
    finally:
        await admin.close()


def test_cron_without_a_running_fleet_says_so(tmp_path: Path) -> None:
    (tmp_path / "legion.yaml").write_text("agents:\n  alpha: {}\n")
    result = _cron(tmp_path, "ls")
    assert result.returncode == 1
    assert "is not running" in result.stderr and "up -d" in result.stderr


def test_the_table_shows_text_from_agents_as_text() -> None:
    info = ScheduleInfo(
        agent="alpha",
        schedule_id="x",
        spec=ScheduleSpec(every="30m"),
        policy=SchedulePolicy(),
        task=ScheduleTask(text="t"),
        note="[bold red]not markup[/] \x1b[2J",
        next_fire_ns=2_000_000_000_000_000_000,
        created_by="alpha",
    )
    console = Console(width=200, force_terminal=False, color_system=None, record=True)
    console.print(cron_table(ScheduleList(schedules=[info], fleet_paused=True), now=1_999_999_000.0))
    out = console.export_text()
    assert "[bold red]not markup[/]" in out and "\\x1b[2J" in out
    assert "every 30m" in out and "2033-05-18 03:33Z (in 16m40s)" in out
    assert "PAUSED" in out
