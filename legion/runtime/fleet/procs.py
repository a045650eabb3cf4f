"""Host processes seen through ``/proc``: who a pid is, whether it is still the same process, and
how to stop a group of them. Used for the launcher itself (always a host process), the embedded
nats-server and the process backend. A pid alone is never trusted: a process is named by its pid
and its start time, so a pid the kernel reused for another program does not count as alive."""

from __future__ import annotations

import contextlib
import os
import select
import signal
import time
from collections.abc import Iterable
from pathlib import Path

__all__ = ["cmdline", "looks_like_legion", "start_time", "terminate", "wait_gone"]


def cmdline(pid: int) -> list[str]:
    """argv of a live process ([] for a dead one or a zombie, whose cmdline is empty)."""
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return []
    return [a for a in raw.decode("utf-8", "replace").split("\0") if a]


def start_time(pid: int) -> int | None:
    """The process's start time in clock ticks since boot (``/proc/<pid>/stat`` field 22); None if it
    is gone or a zombie."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return None
    fields = raw[raw.rfind(")") + 2 :].split()  # the name in parentheses may hold spaces
    if not fields or fields[0] == "Z":
        return None
    return int(fields[19])


def looks_like_legion(argv: list[str]) -> bool:
    """``legion ...``, ``python -m legion ...``, ``python -m <actor module>`` or a nats-server."""
    for i, arg in enumerate(argv):
        base = os.path.basename(arg)
        if base in ("legion", "nats-server"):
            return True
        if arg == "-m" and i + 1 < len(argv) and argv[i + 1].split(".")[0] == "legion":
            return True
    return False


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
