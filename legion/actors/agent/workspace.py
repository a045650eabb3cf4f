"""An agent's workspace directory: the files its system prompt is built from, its daily log and its
learnings.

Layout (every file optional)::

    INSTRUCTIONS.md SOUL.md USER.md MEMORY.md HEARTBEAT.md   read into the prompt, each capped
    logs/YYYY-MM-DD.md                                      daily log; today's and yesterday's tails
    LEARNINGS.md                                            "- <time> [<kind>] <text>" entries

Everything here is synchronous: the files are small, local and capped, and reads are bounded in
bytes, so a call blocks for well under a millisecond. Call it through ``asyncio.to_thread`` if the
workspace lives on a slow disk. Every file's text goes through :func:`strip_invisible` before it
reaches the prompt; symlinks and non-regular files are ignored, so a workspace file cannot pull in
a file from outside the workspace.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Final, Literal

from legion.actors.agent.sanitize import strip_invisible

__all__ = [
    "DAILY_LOG_CAP",
    "FILE_CAP",
    "LEARNINGS_CAP",
    "LEARNING_CAP",
    "MAX_LEARNINGS",
    "PROMPT_FILES",
    "LearningKind",
    "Workspace",
]

PROMPT_FILES: Final = ("INSTRUCTIONS.md", "SOUL.md", "USER.md", "MEMORY.md", "HEARTBEAT.md")
FILE_CAP: Final = 8_000
"""Characters of one prompt file in the prompt; the rest is cut with a note."""
DAILY_LOG_CAP: Final = 4_000
"""Characters of one day's log in the prompt (the most recent lines)."""
LEARNINGS_CAP: Final = 4_000
"""Characters of LEARNINGS.md in the prompt (the most recent entries)."""
LEARNING_CAP: Final = 500
"""Characters of one learning entry."""
MAX_LEARNINGS: Final = 200
"""Entries LEARNINGS.md keeps; older ones are dropped when a new one is added."""
LEARNINGS: Final = "LEARNINGS.md"
_LEARNINGS_HEADER: Final = "# Learnings\n\n"
_ENTRY: Final = "- "

LearningKind = Literal["tool_failure", "user_correction"]


def _local_now() -> datetime:
    return datetime.now().astimezone()


class Workspace:
    """The workspace at ``root``; ``clock`` returns the current (preferably aware) local time."""

    def __init__(self, root: Path, *, clock: Callable[[], datetime] = _local_now) -> None:
        self.root = root
        self._clock = clock

    def ensure(self) -> Path:
        """Create the workspace directory (and parents) if missing; return it."""
        self.root.mkdir(parents=True, exist_ok=True)
        return self.root

    def daily_log_path(self, day: date) -> Path:
        return self.root / "logs" / f"{day.isoformat()}.md"

    def system_prompt(self, agent: str, role: str, instructions: str, tool_names: list[str]) -> str:
        """The system prompt: identity, inline instructions, tools, workspace files, logs, learnings."""
        clean = strip_invisible
        parts = [f"# Who you are\nYou are {clean(agent)}, {clean(role).strip() or 'an agent'}."]
        if instructions.strip():
            parts.append(f"# Instructions\n{clean(instructions).strip()}")
        if tool_names:
            parts.append("# Tools\nYou can call: " + ", ".join(clean(n) for n in tool_names) + ".")
        for name in PROMPT_FILES:
            text = _read_head(self.root / name, FILE_CAP)
            if text is not None and text.strip():
                parts.append(f"# {name}\n{text.strip()}")
        today = self._clock().date()
        for day, label in ((today - timedelta(days=1), "yesterday"), (today, "today")):
            text = _read_tail(self.daily_log_path(day), DAILY_LOG_CAP)
            if text is not None and text.strip():
                parts.append(f"# Daily log {day.isoformat()} ({label})\n{text.strip()}")
        learnings = _read_tail(self.root / LEARNINGS, LEARNINGS_CAP)
        if learnings is not None:
            entries = [line for line in learnings.splitlines() if line.startswith((_ENTRY, "["))]
            if any(e.startswith(_ENTRY) for e in entries):
                parts.append("# Learnings (most recent last)\n" + "\n".join(entries))
        return "\n\n".join(parts) + "\n"

    def log_daily(self, text: str) -> Path:
        """Append ``- HH:MM:SS text`` (one line; newlines become spaces) to today's log; return its path."""
        now = self._clock()
        line = _one_line(text)
        if not line:
            raise ValueError("daily log text is empty after removing whitespace and invisible characters")
        path = self.daily_log_path(now.date())
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("a", encoding="utf-8") as f:
            f.write(f"{_ENTRY}{now.strftime('%H:%M:%S')} {line}\n")
        return path

    def add_learning(self, kind: LearningKind, text: str) -> bool:
        """Append ``- <time> [kind] text`` to LEARNINGS.md, keeping the newest :data:`MAX_LEARNINGS`.

        Returns False (and writes nothing) if the newest entry already says the same thing.
        """
        body = _one_line(text)[:LEARNING_CAP]
        if not body:
            raise ValueError("learning text is empty after removing whitespace and invisible characters")
        path = self.root / LEARNINGS
        entries = _learning_entries(path)
        tagged = f"[{kind}] {body}"
        if entries and entries[-1].split(" ", 2)[-1] == tagged:
            return False
        stamp = self._clock().isoformat(timespec="seconds")
        entries.append(f"{_ENTRY}{stamp} {tagged}")
        _write_atomic(path, _LEARNINGS_HEADER + "\n".join(entries[-MAX_LEARNINGS:]) + "\n")
        return True


def _one_line(text: str) -> str:
    return " ".join(strip_invisible(text).split())


def _learning_entries(path: Path) -> list[str]:
    """Entry lines of LEARNINGS.md (whole file: it holds at most MAX_LEARNINGS short lines)."""
    if not _regular(path):
        return []
    lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
    return [line for line in lines if line.startswith(_ENTRY)]


def _regular(path: Path) -> bool:
    return not path.is_symlink() and path.is_file()


def _read_head(path: Path, cap: int) -> str | None:
    """The first ``cap`` visible characters of ``path``, with a note when cut; None if absent."""
    if not _regular(path):
        return None
    limit = cap * 4
    with path.open("rb") as f:
        raw = f.read(limit + 1)
    text = strip_invisible(raw[:limit].decode("utf-8", errors="replace"))
    if len(raw) > limit or len(text) > cap:
        return text[:cap] + f"\n[{path.name} cut here: it is longer than {cap} characters]"
    return text


def _read_tail(path: Path, cap: int) -> str | None:
    """The last whole lines of ``path`` within ``cap`` visible characters, with a note when cut."""
    if not _regular(path):
        return None
    limit = cap * 4
    with path.open("rb") as f:
        size = f.seek(0, os.SEEK_END)
        f.seek(max(0, size - limit))
        raw = f.read(limit)
    text = strip_invisible(raw.decode("utf-8", errors="ignore"))
    cut = size > limit or len(text) > cap
    if cut:
        text = text[-cap:]
        text = text.split("\n", 1)[1] if "\n" in text else ""
        return f"[earlier lines of {path.name} cut]\n" + text
    return text


def _write_atomic(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
