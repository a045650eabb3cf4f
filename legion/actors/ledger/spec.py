"""How a ledger is configured (:class:`LedgerSpec`) and how its start-up replay went (:class:`ReplayStats`)."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from legion.actors.ledger.budgets import Budgets
from legion.broker import LEDGER

__all__ = ["LedgerSpec", "ReplayStats"]


@dataclass(frozen=True, slots=True)
class LedgerSpec:
    db_path: Path
    budgets: Budgets = field(default_factory=Budgets)
    stream: str = LEDGER
    sweep_s: float = 1.0
    """How often open reservations are checked for expiry and pending alerts are raised."""
    wait_s: float = 10.0
    """How long an append may take to come back through the feed."""
    catch_up_s: float = 900.0
    heartbeat_s: float = 2.0
    max_conflicts: int = 64
    clock: Callable[[], int] = time.time_ns
    """Wall clock in ns since the epoch: decides the current period and what has expired."""


@dataclass(frozen=True, slots=True)
class ReplayStats:
    """How the start-up catch-up went: events applied from the stream and the time it took."""

    from_seq: int
    to_seq: int
    seconds: float

    @property
    def events(self) -> int:
        return self.to_seq - self.from_seq

    @property
    def rate(self) -> float:
        return self.events / self.seconds if self.seconds > 0 else 0.0
