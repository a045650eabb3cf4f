"""The issue's walk-through, through real subprocesses only: init, up -d, task --wait, tail, down, up again.

The starter template answers through the vault's built-in offline model, so no key and no network
are needed: this is what `make up` shows a newcomer.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

pytestmark = [pytest.mark.nats, pytest.mark.slow, pytest.mark.timeout(300)]

LEGION = [sys.executable, "-m", "legion"]


def legion(*args: str, timeout: float = 180) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*LEGION, *args], capture_output=True, text=True, timeout=timeout, check=False)


def ok(*args: str) -> str:
    result = legion(*args)
    assert result.returncode == 0, f"legion {' '.join(args)}\n{result.stdout}\n{result.stderr}"
    return result.stdout


@pytest.fixture
def fleet(tmp_path: Path) -> Iterator[Path]:
    where = tmp_path / "myfleet"
    ok("init", str(where))
    yield where
    legion("-C", str(where), "down", timeout=120)  # whatever the test did, nothing is left running


def tail_json(fleet: Path) -> list[dict[str, object]]:
    out = ok("tail", "--json", "--from-seq", "1", "--fleet-dir", str(fleet))
    return [json.loads(line) for line in out.splitlines() if line.strip()]


def test_init_up_task_tail_down_up_keeps_history_and_costs(fleet: Path) -> None:
    ok("-C", str(fleet), "up", "-d")
    ps = json.loads(ok("-C", str(fleet), "ps", "--json"))
    states = {actor["name"]: actor["state"] for actor in ps["actors"]}
    assert states == dict.fromkeys(("nats", "ledger", "vault", "scheduler", "starter"), "healthy")

    done = json.loads(ok("task", "starter", "Say hello to the team.", "--wait", "--json", "--fleet-dir", str(fleet)))
    assert done["status"] == "completed"
    assert done["summary"].startswith("[offline model]") and "Say hello to the team." in done["summary"]

    events = tail_json(fleet)
    mine = [e for e in events if e["trace"] == done["trace"]]
    types = {e["type"] for e in mine}
    assert {"task.started.v1", "model.called.v1", "task.completed.v1", "agent.step.v1"} <= types
    assert all(e["trace"] == done["trace"] for e in events if e["type"] == "task.completed.v1")

    chat = subprocess.run(
        [*LEGION, "chat", "starter", "--session", "e2e", "--fleet-dir", str(fleet)],
        input="Hello from the chat.\n/reset\n/quit\n",
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert chat.returncode == 0, chat.stderr
    assert "starter> [offline model]" in chat.stdout and "Hello from the chat." in chat.stdout
    assert "(history forgotten)" in chat.stdout

    costs = json.loads(ok("-C", str(fleet), "costs", "--json"))
    calls_before = sum(int(row.get("calls", 0)) for row in costs["rows"])
    assert calls_before >= 1

    ok("-C", str(fleet), "down")
    assert legion("-C", str(fleet), "ps").returncode == 1
    ok("-C", str(fleet), "up", "-d")

    after = tail_json(fleet)
    assert [e for e in after if e["trace"] == done["trace"]] == mine  # history intact, same sequence numbers
    costs_after = json.loads(ok("-C", str(fleet), "costs", "--json"))
    assert sum(int(row.get("calls", 0)) for row in costs_after["rows"]) == calls_before
