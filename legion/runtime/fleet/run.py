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

from legion.contracts.errors import LegionError
from legion.runtime.fleet.backends import ActorRef, backend_for
from legion.runtime.fleet.procs import terminate
from legion.runtime.fleet.state import (
    FleetState,
    clear_run_files,
    launcher_alive,
    nats_leftovers,
    read_launcher_pid,
    read_state,
    run_dir,
    write_launcher_pid,
)
from legion.runtime.fleet.supervisor import Launcher, OnChange, SupervisorSpec
from legion.runtime.kinds import load_kinds

__all__ = [
    "AlreadyRunning",
    "Running",
    "StaleCleanup",
    "UpSpec",
    "clean_stale",
    "find_running",
    "run_up",
    "stop_fleet_leftovers",
    "summary",
]

log = structlog.get_logger("legion.launcher")


@dataclass(frozen=True, slots=True)
class Running:
    """A live ``legion up`` of a fleet directory."""

    pid: int
    state: FleetState | None

    def message(self, fleet_dir: Path, down: str = "legion down") -> str:
        """``down``: the command that stops it, as the user should type it where they are."""
        fleet = self.state.fleet if self.state else fleet_dir.name
        url = self.state.nats.url if self.state and self.state.nats.url else "nats starting"
        return f"fleet {fleet} is already running (pid {self.pid}, {url}); `{down}` stops it"


class AlreadyRunning(LegionError):
    def __init__(self, running: Running, fleet_dir: Path) -> None:
        self.running = running
        super().__init__(running.message(fleet_dir))


@dataclass(frozen=True, slots=True)
class StaleCleanup:
    launcher_pid: int | None  # the dead launcher's pid, if a pid file was left
    stopped: list[str]  # leftover actors (their ref labels) and nats-server pids that were still alive

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


def _stop_order(state: FleetState | None) -> dict[str, int]:
    """Actor name -> stage, from the run files (unknown kinds stop first, like agents)."""
    kinds = load_kinds()
    if state is None:
        return {}
    return {name: kinds[rec.kind].stage if rec.kind in kinds else 1000 for name, rec in state.actors.items()}


def stop_fleet_leftovers(fleet_dir: Path, state: FleetState | None, *, grace: float = 15.0) -> list[str]:
    """Stop what a launcher left running: every actor the backend finds for this fleet (those named in
    state.json in the reverse of their start order, then any other), then the embedded nats-server.
    Returns the labels of what was stopped."""
    backend = backend_for(state.backend if state is not None else "process")
    found = {ref.id: ref for ref in backend.leftovers(fleet_dir)}
    order = _stop_order(state)
    known: dict[int, list[ActorRef]] = {}
    for name, rec in state.actors.items() if state is not None else ():
        if rec.ref is not None and rec.ref.id in found:
            known.setdefault(order.get(name, 1000), []).append(found.pop(rec.ref.id))
    groups = [list(found.values())] + [known[stage] for stage in sorted(known, reverse=True)]
    stopped: list[str] = []
    for group in groups:
        if group:
            backend.stop(group, grace=grace)
            stopped += [ref.label or ref.id for ref in group]
    servers = nats_leftovers(fleet_dir)
    terminate(servers, grace=10.0)
    return stopped + [str(pid) for pid in servers]


def clean_stale(fleet_dir: Path) -> StaleCleanup:
    """After a launcher died without stopping (kill -9, power loss): stop this fleet's leftover
    actors (agents first, then vault/ledger, then nats-server, each asked to stop, then killed) and
    remove the stale run files. The NATS store and everything else in .legion/ is kept."""
    fleet_dir = fleet_dir.resolve()
    state = read_state(fleet_dir)
    pid = read_launcher_pid(fleet_dir)
    stopped = stop_fleet_leftovers(fleet_dir, state)
    if pid is not None or state is not None:
        clear_run_files(fleet_dir)
    if stopped:
        log.info("launcher.stale_processes_stopped", stopped=stopped, dead_launcher=pid)
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
        "backend": state.backend,
        "ids": {n: a.ref.label if a.ref else None for n, a in state.actors.items()},
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
