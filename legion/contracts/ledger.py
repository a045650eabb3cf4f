"""Ledger contracts (stream LEDGER, ``legion.ledger.<agent>.<op>``). Money is exact: Decimal USD."""

from __future__ import annotations

from decimal import Decimal
from typing import Literal

import msgspec

from legion.contracts.base import Event, Reply, Request

__all__ = [
    "BudgetExceeded",
    "Commit",
    "CostRow",
    "CostsQuery",
    "CostsReport",
    "LedgerAck",
    "Release",
    "Reserve",
    "Reserved",
    "UsageRecorded",
]


class Reserve(Request, frozen=True, kw_only=True, tag="ledger.reserve.v1"):
    """Hold ``estimate_usd`` of budget before a model call; expires after ``ttl_s``."""

    reservation_id: str
    agent: str
    project: str = ""
    estimate_usd: Decimal
    ttl_s: float = 300.0


class Reserved(Reply, frozen=True, kw_only=True, tag="ledger.reserved.v1"):
    reservation_id: str
    granted: bool
    reason: str = ""
    remaining_usd: Decimal | None = None


class Commit(Event, frozen=True, kw_only=True, tag="ledger.commit.v1"):
    """Replace a reservation with the actual cost of the call."""

    reservation_id: str
    agent: str
    project: str = ""
    model: str = ""
    actual_usd: Decimal
    prompt_tokens: int = 0
    completion_tokens: int = 0


class Release(Event, frozen=True, kw_only=True, tag="ledger.release.v1"):
    """Free a reservation without spending (the call failed before any cost)."""

    reservation_id: str
    reason: str = ""


class UsageRecorded(Event, frozen=True, kw_only=True, tag="ledger.usage.v1"):
    agent: str
    project: str = ""
    model: str = ""
    cost_usd: Decimal
    prompt_tokens: int = 0
    completion_tokens: int = 0


class BudgetExceeded(Event, frozen=True, kw_only=True, tag="budget.exceeded.v1"):
    """At 80 % of a budget (``level='warning'``) and at 100 % (``level='blocked'``)."""

    scope: Literal["agent", "project"]
    name: str
    period: Literal["day", "month"]
    limit_usd: Decimal
    spent_usd: Decimal
    level: Literal["warning", "blocked"]


class LedgerAck(Reply, frozen=True, kw_only=True, tag="ledger.ack.v1"):
    """The ledger's answer to Commit and Release requests."""

    reservation_id: str
    ok: bool
    reason: str = ""


class CostsQuery(Request, frozen=True, kw_only=True, tag="costs.query.v1"):
    """Ask the ledger for spend, grouped by period; ``since``/``until`` are ISO dates (UTC)."""

    agent: str | None = None
    project: str | None = None
    by: Literal["day", "month"] = "day"
    since: str = ""
    until: str = ""


class CostRow(msgspec.Struct, frozen=True, kw_only=True):
    period: str
    agent: str
    project: str
    model: str
    cost_usd: Decimal
    calls: int
    prompt_tokens: int
    completion_tokens: int


class CostsReport(Reply, frozen=True, kw_only=True, tag="costs.report.v1"):
    rows: list[CostRow] = msgspec.field(default_factory=list)
    total_usd: Decimal = Decimal(0)
