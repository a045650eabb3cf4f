"""Plain data of the ledger's state: keys, reservations, usage rows, alerts, decisions, change sets."""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal
from typing import Final, Literal

from legion.actors.ledger.budgets import Period, Scope
from legion.actors.ledger.wire import alert_msg_id
from legion.contracts.ledger import BudgetExceeded

__all__ = [
    "LEVELS",
    "ZERO",
    "Alert",
    "AlertKey",
    "Changes",
    "CostKey",
    "CostTotals",
    "Decision",
    "HoldKey",
    "Level",
    "Reservation",
    "Snapshot",
    "TotalKey",
    "UsageRow",
]

ZERO: Final = Decimal(0)
Level = Literal["warning", "blocked"]
LEVELS: Final[tuple[tuple[Level, Decimal], ...]] = (("warning", Decimal("0.8")), ("blocked", Decimal(1)))

TotalKey = tuple[Scope, str, Period, str]
"""(scope, name, period, period key), e.g. ("agent", "alpha", "day", "2025-01-31")."""
HoldKey = tuple[Scope, str]
CostKey = tuple[str, str, str, str]
"""(day, agent, project, model)."""
AlertKey = tuple[Scope, str, Period, str, Level]


@dataclass(frozen=True, slots=True)
class Reservation:
    reservation_id: str
    agent: str
    project: str
    estimate_usd: Decimal
    start_ns: int
    expires_ns: int
    seq: int


@dataclass(slots=True)
class CostTotals:
    cost_usd: Decimal = ZERO
    calls: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0

    def copy(self) -> CostTotals:
        return CostTotals(self.cost_usd, self.calls, self.prompt_tokens, self.completion_tokens)


@dataclass(frozen=True, slots=True)
class UsageRow:
    seq: int
    ts_ns: int
    day: str
    reservation_id: str
    agent: str
    project: str
    model: str
    cost_usd: Decimal
    prompt_tokens: int
    completion_tokens: int


@dataclass(frozen=True, slots=True)
class Alert:
    """A budget threshold reached; ``agent`` is the subject token its LEDGER record goes under."""

    scope: Scope
    name: str
    period: Period
    key: str
    level: Level
    limit_usd: Decimal
    spent_usd: Decimal
    agent: str

    @property
    def ident(self) -> AlertKey:
        return (self.scope, self.name, self.period, self.key, self.level)

    @property
    def msg_id(self) -> str:
        return alert_msg_id(self.scope, self.name, self.period, self.key, self.level)

    def event(self) -> BudgetExceeded:
        return BudgetExceeded(
            scope=self.scope,
            name=self.name,
            period=self.period,
            limit_usd=self.limit_usd,
            spent_usd=self.spent_usd,
            level=self.level,
        )


@dataclass(frozen=True, slots=True)
class Decision:
    granted: bool
    reason: str = ""
    remaining_usd: Decimal | None = None
    duplicate: bool = False


@dataclass(slots=True)
class Changes:
    """What changed since the last :meth:`LedgerState.take_changes`, with values as of ``last_seq``."""

    last_seq: int
    last_ts_ns: int
    totals: dict[TotalKey, Decimal] = field(default_factory=dict)
    reservations_put: dict[str, Reservation] = field(default_factory=dict)
    reservations_deleted: set[str] = field(default_factory=set)
    usage: list[UsageRow] = field(default_factory=list)
    costs: dict[CostKey, CostTotals] = field(default_factory=dict)
    alerts: dict[AlertKey, tuple[Alert, bool]] = field(default_factory=dict)
    """Alert and whether it is recorded (True) or still pending (False)."""

    def __len__(self) -> int:
        return (
            len(self.totals)
            + len(self.reservations_put)
            + len(self.reservations_deleted)
            + len(self.usage)
            + len(self.costs)
            + len(self.alerts)
        )


@dataclass(slots=True)
class Snapshot:
    """Everything the fold needs to resume at ``last_seq``: what the store saves and loads.

    Two snapshots compare equal when their states are identical (a rebuilt projection must be).
    """

    last_seq: int = 0
    last_ts_ns: int = 0
    totals: dict[TotalKey, Decimal] = field(default_factory=dict)
    reservations: dict[str, Reservation] = field(default_factory=dict)
    costs: dict[CostKey, CostTotals] = field(default_factory=dict)
    alerts: dict[AlertKey, tuple[Alert, bool]] = field(default_factory=dict)
    commits: dict[str, int] = field(default_factory=dict)
    """Reservation ids committed within the de-duplication horizon, with their timestamps."""
