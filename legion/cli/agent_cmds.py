"""Commands registered on the `legion` app by :func:`register` (kept apart from app.py to keep files small)."""

from __future__ import annotations

import typer

__all__ = ["register"]


def register(app: typer.Typer) -> None:
    """Add this module's commands to ``app``."""
