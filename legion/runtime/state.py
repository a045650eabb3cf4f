"""What a running fleet looks like from outside: ``<fleet>/.legion/run/``.

``launcher.pid`` holds the pid of the ``legion up`` process; ``state.json`` (written atomically by the
launcher whenever something changes) holds the NATS URL and every actor's pid, state and restarts.
``legion ps``, ``legion down`` and a second ``legion up`` read them. A pid counts as alive only if
its ``/proc/<pid>/cmdline`` still looks like Legion's: a pid reused by another program is stale.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import select
import signal
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Literal

import msgspec

from legion.runtime.fleet import state_dir_of

__all__ = [
    "ActorRecord",
    "FleetState",
    "NatsRecord",
    "clear_run_files",
    "fleet_processes",
    "launcher_alive",
    "looks_like_legion",
    "read_launcher_pid",
    "read_state",
    "run_dir",
    "stop_leftovers",
    "terminate",
    "wait_gone",
    "write_launcher_pid",
    "write_state",
]

ActorStatus = Literal["starting", "healthy", "restarting", "crash-loop", "failed", "stopped"]
"""``failed``: it exited with code 2 (invalid configuration), which a restart cannot fix."""
FleetStatus = Literal["starting", "running", "stopping", "stopped", "failed"]


class ActorRecord(msgspec.Struct, kw_only=True):
    kind: str
    state: ActorStatus = "starting"
    pid: int | None = None
    restarts: int = 0
    started_at: float | None = None  # epoch seconds of the current process's start
    log: str = ""


class NatsRecord(msgspec.Struct, kw_only=True):
    url: str = ""
    embedded: bool = True
    pid: int | None = None  # the embedded nats-server; None for an external server
    state: ActorStatus = "starting"
    log: str = ""


class FleetState(msgspec.Struct, kw_only=True):
    """The schema of ``run/state.json`` (docs/operations.md, "The .legion directory")."""

    fleet: str
    fleet_dir: str
    launcher_pid: int
    status: FleetStatus = "starting"
    started_at: float = 0.0
    updated_at: float = 0.0
    nats: NatsRecord = msgspec.field(default_factory=NatsRecord)
    actors: dict[str, ActorRecord] = msgspec.field(default_factory=dict)
    streams: dict[str, int] = msgspec.field(default_factory=dict)  # message counts when the fleet came up
    buckets: list[str] = msgspec.field(default_factory=list)
    provisioned: dict[str, list[str]] = msgspec.field(default_factory=dict)
    error: str = ""


def run_dir(fleet_dir: Path) -> Path:
    return state_dir_of(fleet_dir) / "run"


def _pid_path(fleet_dir: Path) -> Path:
    return run_dir(fleet_dir) / "launcher.pid"


def _state_path(fleet_dir: Path) -> Path:
    return run_dir(fleet_dir) / "state.json"


def _atomic_write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with tmp.open("wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    tmp.replace(path)


def write_state(fleet_dir: Path, state: FleetState) -> None:
    state.updated_at = time.time()
    _atomic_write(_state_path(fleet_dir), msgspec.json.format(msgspec.json.encode(state), indent=2) + b"\n")


def read_state(fleet_dir: Path) -> FleetState | None:
    """The last state written, or None (no file, or a file from an incompatible version)."""
    try:
        return msgspec.json.decode(_state_path(fleet_dir).read_bytes(), type=FleetState)
    except (OSError, msgspec.DecodeError, msgspec.ValidationError):
        return None


def write_launcher_pid(fleet_dir: Path, pid: int | None = None) -> None:
    _atomic_write(_pid_path(fleet_dir), f"{pid or os.getpid()}\n".encode())


def read_launcher_pid(fleet_dir: Path) -> int | None:
    try:
        return int(_pid_path(fleet_dir).read_text(encoding="utf-8").strip())
    except (OSError, ValueError):
        return None


def clear_run_files(fleet_dir: Path, *, pid_too: bool = True) -> None:
    paths = [_state_path(fleet_dir), _pid_path(fleet_dir)] if pid_too else [_state_path(fleet_dir)]
    for path in paths:
        path.unlink(missing_ok=True)


def _cmdline(pid: int) -> list[str]:
    """argv of a live process ([] for a dead one or a zombie, whose cmdline is empty)."""
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return []
    return [a for a in raw.decode("utf-8", "replace").split("\0") if a]


def looks_like_legion(argv: list[str]) -> bool:
    """``legion ...``, ``python -m legion ...``, ``python -m legion.actors.<kind>`` or a nats-server."""
    for i, arg in enumerate(argv):
        base = os.path.basename(arg)
        if base in ("legion", "nats-server"):
            return True
        if arg == "-m" and i + 1 < len(argv) and argv[i + 1].split(".")[0] == "legion":
            return True
    return False


def launcher_alive(pid: int | None) -> bool:
    """``pid`` is a running ``legion up`` (not a zombie, not a reused pid)."""
    if pid is None or pid <= 0:
        return False
    argv = _cmdline(pid)
    return looks_like_legion(argv) and "up" in argv


def _belongs_to(argv: list[str], fleet_dir: Path) -> bool:
    """An actor (``-m legion.actors.* --fleet-dir DIR``) or the embedded server (``-c DIR/.legion/...``)."""
    if not looks_like_legion(argv):
        return False
    root = str(fleet_dir)
    for flag, value in itertools.pairwise(argv):
        if flag == "--fleet-dir" and os.path.abspath(value) == root:
            return any(a.startswith("legion.actors.") for a in argv)
        if flag == "-c" and value.startswith(root + os.sep) and os.path.basename(argv[0]) == "nats-server":
            return True
    return False


def fleet_processes(fleet_dir: Path, pids: Iterable[int | None] = ()) -> list[int]:
    """Live actor and nats-server processes of this fleet: ``pids`` (e.g. from state.json) plus a scan
    of /proc, each verified by its command line (it must name this fleet's directory)."""
    root = fleet_dir.resolve()
    candidates = {p for p in pids if p}
    with contextlib.suppress(OSError):
        candidates.update(int(d.name) for d in Path("/proc").iterdir() if d.name.isdigit())
    me = os.getpid()
    return sorted(p for p in candidates if p != me and _belongs_to(_cmdline(p), root))


def _stop_rank(pid: int) -> int:
    """Agents first, then the vault, then the ledger and others, then the nats-server."""
    argv = _cmdline(pid)
    if argv and os.path.basename(argv[0]) == "nats-server":
        return 3
    if "legion.actors.agent" in argv:
        return 0
    return 1 if "legion.actors.vault" in argv else 2


def stop_leftovers(fleet_dir: Path, pids: Iterable[int | None] = ()) -> list[int]:
    """Stop this fleet's live processes (see :func:`fleet_processes`) in shutdown order, each group
    SIGTERM then SIGKILL after a grace. Returns the pids that were stopped."""
    found = fleet_processes(fleet_dir, pids)
    groups: dict[int, list[int]] = {}
    for pid in found:
        groups.setdefault(_stop_rank(pid), []).append(pid)
    for rank in sorted(groups):
        terminate(groups[rank], grace=10.0 if rank == 3 else 15.0)
    return found


def wait_gone(pid: int, timeout: float) -> bool:
    """Wait until ``pid`` has exited (its pidfd becomes readable); False if it is still there."""
    try:
        fd = os.pidfd_open(pid)
    except ProcessLookupError:
        return True
    try:
        poller = select.poll()
        poller.register(fd, select.POLLIN)
        return bool(poller.poll(max(0.0, timeout) * 1000))
    finally:
        os.close(fd)


def terminate(pids: Iterable[int], *, grace: float = 10.0) -> list[int]:
    """SIGTERM each pid, wait up to ``grace`` for all, SIGKILL the rest. Returns the pids killed."""
    pending = list(pids)
    for pid in pending:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    killed = []
    for pid in pending:
        if not wait_gone(pid, deadline - time.monotonic()):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
            wait_gone(pid, 5.0)
            killed.append(pid)
    return killed
