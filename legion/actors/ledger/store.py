"""The ledger's SQLite projection (aiosqlite): totals, open reservations, usage rows, daily costs, alerts.

Each :meth:`LedgerStore.write` is one transaction holding a batch of changes *and* the stream
sequence they bring the projection to, so a crash leaves the file at some exact sequence and the
ledger resumes right after it. Money is stored as decimal TEXT and summed with Decimal, never as
floats. The file can be deleted at any time: the ledger rebuilds it from the stream.
"""

from __future__ import annotations

import contextlib
import re
import sqlite3
from decimal import Decimal
from pathlib import Path
from typing import Any, cast

import aiosqlite

from legion.actors.ledger.model import (
    Alert,
    Changes,
    CostKey,
    CostTotals,
    Reservation,
    Snapshot,
    TotalKey,
)
from legion.actors.ledger.state import COMMIT_DEDUPE_NS
from legion.contracts.errors import ConfigError
from legion.contracts.ledger import CostRow, CostsQuery, CostsReport

__all__ = ["SCHEMA_VERSION", "LedgerStore"]

SCHEMA_VERSION = "1"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS totals (
    scope TEXT NOT NULL, name TEXT NOT NULL, period TEXT NOT NULL, key TEXT NOT NULL,
    spent_usd TEXT NOT NULL,
    PRIMARY KEY (scope, name, period, key)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS reservations (
    reservation_id TEXT PRIMARY KEY, agent TEXT NOT NULL, project TEXT NOT NULL,
    estimate_usd TEXT NOT NULL, start_ns INTEGER NOT NULL, expires_ns INTEGER NOT NULL, seq INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS usage (
    seq INTEGER PRIMARY KEY, ts_ns INTEGER NOT NULL, day TEXT NOT NULL, reservation_id TEXT NOT NULL,
    agent TEXT NOT NULL, project TEXT NOT NULL, model TEXT NOT NULL, cost_usd TEXT NOT NULL,
    prompt_tokens INTEGER NOT NULL, completion_tokens INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS usage_ts ON usage (ts_ns);
CREATE TABLE IF NOT EXISTS costs (
    day TEXT NOT NULL, agent TEXT NOT NULL, project TEXT NOT NULL, model TEXT NOT NULL,
    cost_usd TEXT NOT NULL, calls INTEGER NOT NULL, prompt_tokens INTEGER NOT NULL, completion_tokens INTEGER NOT NULL,
    PRIMARY KEY (day, agent, project, model)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS alerts (
    scope TEXT NOT NULL, name TEXT NOT NULL, period TEXT NOT NULL, key TEXT NOT NULL, level TEXT NOT NULL,
    recorded INTEGER NOT NULL, agent TEXT NOT NULL, limit_usd TEXT NOT NULL, spent_usd TEXT NOT NULL,
    PRIMARY KEY (scope, name, period, key, level)
) WITHOUT ROWID;
"""
_TABLES = ("meta", "totals", "reservations", "usage", "costs", "alerts")
_DATE = re.compile(r"\d{4}-\d{2}(-\d{2})?")


def _bound(value: str, *, field: str, upper: bool) -> str:
    if not value:
        return ""
    if _DATE.fullmatch(value) is None:
        raise ConfigError(f"{field} {value!r} is not a UTC date; give YYYY-MM-DD or YYYY-MM")
    if len(value) == 7:  # a month: from its first day, or up to its last
        return value + ("-31" if upper else "-01")
    return value


class LedgerStore:
    """``store = await LedgerStore.open(path)``; one writer (the ledger), any number of readers."""

    def __init__(self, db: aiosqlite.Connection, path: Path) -> None:
        self.db = db
        self.path = path

    @classmethod
    async def open(cls, path: Path) -> LedgerStore:
        path.parent.mkdir(parents=True, exist_ok=True)
        db = await aiosqlite.connect(path, isolation_level=None)  # explicit BEGIN/COMMIT below
        try:
            await db.execute("PRAGMA journal_mode=WAL")
            await db.execute("PRAGMA synchronous=NORMAL")
            await db.executescript(_SCHEMA)
            await db.execute("INSERT OR IGNORE INTO meta VALUES ('schema', ?)", (SCHEMA_VERSION,))
        except BaseException:
            await db.close()
            raise
        return cls(db, path)

    async def close(self) -> None:
        await self.db.close()

    async def _all(self, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        async with self.db.execute(sql, params) as cur:
            return [tuple(row) for row in await cur.fetchall()]

    # -- load and write -----------------------------------------------------------------------
    async def load(self) -> Snapshot:
        meta = dict(await self._all("SELECT key, value FROM meta"))
        snap = Snapshot(last_seq=int(meta.get("last_seq", 0)), last_ts_ns=int(meta.get("last_ts_ns", 0)))
        snap.totals = await self.totals()
        for rid, agent, project, est, start, expires, seq in await self._all("SELECT * FROM reservations"):
            snap.reservations[rid] = Reservation(
                reservation_id=rid,
                agent=agent,
                project=project,
                estimate_usd=Decimal(est),
                start_ns=start,
                expires_ns=expires,
                seq=seq,
            )
        for day, agent, project, model, cost, calls, pt, ct in await self._all("SELECT * FROM costs"):
            snap.costs[(day, agent, project, model)] = CostTotals(Decimal(cost), calls, pt, ct)
        for scope, name, period, key, level, recorded, agent, limit, spent in await self._all("SELECT * FROM alerts"):
            alert = Alert(
                scope=scope,
                name=name,
                period=period,
                key=key,
                level=level,
                limit_usd=Decimal(limit),
                spent_usd=Decimal(spent),
                agent=agent,
            )
            snap.alerts[alert.ident] = (alert, bool(recorded))
        horizon = snap.last_ts_ns - COMMIT_DEDUPE_NS
        rows = await self._all(
            "SELECT reservation_id, ts_ns FROM usage WHERE reservation_id != '' AND ts_ns >= ? ORDER BY seq", (horizon,)
        )
        snap.commits = {str(rid): int(ts) for rid, ts in rows}
        return snap

    async def write(self, changes: Changes) -> None:
        """Apply ``changes`` and record ``changes.last_seq``, in one transaction.

        A batch at or below the stored sequence was already written and is skipped, so retrying a
        batch whose COMMIT went through is harmless.
        """
        db = self.db
        await db.execute("BEGIN IMMEDIATE")
        try:
            rows = await self._all("SELECT value FROM meta WHERE key = 'last_seq'")
            if rows and int(rows[0][0]) >= changes.last_seq:
                await db.execute("COMMIT")
                return
            if changes.reservations_deleted:
                await db.executemany(
                    "DELETE FROM reservations WHERE reservation_id = ?", [(r,) for r in changes.reservations_deleted]
                )
            if changes.reservations_put:
                await db.executemany(
                    "INSERT OR REPLACE INTO reservations VALUES (?, ?, ?, ?, ?, ?, ?)",
                    [
                        (r.reservation_id, r.agent, r.project, str(r.estimate_usd), r.start_ns, r.expires_ns, r.seq)
                        for r in changes.reservations_put.values()
                    ],
                )
            if changes.totals:
                await db.executemany(
                    "INSERT OR REPLACE INTO totals VALUES (?, ?, ?, ?, ?)",
                    [(*k, str(v)) for k, v in changes.totals.items()],
                )
            if changes.usage:
                await db.executemany(
                    "INSERT INTO usage VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    [
                        (
                            u.seq,
                            u.ts_ns,
                            u.day,
                            u.reservation_id,
                            u.agent,
                            u.project,
                            u.model,
                            str(u.cost_usd),
                            u.prompt_tokens,
                            u.completion_tokens,
                        )
                        for u in changes.usage
                    ],
                )
            if changes.costs:
                await db.executemany(
                    "INSERT OR REPLACE INTO costs VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    [
                        (*k, str(c.cost_usd), c.calls, c.prompt_tokens, c.completion_tokens)
                        for k, c in changes.costs.items()
                    ],
                )
            if changes.alerts:
                await db.executemany(
                    "INSERT OR REPLACE INTO alerts VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    [
                        (*k, int(recorded), a.agent, str(a.limit_usd), str(a.spent_usd))
                        for k, (a, recorded) in changes.alerts.items()
                    ],
                )
            await db.executemany(
                "INSERT OR REPLACE INTO meta VALUES (?, ?)",
                [("last_seq", str(changes.last_seq)), ("last_ts_ns", str(changes.last_ts_ns))],
            )
            await db.execute("COMMIT")
        except BaseException:
            await self._rollback()
            raise

    async def _rollback(self) -> None:
        if self.db.in_transaction:
            with contextlib.suppress(sqlite3.Error):
                await self.db.execute("ROLLBACK")

    async def reset(self) -> None:
        """Forget everything (the stream was re-created): the next load starts from sequence 0."""
        await self.db.execute("BEGIN IMMEDIATE")
        try:
            for table in _TABLES:
                await self.db.execute(f"DELETE FROM {table}")  # noqa: S608 - table names are constants
            await self.db.execute("INSERT INTO meta VALUES ('schema', ?)", (SCHEMA_VERSION,))
            await self.db.execute("COMMIT")
        except BaseException:
            await self._rollback()
            raise

    # -- queries --------------------------------------------------------------------------------
    async def last_seq(self) -> int:
        rows = await self._all("SELECT value FROM meta WHERE key = 'last_seq'")
        return int(rows[0][0]) if rows else 0

    async def totals(self) -> dict[TotalKey, Decimal]:
        """Spend by (scope, name, period, period key), as stored."""
        rows = await self._all("SELECT scope, name, period, key, spent_usd FROM totals")
        return {cast(TotalKey, (s, n, p, k)): Decimal(v) for s, n, p, k, v in rows}

    async def costs(self, query: CostsQuery) -> CostsReport:
        """Spend grouped by (day or month, agent, project, model), filtered as asked; exact Decimal sums."""
        since = _bound(query.since, field="since", upper=False)
        until = _bound(query.until, field="until", upper=True)
        clauses: list[str] = []
        params: list[str] = []
        for column, value in (("agent", query.agent), ("project", query.project)):
            if value is not None:
                clauses.append(f"{column} = ?")
                params.append(value)
        if since:
            clauses.append("day >= ?")
            params.append(since)
        if until:
            clauses.append("day <= ?")
            params.append(until)
        where = f" WHERE {' AND '.join(clauses)}" if clauses else ""
        rows = await self._all(
            "SELECT day, agent, project, model, cost_usd, calls, prompt_tokens, completion_tokens FROM costs"  # noqa: S608 - fixed clauses, values are bound
            + where,
            tuple(params),
        )
        grouped: dict[CostKey, CostTotals] = {}
        for day, agent, project, model, cost, calls, pt, ct in rows:
            period = day if query.by == "day" else day[:7]
            agg = grouped.setdefault((period, agent, project, model), CostTotals())
            agg.cost_usd += Decimal(cost)
            agg.calls += calls
            agg.prompt_tokens += pt
            agg.completion_tokens += ct
        out = [
            CostRow(
                period=k[0],
                agent=k[1],
                project=k[2],
                model=k[3],
                cost_usd=v.cost_usd,
                calls=v.calls,
                prompt_tokens=v.prompt_tokens,
                completion_tokens=v.completion_tokens,
            )
            for k, v in sorted(grouped.items())
        ]
        return CostsReport(rows=out, total_usd=sum((r.cost_usd for r in out), Decimal(0)))
