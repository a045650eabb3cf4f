"""What a running fleet looks like from outside: ``<fleet>/.legion/run/``.

``launcher.pid`` holds the pid of the ``legion up`` process (the launcher is always a host
process); ``state.json`` (written atomically by the launcher whenever something changes) holds the
NATS URL and every actor's backend, ref, state and restarts. ``legion ps``, ``legion down`` and a
second ``legion up`` read them and ask the backend about each ref.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import time
from pathlib import Path
from typing import Literal

import msgspec

from legion.runtime.config import state_dir_of
from legion.runtime.fleet.backends.base import ActorRef
from legion.runtime.fleet.procs import cmdline, looks_like_legion

__all__ = [
    "ActorRecord",
    "FleetState",
    "NatsRecord",
    "clear_run_files",
    "launcher_alive",
    "nats_leftovers",
    "read_launcher_pid",
    "read_state",
    "run_dir",
    "write_launcher_pid",
    "write_state",
]

ActorStatus = Literal["starting", "healthy", "restarting", "crash-loop", "failed", "stopped"]
"""``failed``: it exited with code 2 (invalid configuration), which a restart cannot fix."""
FleetStatus = Literal["starting", "running", "stopping", "stopped", "failed"]


class ActorRecord(msgspec.Struct, kw_only=True):
    kind: str
    state: ActorStatus = "starting"
    ref: ActorRef | None = None  # the backend's name for the running actor
    restarts: int = 0
    started_at: float | None = None  # epoch seconds of the current process's start
    log: str = ""


class NatsRecord(msgspec.Struct, kw_only=True):
    url: str = ""
    embedded: bool = True
    pid: int | None = None  # the embedded nats-server (a host process); None for an external server
    state: ActorStatus = "starting"
    restarts: int = 0  # the launcher restarted it after it exited
    log: str = ""


class FleetState(msgspec.Struct, kw_only=True):
    """The schema of ``run/state.json`` (docs/operations.md, "The .legion directory")."""

    fleet: str
    fleet_dir: str
    launcher_pid: int
    backend: str = "process"
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


def launcher_alive(pid: int | None) -> bool:
    """``pid`` is a running ``legion up`` (not a zombie, not a reused pid)."""
    if pid is None or pid <= 0:
        return False
    argv = cmdline(pid)
    return looks_like_legion(argv) and "up" in argv


def nats_leftovers(fleet_dir: Path) -> list[int]:
    """Live embedded nats-servers of this fleet (``nats-server -c <fleet>/.legion/...``)."""
    root = str(fleet_dir.resolve())
    found = []
    with contextlib.suppress(OSError):
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            argv = cmdline(int(entry.name))
            if argv and os.path.basename(argv[0]) == "nats-server":
                for flag, value in itertools.pairwise(argv):
                    if flag == "-c" and value.startswith(root + os.sep):
                        found.append(int(entry.name))
    return found
