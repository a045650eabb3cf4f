"""An agent's own budget, as the vault answers it on ``legion.vault.<agent>.budget``.

Agents cannot reach the ledger (it is a LEGION service); the vault can, and already knows who is
calling. The limits come from legion.yaml, the spend from the ledger's costs query (UTC day and month).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal

from legion.broker import Broker
from legion.contracts.ledger import CostsQuery
from legion.contracts.vault import BudgetStatus
from legion.runtime.clients import LedgerClient
from legion.runtime.config import FleetConfig

__all__ = ["BudgetReader"]


@dataclass(frozen=True, slots=True)
class BudgetReader:
    config: FleetConfig
    ledger_service: str
    timeout_s: float = 2.0

    async def status(self, broker: Broker, agent: str, *, now: datetime | None = None) -> BudgetStatus:
        """Raises LedgerUnavailable (a LegionError) when the ledger does not answer."""
        now = now or datetime.now(UTC)
        month = await self._spent(broker, agent, "month", now.strftime("%Y-%m-01"))
        today = await self._spent(broker, agent, "day", now.strftime("%Y-%m-%d"))
        budget = self.config.agents[agent].budget if agent in self.config.agents else None
        daily = budget.daily_usd if budget else None
        monthly = budget.monthly_usd if budget else None
        return BudgetStatus(
            agent=agent,
            daily_usd=daily,
            monthly_usd=monthly,
            spent_today_usd=today,
            spent_month_usd=month,
            left_today_usd=max(Decimal(0), daily - today) if daily is not None else None,
            left_month_usd=max(Decimal(0), monthly - month) if monthly is not None else None,
        )

    async def _spent(self, broker: Broker, agent: str, by: str, since: str) -> Decimal:
        query = CostsQuery(agent=agent, by="day" if by == "day" else "month", since=since)
        report = await LedgerClient(broker, service=self.ledger_service, timeout_s=self.timeout_s).costs(query)
        return sum((row.cost_usd for row in report.rows), Decimal(0))
