"""The ``legion`` command line (typer). Thin: parses options and calls the runtime."""

from __future__ import annotations

from legion.cli.app import app, main

__all__ = ["app", "main"]
