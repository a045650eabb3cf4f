"""The launcher: ``legion up`` brings up NATS and supervises the fleet's actors; ``legion up -d``,
``down``, ``ps`` and ``logs`` control it from outside through ``.legion/run/``."""

from __future__ import annotations

from legion.actors.launcher.control import DownResult, LauncherFailed, PsRow, detach, down, ps_rows, ps_status
from legion.actors.launcher.display import ProgressDisplay, display_mode, format_age, ps_table, summary_text
from legion.actors.launcher.logs import follow, log_files, split_logs_args, tail_lines
from legion.actors.launcher.run import (
    AlreadyRunning,
    Running,
    StaleCleanup,
    UpSpec,
    clean_stale,
    find_running,
    run_up,
    summary,
)
from legion.actors.launcher.supervisor import Launcher, SupervisorSpec

__all__ = [
    "AlreadyRunning",
    "DownResult",
    "Launcher",
    "LauncherFailed",
    "ProgressDisplay",
    "PsRow",
    "Running",
    "StaleCleanup",
    "SupervisorSpec",
    "UpSpec",
    "clean_stale",
    "detach",
    "display_mode",
    "down",
    "find_running",
    "follow",
    "format_age",
    "log_files",
    "ps_rows",
    "ps_status",
    "ps_table",
    "run_up",
    "split_logs_args",
    "summary",
    "summary_text",
    "tail_lines",
]
