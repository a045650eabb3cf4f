"""Running a fleet: NATS set-up (``nats``), the supervisor that starts every registered actor kind
through a backend (``supervisor``), ``legion up`` as a process (``run``), control from outside
(``control``: detach, down, ps), run files (``state``) and logs (``logs``). It reaches actor kinds
only through :mod:`legion.runtime.kinds`; it never imports an actor package."""

from __future__ import annotations

from legion.runtime.fleet.control import DownResult, LauncherFailed, PsRow, detach, down, ps_rows, ps_status
from legion.runtime.fleet.logs import follow, log_files, tail_lines
from legion.runtime.fleet.nats import FleetHealth, FleetNats
from legion.runtime.fleet.run import (
    AlreadyRunning,
    Running,
    StaleCleanup,
    UpSpec,
    clean_stale,
    find_running,
    run_up,
    summary,
)
from legion.runtime.fleet.supervisor import Launcher, SupervisorSpec

__all__ = [
    "AlreadyRunning",
    "DownResult",
    "FleetHealth",
    "FleetNats",
    "Launcher",
    "LauncherFailed",
    "PsRow",
    "Running",
    "StaleCleanup",
    "SupervisorSpec",
    "UpSpec",
    "clean_stale",
    "detach",
    "down",
    "find_running",
    "follow",
    "log_files",
    "ps_rows",
    "ps_status",
    "run_up",
    "summary",
    "tail_lines",
]
