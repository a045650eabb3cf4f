"""Control a fleet from outside its launcher: ``legion up -d`` (start in the background and wait),
``legion down``, ``legion ps``. They work from ``run/launcher.pid`` and ``run/state.json``."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from legion.actors.launcher.logs import tail_lines
from legion.actors.launcher.run import clean_stale
from legion.actors.launcher.supervisor import OnChange
from legion.contracts.errors import LegionError
from legion.runtime.fleet import state_dir_of
from legion.runtime.state import (
    FleetState,
    clear_run_files,
    fleet_processes,
    launcher_alive,
    read_launcher_pid,
    read_state,
    wait_gone,
)

__all__ = ["DownResult", "LauncherFailed", "PsRow", "detach", "down", "ps_rows", "ps_status"]


class LauncherFailed(LegionError):
    """The background launcher exited (or hung) before the fleet was healthy; carries its log's tail."""

    def __init__(self, message: str, log_tail: list[str]) -> None:
        self.log_tail = log_tail
        super().__init__(message)


def _launcher_log(fleet_dir: Path) -> Path:
    return state_dir_of(fleet_dir) / "logs" / "launcher.log"


def detach(fleet_dir: Path, *, on_change: OnChange | None = None, timeout: float = 300.0) -> FleetState:
    """Start ``legion up DIR`` in its own session (output to .legion/logs/launcher.log) and wait until
    its state.json says every actor is healthy. The caller has checked that none runs already."""
    fleet_dir = fleet_dir.resolve()
    log_path = _launcher_log(fleet_dir)
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("ab") as out:
        out.write(f"--- legion up -d {fleet_dir} at {time.strftime('%Y-%m-%dT%H:%M:%S%z')} ---\n".encode())
        out.flush()
        proc = subprocess.Popen(
            [sys.executable, "-m", "legion", "up", str(fleet_dir)],
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # survives the terminal; Ctrl-C here does not reach it
            env={**os.environ, "LEGION_DETACH": "0", "LEGION_ONCE": "0", "LEGION_JSON": "0"},
        )
    deadline = time.monotonic() + timeout
    last: float | None = None
    while True:
        state = read_state(fleet_dir)
        if state is not None and state.launcher_pid == proc.pid:
            if on_change is not None and state.updated_at != last:
                last = state.updated_at
                on_change(state)
            if state.status == "running":
                return state
        if proc.poll() is not None:
            raise LauncherFailed(
                f"the launcher exited with code {proc.returncode} before the fleet was healthy; see {log_path}",
                tail_lines(log_path, 20),
            )
        if time.monotonic() > deadline:
            proc.terminate()  # it stops what it started
            raise LauncherFailed(
                f"the fleet was not healthy within {timeout:g}s; the launcher was stopped; see {log_path}",
                tail_lines(log_path, 20),
            )
        wait_gone(proc.pid, 0.1)  # wakes at once if the launcher exits, else re-reads state.json


@dataclass(frozen=True, slots=True)
class DownResult:
    was_running: bool
    launcher_pid: int | None = None
    forced: bool = False  # the launcher did not exit in time and was killed, with every actor
    killed: list[int] = field(default_factory=list)  # leftover or force-killed processes


def down(fleet_dir: Path, *, timeout: float = 60.0, on_wait: OnChange | None = None) -> DownResult:
    """SIGTERM the launcher and wait until it has stopped the agents, the vault, the ledger and NATS.
    Not running: stop leftovers of a crashed launcher (if any) and clean stale files."""
    fleet_dir = fleet_dir.resolve()
    pid = read_launcher_pid(fleet_dir)
    if pid is None or not launcher_alive(pid):
        stale = clean_stale(fleet_dir)
        return DownResult(was_running=False, launcher_pid=stale.launcher_pid, killed=stale.stopped)
    state = read_state(fleet_dir)
    if on_wait is not None and state is not None:
        on_wait(state)
    os.kill(pid, signal.SIGTERM)
    if wait_gone(pid, timeout):
        (state_dir_of(fleet_dir) / "run" / "launcher.pid").unlink(missing_ok=True)
        return DownResult(was_running=True, launcher_pid=pid)
    known = [state.nats.pid, *(a.pid for a in state.actors.values())] if state else []
    victims = [pid, *fleet_processes(fleet_dir, known)]
    for victim in victims:
        try:
            os.kill(victim, signal.SIGKILL)
        except ProcessLookupError:
            continue
        wait_gone(victim, 5.0)
    clear_run_files(fleet_dir)
    return DownResult(was_running=True, launcher_pid=pid, forced=True, killed=victims)


@dataclass(frozen=True, slots=True)
class PsRow:
    name: str
    kind: str
    state: str
    pid: int | None
    alive: bool
    restarts: int
    uptime_s: float | None
    log: str

    def as_dict(self) -> dict[str, object]:
        return {
            "name": self.name,
            "kind": self.kind,
            "state": self.state,
            "pid": self.pid,
            "alive": self.alive,
            "restarts": self.restarts,
            "uptime_s": None if self.uptime_s is None else round(self.uptime_s, 1),
            "log": self.log,
        }


def ps_status(fleet_dir: Path) -> tuple[int, FleetState] | None:
    """(launcher pid, state) of a running fleet, else None."""
    fleet_dir = fleet_dir.resolve()
    pid = read_launcher_pid(fleet_dir)
    state = read_state(fleet_dir)
    if pid is None or state is None or not launcher_alive(pid):
        return None
    return pid, state


def ps_rows(fleet_dir: Path, state: FleetState) -> list[PsRow]:
    """NATS and every actor, with a live check of each pid: a recorded pid that is gone is 'exited'."""
    live = set(fleet_processes(fleet_dir.resolve(), [state.nats.pid, *(a.pid for a in state.actors.values())]))
    now = time.time()
    nats = state.nats
    rows = [
        PsRow(
            "nats",
            "nats" if nats.embedded else "nats (external)",
            nats.state if nats.pid is None or nats.pid in live else "exited",
            nats.pid,
            nats.pid in live,
            0,
            now - state.started_at if nats.state == "healthy" else None,
            nats.log,
        )
    ]
    for name, rec in state.actors.items():
        alive = rec.pid is not None and rec.pid in live
        st = rec.state if rec.pid is None or alive else "exited"
        up = now - rec.started_at if alive and rec.started_at else None
        rows.append(PsRow(name, rec.kind, st, rec.pid, alive, rec.restarts, up, rec.log))
    return rows
