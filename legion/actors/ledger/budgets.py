"""Budgets in USD per agent and per project, daily (UTC day) and monthly (UTC month).

A name with no budget (or an unknown name) is unlimited. Built once from legion.yaml: the ledger
never re-reads configuration on the request path.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Literal

from legion.runtime.config import Budget, FleetConfig

__all__ = ["PERIODS", "SCOPES", "Budgets", "Limits", "Period", "Scope"]

Scope = Literal["agent", "project"]
Period = Literal["day", "month"]
SCOPES: tuple[Scope, ...] = ("agent", "project")
PERIODS: tuple[Period, ...] = ("day", "month")


@dataclass(frozen=True, slots=True)
class Limits:
    """The daily and monthly limits of one agent or project; None means no limit."""

    daily_usd: Decimal | None = None
    monthly_usd: Decimal | None = None

    def of(self, period: Period) -> Decimal | None:
        return self.daily_usd if period == "day" else self.monthly_usd

    def items(self) -> Iterator[tuple[Period, Decimal]]:
        """The (period, limit) pairs that are set."""
        if self.daily_usd is not None:
            yield "day", self.daily_usd
        if self.monthly_usd is not None:
            yield "month", self.monthly_usd

    @classmethod
    def from_budget(cls, budget: Budget) -> Limits:
        return cls(daily_usd=budget.daily_usd, monthly_usd=budget.monthly_usd)


_NONE = Limits()


@dataclass(frozen=True, slots=True)
class Budgets:
    """Limits by (scope, name). ``Budgets.from_config(config)``."""

    agents: Mapping[str, Limits] = field(default_factory=dict)
    projects: Mapping[str, Limits] = field(default_factory=dict)

    def of(self, scope: Scope, name: str) -> Limits:
        table = self.agents if scope == "agent" else self.projects
        return table.get(name, _NONE)

    @classmethod
    def from_config(cls, config: FleetConfig) -> Budgets:
        agents = {name: Limits.from_budget(a.budget) for name, a in config.agents.items()}
        projects = {name: Limits.from_budget(p.budget) for name, p in config.projects.items()}
        return cls(
            agents={k: v for k, v in agents.items() if v != _NONE},
            projects={k: v for k, v in projects.items() if v != _NONE},
        )
