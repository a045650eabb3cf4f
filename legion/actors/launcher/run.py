"""``legion up`` as a process: one launcher per fleet directory (a lock and ``run/launcher.pid``), clean
up after a launcher that died without stopping, run until SIGINT/SIGTERM, stop in order."""

from __future__ import annotations

import asyncio
import fcntl
import os
import signal
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import structlog

from legion.actors.launcher.supervisor import Launcher, OnChange, SupervisorSpec
from legion.contracts.errors import LegionError
from legion.runtime.state import (
    FleetState,
    clear_run_files,
    launcher_alive,
    read_launcher_pid,
    read_state,
    run_dir,
    stop_leftovers,
    write_launcher_pid,
)

__all__ = ["AlreadyRunning", "Running", "StaleCleanup", "UpSpec", "clean_stale", "find_running", "run_up", "summary"]

log = structlog.get_logger("legion.launcher")


@dataclass(frozen=True, slots=True)
class Running:
    """A live ``legion up`` of a fleet directory."""

    pid: int
    state: FleetState | None

    def message(self, fleet_dir: Path) -> str:
        fleet = self.state.fleet if self.state else fleet_dir.name
        url = self.state.nats.url if self.state and self.state.nats.url else "nats starting"
        return f"fleet {fleet} is already running (pid {self.pid}, {url}); `legion down` stops it"


class AlreadyRunning(LegionError):
    def __init__(self, running: Running, fleet_dir: Path) -> None:
        self.running = running
        super().__init__(running.message(fleet_dir))


@dataclass(frozen=True, slots=True)
class StaleCleanup:
    launcher_pid: int | None  # the dead launcher's pid, if a pid file was left
    stopped: list[int]  # leftover actor / nats-server processes that were still alive

    @property
    def anything(self) -> bool:
        return self.launcher_pid is not None or bool(self.stopped)


@dataclass(frozen=True, slots=True)
class UpSpec:
    fleet_dir: Path
    once: bool = False  # provision, report, stop
    supervisor: SupervisorSpec | None = None


def find_running(fleet_dir: Path) -> Running | None:
    pid = read_launcher_pid(fleet_dir)
    if pid is not None and launcher_alive(pid):
        return Running(pid=pid, state=read_state(fleet_dir))
    return None


def clean_stale(fleet_dir: Path) -> StaleCleanup:
    """After a launcher died without stopping (kill -9, power loss): stop this fleet's leftover
    processes (agents first, then vault/ledger, then nats-server, each SIGTERM then SIGKILL) and remove
    the stale run files. The NATS store and everything else in .legion/ is kept."""
    fleet_dir = fleet_dir.resolve()
    state = read_state(fleet_dir)
    pid = read_launcher_pid(fleet_dir)
    known: list[int | None] = []
    if state is not None:
        known = [state.nats.pid, *(a.pid for a in state.actors.values())]
    stopped = stop_leftovers(fleet_dir, known)
    if pid is not None or state is not None:
        clear_run_files(fleet_dir)
    if stopped:
        log.info("launcher.stale_processes_stopped", pids=stopped, dead_launcher=pid)
    return StaleCleanup(launcher_pid=pid, stopped=stopped)


def _lock(fleet_dir: Path) -> int | None:
    """An exclusive lock held for the launcher's lifetime (released by the kernel if it dies)."""
    path = run_dir(fleet_dir) / "launcher.lock"
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    return fd


def summary(state: FleetState) -> dict[str, object]:
    """What ``legion up --json`` (and ``-d --json``) prints once every actor is healthy."""
    return {
        "status": "healthy",
        "fleet": state.fleet,
        "fleet_dir": state.fleet_dir,
        "launcher_pid": state.launcher_pid,
        "nats_url": state.nats.url,
        "embedded": state.nats.embedded,
        "streams": state.streams,
        "buckets": state.buckets,
        "agents": sorted(n for n, a in state.actors.items() if a.kind == "agent"),
        "actors": {n: a.state for n, a in state.actors.items()},
        "pids": {n: a.pid for n, a in state.actors.items()},
        "provisioned": {"created": [], "updated": [], **state.provisioned},
    }


async def run_up(
    spec: UpSpec,
    *,
    on_change: OnChange | None = None,
    on_ready: Callable[[FleetState], None] | None = None,
    on_stale: Callable[[StaleCleanup], None] | None = None,
) -> FleetState:
    """Run the fleet of ``spec.fleet_dir`` until SIGINT/SIGTERM (or, with ``once``, until it is up).

    Raises AlreadyRunning if another launcher runs this fleet, ConfigError for a bad legion.yaml
    (before anything is touched), Unavailable if an actor does not come up."""
    fleet_dir = spec.fleet_dir.resolve()
    running = find_running(fleet_dir)
    if running is not None:
        raise AlreadyRunning(running, fleet_dir)
    launcher = Launcher(fleet_dir, spec=spec.supervisor, on_change=on_change)  # validates legion.yaml
    lock = _lock(fleet_dir)
    if lock is None:  # another launcher holds the lock but has not written its pid yet
        raise AlreadyRunning(Running(pid=read_launcher_pid(fleet_dir) or 0, state=None), fleet_dir)
    try:
        stale = clean_stale(fleet_dir)
        if stale.anything and on_stale is not None:
            on_stale(stale)
        write_launcher_pid(fleet_dir)
        await _serve(launcher, spec, on_ready)
    finally:
        if read_launcher_pid(fleet_dir) == os.getpid():
            (run_dir(fleet_dir) / "launcher.pid").unlink(missing_ok=True)
        os.close(lock)
    return launcher.state


async def _serve(launcher: Launcher, spec: UpSpec, on_ready: Callable[[FleetState], None] | None) -> None:
    """Start; on SIGINT/SIGTERM during the start, abandon it. Then run until a signal. Always stop."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    starting = asyncio.create_task(launcher.start(), name="launcher-start")
    stopping = asyncio.create_task(stop.wait(), name="launcher-stop-signal")
    try:
        await asyncio.wait({starting, stopping}, return_when=asyncio.FIRST_COMPLETED)
        if not starting.done():  # `legion down` (or Ctrl-C) while starting: abandon the start
            starting.cancel()
        await asyncio.wait({starting})
        error = None if starting.cancelled() else starting.exception()
        if error is not None:
            launcher.state.error = str(error)  # kept in state.json (status "stopped") for a post-mortem
            raise error
        if not stop.is_set():
            if on_ready is not None:
                on_ready(launcher.state)
            if not spec.once:
                await stopping
    finally:
        stopping.cancel()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
        await launcher.stop()
