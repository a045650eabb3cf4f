"""Control a fleet from outside its launcher: ``legion up -d`` (start in the background and wait),
``legion down``, ``legion ps``. They work from ``run/launcher.pid`` and ``run/state.json``."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from legion.contracts.errors import LegionError
from legion.runtime.config import state_dir_of
from legion.runtime.fleet.backends import backend_for
from legion.runtime.fleet.logs import tail_lines
from legion.runtime.fleet.procs import wait_gone
from legion.runtime.fleet.run import clean_stale, stop_fleet_leftovers
from legion.runtime.fleet.state import (
    FleetState,
    clear_run_files,
    launcher_alive,
    nats_leftovers,
    read_launcher_pid,
    read_state,
)
from legion.runtime.fleet.supervisor import OnChange

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
            [sys.executable, "-m", "legion", "-C", str(fleet_dir), "up"],
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
    killed: list[str] = field(default_factory=list)  # leftover or force-killed actors and processes


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
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)
    wait_gone(pid, 5.0)
    killed = [str(pid), *stop_fleet_leftovers(fleet_dir, state, grace=0.0)]
    clear_run_files(fleet_dir)
    return DownResult(was_running=True, launcher_pid=pid, forced=True, killed=killed)


@dataclass(frozen=True, slots=True)
class PsRow:
    name: str
    kind: str
    state: str
    backend: str
    id: str | None  # the backend's label: a pid, a short container id
    alive: bool
    restarts: int
    uptime_s: float | None
    log: str

    def as_dict(self) -> dict[str, object]:
        return {
            "name": self.name,
            "kind": self.kind,
            "state": self.state,
            "backend": self.backend,
            "id": self.id,
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
    """NATS and every actor, each checked live with its backend: a recorded actor that is gone is 'exited'."""
    backend = backend_for(state.backend)
    now = time.time()
    nats = state.nats
    nats_alive = nats.pid is not None and nats.pid in nats_leftovers(fleet_dir.resolve())
    rows = [
        PsRow(
            "nats",
            "nats" if nats.embedded else "nats (external)",
            nats.state if nats.pid is None or nats_alive else "exited",
            "process" if nats.embedded else "external",
            str(nats.pid) if nats.pid else None,
            nats_alive,
            nats.restarts,
            now - state.started_at if nats.state == "healthy" else None,
            nats.log,
        )
    ]
    for name, rec in state.actors.items():
        alive = rec.ref is not None and backend.alive(rec.ref)
        st = rec.state if rec.ref is None or alive else "exited"
        up = now - rec.started_at if alive and rec.started_at else None
        label = (rec.ref.label or rec.ref.id) if rec.ref else None
        rows.append(PsRow(name, rec.kind, st, state.backend, label, alive, rec.restarts, up, rec.log))
    return rows
