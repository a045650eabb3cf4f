"""Where a fleet keeps its state: ``<fleet>/.legion/`` (keys, credentials, run files, logs, stores)."""

from __future__ import annotations

from pathlib import Path

__all__ = ["state_dir_of"]


def state_dir_of(fleet_dir: Path) -> Path:
    return fleet_dir / ".legion"
