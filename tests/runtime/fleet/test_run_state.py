"""run/state.json and run/launcher.pid: atomic writes, and liveness checks against real processes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from legion.runtime.fleet.backends.base import ActorRef
from legion.runtime.fleet.backends.process import ProcessBackend, pid_of
from legion.runtime.fleet.procs import wait_gone
from legion.runtime.fleet.state import (
    ActorRecord,
    FleetState,
    launcher_alive,
    read_launcher_pid,
    read_state,
    run_dir,
    write_launcher_pid,
    write_state,
)

SLEEPER = "import sys; sys.stdin.read()"  # alive until its stdin closes (the fixture) or a signal


@pytest.fixture
def spawn() -> Iterator[list[subprocess.Popen[bytes]]]:
    procs: list[subprocess.Popen[bytes]] = []
    yield procs
    for p in procs:
        if p.poll() is None:
            p.kill()
        p.wait(10)


def _start(procs: list[subprocess.Popen[bytes]], *argv: str) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen(list(argv), stdin=subprocess.PIPE)
    procs.append(proc)
    return proc


def test_state_round_trips_and_is_replaced_atomically(tmp_path: Path) -> None:
    state = FleetState(fleet="f", fleet_dir=str(tmp_path), launcher_pid=123, status="running")
    state.actors["alpha"] = ActorRecord(
        kind="agent",
        state="healthy",
        ref=ActorRef(backend="process", id="42:7", label="42"),
        restarts=2,
        started_at=1.5,
        log="x",
    )
    write_state(tmp_path, state)
    state.status = "stopping"
    write_state(tmp_path, state)
    back = read_state(tmp_path)
    assert back is not None
    assert back.status == "stopping"
    assert back.actors["alpha"] == state.actors["alpha"]
    assert back.updated_at > 0
    assert sorted(p.name for p in run_dir(tmp_path).iterdir()) == ["state.json"], "no temp file is left"


def test_a_missing_or_broken_state_reads_as_none(tmp_path: Path) -> None:
    assert read_state(tmp_path) is None
    run_dir(tmp_path).mkdir(parents=True)
    (run_dir(tmp_path) / "state.json").write_text("{not json")
    assert read_state(tmp_path) is None
    assert read_launcher_pid(tmp_path) is None


def test_launcher_alive_needs_a_live_legion_up_command_line(
    tmp_path: Path, spawn: list[subprocess.Popen[bytes]]
) -> None:
    legion_like = _start(spawn, sys.executable, "-c", SLEEPER, "legion", "up")
    other = _start(spawn, "cat")  # a reused pid: alive (reading its stdin), but not ours
    write_launcher_pid(tmp_path, legion_like.pid)
    assert read_launcher_pid(tmp_path) == legion_like.pid
    assert launcher_alive(legion_like.pid)
    assert not launcher_alive(other.pid)
    other.kill()
    assert wait_gone(other.pid, 10)
    assert not launcher_alive(other.pid), "a zombie or dead pid is not alive"
    other.wait(10)
    assert not launcher_alive(other.pid)
    assert not launcher_alive(None)


def test_backend_leftovers_match_only_this_fleet_and_stop_asks_first(
    tmp_path: Path, spawn: list[subprocess.Popen[bytes]]
) -> None:
    mine, theirs = tmp_path / "mine", tmp_path / "theirs"
    mine.mkdir()
    theirs.mkdir()
    ours = _start(spawn, sys.executable, "-c", SLEEPER, "-m", "legion.actors.agent", "--fleet-dir", str(mine))
    foreign = _start(spawn, sys.executable, "-c", SLEEPER, "-m", "legion.actors.agent", "--fleet-dir", str(theirs))
    plain = _start(spawn, sys.executable, "-c", SLEEPER, "--fleet-dir", str(mine))  # not an actor command line
    backend = ProcessBackend()
    found = backend.leftovers(mine)
    assert [pid_of(ref) for ref in found] == [ours.pid]
    assert backend.stop(found, grace=10) == [], "it stopped on SIGTERM: nothing had to be killed"
    assert ours.wait(10) == -signal.SIGTERM
    assert foreign.poll() is None and plain.poll() is None
    assert backend.leftovers(mine) == []
    os.kill(foreign.pid, signal.SIGKILL)
