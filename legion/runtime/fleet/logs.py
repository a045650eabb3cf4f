"""``legion logs``: the last lines of an actor's log file in ``.legion/logs/``, or of all of them, and
``-f`` to follow. Every process the launcher starts appends its output to ``<actor>.log``; the
embedded server writes ``nats-server.log``; ``legion up -d`` writes ``launcher.log``."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from legion.contracts.errors import ConfigError
from legion.runtime.config import state_dir_of

__all__ = ["LogFile", "follow", "log_files", "tail_lines"]

_BLOCK = 64 * 1024


@dataclass(frozen=True, slots=True)
class LogFile:
    name: str  # the actor, "nats-server" or "launcher"
    path: Path


def tail_lines(path: Path, n: int) -> list[str]:
    """The last ``n`` lines of ``path`` (reads backwards in blocks; a huge log costs no more)."""
    if n <= 0:
        return []
    try:
        f = path.open("rb")
    except OSError:
        return []
    with f:
        end = f.seek(0, os.SEEK_END)
        data = b""
        pos = end
        while pos > 0 and data.count(b"\n") <= n:
            step = min(_BLOCK, pos)
            pos -= step
            f.seek(pos)
            data = f.read(step) + data
    lines = data.decode("utf-8", "replace").splitlines()
    return lines[-n:]


def log_files(fleet_dir: Path, actor: str | None) -> list[LogFile]:
    """The log of ``actor`` (``nats`` means nats-server.log unless an agent is called nats), or every
    log of the fleet: launcher, nats-server, then the actors in name order."""
    logs = state_dir_of(fleet_dir.resolve()) / "logs"
    present = sorted(p for p in logs.glob("*.log") if p.is_file()) if logs.is_dir() else []
    if actor is None:
        first = {"launcher": 0, "nats-server": 1}
        files = [LogFile(p.stem, p) for p in present]
        if not files:
            raise ConfigError(f"no logs in {logs}; has `legion up` run in {fleet_dir}?")
        return sorted(files, key=lambda f: (first.get(f.name, 2), f.name))
    path = logs / f"{actor}.log"
    if not path.exists() and actor == "nats":
        path = logs / "nats-server.log"
    if not path.exists():
        known = ", ".join(p.stem for p in present) or "none yet"
        raise ConfigError(f"no log for {actor!r} in {logs} (logs: {known}); name an actor of the fleet")
    return [LogFile(actor, path)]


def follow(files: list[LogFile], emit: Callable[[str], None], *, prefix: bool, poll_s: float = 0.2) -> None:
    """Print lines appended to ``files`` from now on, until interrupted (KeyboardInterrupt). A file
    that is truncated or replaced is read again from its start; a file that appears later is picked up."""
    width = max(len(f.name) for f in files)
    offsets: dict[Path, tuple[int, int]] = {}  # path -> (inode, offset)
    partial: dict[Path, bytes] = {}
    for f in files:
        try:
            st = f.path.stat()
            offsets[f.path] = (st.st_ino, st.st_size)
        except OSError:
            offsets[f.path] = (0, 0)
    while True:
        got = False
        for f in files:
            try:
                st = f.path.stat()
            except OSError:
                continue
            inode, offset = offsets[f.path]
            if st.st_ino != inode or st.st_size < offset:
                offset, partial[f.path] = 0, b""
            if st.st_size == offset:
                offsets[f.path] = (st.st_ino, offset)
                continue
            with f.path.open("rb") as fh:
                fh.seek(offset)
                chunk = fh.read()
            offsets[f.path] = (st.st_ino, offset + len(chunk))
            *lines, rest = (partial.get(f.path, b"") + chunk).split(b"\n")
            partial[f.path] = rest
            for raw in lines:
                line = raw.decode("utf-8", "replace")
                emit(f"{f.name:<{width}} | {line}" if prefix else line)
                got = True
        if not got:
            time.sleep(poll_s)  # a log has no change notification here; tail -f polls too
