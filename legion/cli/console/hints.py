"""The commands Legion suggests, spelled so they work where the user typed the last one: with
``-C DIR`` when the fleet is not the current directory."""

from __future__ import annotations

import os
import shlex
from pathlib import Path

__all__ = ["hint"]


def hint(command: str, fleet_dir: Path) -> str:
    """``legion <command>`` for the fleet in ``fleet_dir``, as the user should type it from here."""
    target = fleet_dir.resolve()
    if target == Path.cwd().resolve():
        return f"legion {command}"
    try:
        shown = os.path.relpath(target)
    except ValueError:
        shown = str(target)
    if shown.startswith(".."):  # outside the current directory: the absolute path reads better
        shown = str(target)
    return f"legion -C {shlex.quote(shown)} {command}"
