"""Folding hand-made LEDGER histories into a LedgerState, with increasing sequences like the stream's."""

from __future__ import annotations

import random
from datetime import UTC, datetime
from decimal import Decimal

from legion.actors.ledger import Budgets, Entry, LedgerState, Limits
from legion.actors.ledger.wire import LedgerEvent
from legion.contracts import BudgetExceeded, Commit, Release, Reserve, UsageRecorded

NS = 1_000_000_000
D = Decimal


def ts(text: str) -> int:
    """Nanoseconds of an ISO UTC time, e.g. ``2025-01-31T23:59:59.999``."""
    return int(datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp() * 1_000_000) * 1000


class Folder:
    """Feeds events to a state with increasing sequences, like the stream would."""

    def __init__(self, budgets: Budgets, state: LedgerState | None = None) -> None:
        self.state = state or LedgerState(budgets)
        self.seq = self.state.last_seq

    def add(self, event: LedgerEvent | None, at: int, *, agent: str = "a", period_key: str = "") -> Entry:
        self.seq += 1
        entry = Entry(seq=self.seq, ts_ns=at, event=event, subject_agent=agent, period_key=period_key)
        self.state.apply(entry)
        return entry


def reserve(rid: str, usd: str, *, agent: str = "a", project: str = "", ttl_s: float = 300.0) -> Reserve:
    return Reserve(reservation_id=rid, agent=agent, project=project, estimate_usd=D(usd), ttl_s=ttl_s)


def commit(rid: str, usd: str, *, agent: str = "a", project: str = "", model: str = "m") -> Commit:
    return Commit(reservation_id=rid, agent=agent, project=project, model=model, actual_usd=D(usd))


BUDGETS = Budgets(
    agents={"a": Limits(daily_usd=D("1.00"), monthly_usd=D("3.00"))},
    projects={"p": Limits(daily_usd=D("1.50"))},
)
T0 = ts("2025-01-15T12:00:00")


def random_history(n: int, seed: int) -> list[tuple[LedgerEvent, int]]:
    rng = random.Random(seed)
    out: list[tuple[LedgerEvent, int]] = []
    open_ids: list[str] = []
    at = ts("2025-01-30T20:00:00")
    for i in range(n):
        at += rng.randrange(0, 600) * NS  # crosses a day and a month boundary
        agent, project = rng.choice(["a", "b"]), rng.choice(["", "p", "q"])
        roll = rng.random()
        if roll < 0.35 or not open_ids:
            rid = f"r{i}"
            open_ids.append(rid)
            out.append((reserve(rid, f"0.{rng.randrange(1, 99):02d}", agent=agent, project=project), at))
        elif roll < 0.7:
            rid = open_ids.pop(rng.randrange(len(open_ids)))
            out.append((commit(rid, f"0.{rng.randrange(0, 99):02d}", agent=agent, model=rng.choice("xy")), at))
        elif roll < 0.8:
            out.append((Release(reservation_id=open_ids.pop(rng.randrange(len(open_ids)))), at))
        elif roll < 0.9:
            out.append((UsageRecorded(agent=agent, project=project, cost_usd=D("0.01")), at))
        else:
            out.append(
                (
                    BudgetExceeded(
                        scope="agent", name=agent, period="day", limit_usd=D(1), spent_usd=D(1), level="warning"
                    ),
                    at,
                )
            )
    return out
