"""Typed clients of the trusted services, for every caller that needs them: actors (the vault asks
the ledger), the operator console and the gateway to come. They live in the runtime layer because
actor packages never import each other; the services themselves live in ``legion/actors/<kind>/``."""

from __future__ import annotations

from legion.runtime.clients.ledger import LEDGER_SERVICE, LedgerClient, LedgerUnavailable
from legion.runtime.clients.scheduler import (
    DECLARED_BY,
    SCHEDULER_SERVICE,
    ScheduleAdmin,
    SchedulerClient,
    SyncReport,
    sync_declared,
)

__all__ = [
    "DECLARED_BY",
    "LEDGER_SERVICE",
    "SCHEDULER_SERVICE",
    "LedgerClient",
    "LedgerUnavailable",
    "ScheduleAdmin",
    "SchedulerClient",
    "SyncReport",
    "sync_declared",
]
