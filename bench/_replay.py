"""Section 4 of the broker benchmark: replay a stream of UsageRecorded events into an SQLite projection.

The projection is what the ledger keeps (DESIGN.md section 4): per-event rows, per (agent, model)
totals with exact Decimal costs, and the last applied stream sequence, written in one transaction per
batch, so that a replay can stop anywhere and resume with an exactly-once effect.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import aiosqlite
from _sections import Env, Msg, connect, drive_pull_consumer, publish_window, rotate

from legion.broker import LEDGER, ConsumerSpec, ConsumeSpec, Delivery, FleetLayout, new_id, provision
from legion.contracts import UsageRecorded, encode
from legion.contracts import headers as h
from legion.contracts import subjects as subj

REPLAY_SQLITE = "PullConsumer + decode + SQLite"
REPLAY_DECODE = "PullConsumer + decode only"
REPLAY_VARIANTS = (REPLAY_SQLITE, REPLAY_DECODE)


@dataclass(frozen=True, slots=True)
class ReplayData:
    first_seq: int
    last_seq: int
    events: int
    total_cost: Decimal
    fill_per_s: float


_AGENTS = tuple(f"agent-{i}" for i in range(8))
_MODELS = ("fast", "smart", "cheap")


def _usage_events(n: int) -> tuple[Iterable[Msg], Callable[[], Decimal]]:
    total = Decimal(0)

    def gen() -> Iterable[Msg]:
        nonlocal total
        for i in range(n):
            agent = _AGENTS[i % len(_AGENTS)]
            cost = Decimal(i % 997 + 1) / 1_000_000
            total += cost
            ev = UsageRecorded(
                agent=agent, model=_MODELS[i % 3], cost_usd=cost, prompt_tokens=i % 4000, completion_tokens=i % 300
            )
            data, hdrs = encode(ev)
            yield subj.LEDGER.render(agent=agent, op="usage"), data, {**hdrs, h.MSG_ID: f"u{i}"}

    return gen(), lambda: total


async def replay_fill(env: Env) -> ReplayData:
    """Append ``replay_events`` UsageRecorded events to LEDGER (admin, windowed PubAcks)."""
    s = env.sizes
    async with await connect(env.legion_url, env.admin_creds, "bench-replay-fill") as admin:
        before = (await admin.js.stream_info(LEDGER)).state.last_seq
        msgs, total = _usage_events(s.replay_events)
        t0 = time.perf_counter()
        n = await publish_window(admin, msgs, window=s.window, timeout=s.timeout_s * 3)
        fill = n / (time.perf_counter() - t0)
        state = (await admin.js.stream_info(LEDGER)).state
    if state.last_seq - before != n:
        raise RuntimeError(f"LEDGER grew by {state.last_seq - before}, expected {n}")
    return ReplayData(first_seq=before + 1, last_seq=state.last_seq, events=n, total_cost=total(), fill_per_s=fill)


class UsageProjection:
    """Per-event rows plus per (agent, model) totals, and the last applied stream sequence, written in
    one transaction per batch. Totals are folded in memory with exact Decimals and written through."""

    SCHEMA = """
        CREATE TABLE IF NOT EXISTS usage (
            seq INTEGER PRIMARY KEY, agent TEXT NOT NULL, model TEXT NOT NULL, cost_usd TEXT NOT NULL,
            prompt_tokens INTEGER NOT NULL, completion_tokens INTEGER NOT NULL);
        CREATE TABLE IF NOT EXISTS usage_totals (
            agent TEXT NOT NULL, model TEXT NOT NULL, calls INTEGER NOT NULL, cost_usd TEXT NOT NULL,
            prompt_tokens INTEGER NOT NULL, completion_tokens INTEGER NOT NULL, PRIMARY KEY (agent, model));
        CREATE TABLE IF NOT EXISTS projection_state (name TEXT PRIMARY KEY, last_seq INTEGER NOT NULL);
    """

    def __init__(self, db: aiosqlite.Connection) -> None:
        self.db = db
        self.last_seq = 0
        self.totals: dict[tuple[str, str], list[Any]] = {}  # calls, cost, prompt, completion
        self._rows: list[tuple[Any, ...]] = []
        self._dirty: set[tuple[str, str]] = set()

    @classmethod
    async def open(cls, path: Path) -> UsageProjection:
        db = await aiosqlite.connect(path, isolation_level=None)  # explicit BEGIN/COMMIT below
        await db.execute("PRAGMA journal_mode=WAL")
        await db.execute("PRAGMA synchronous=NORMAL")
        await db.executescript(cls.SCHEMA)
        self = cls(db)
        async with db.execute("SELECT last_seq FROM projection_state WHERE name = 'usage'") as cur:
            row = await cur.fetchone()
        self.last_seq = int(row[0]) if row else 0
        return self

    @property
    def pending(self) -> int:
        return len(self._rows)

    def apply(self, seq: int, ev: UsageRecorded) -> None:
        if seq <= self.last_seq:  # already applied: exactly-once effect
            return
        key = (ev.agent, ev.model)
        t = self.totals.get(key)
        if t is None:
            t = self.totals[key] = [0, Decimal(0), 0, 0]
        t[0] += 1
        t[1] += ev.cost_usd
        t[2] += ev.prompt_tokens
        t[3] += ev.completion_tokens
        self._dirty.add(key)
        self._rows.append((seq, ev.agent, ev.model, str(ev.cost_usd), ev.prompt_tokens, ev.completion_tokens))
        self.last_seq = seq

    async def commit(self) -> None:
        if not self._rows:
            return
        totals = [(a, m, t[0], str(t[1]), t[2], t[3]) for (a, m) in self._dirty for t in (self.totals[(a, m)],)]
        db = self.db
        await db.execute("BEGIN")
        try:
            await db.executemany("INSERT OR IGNORE INTO usage VALUES (?, ?, ?, ?, ?, ?)", self._rows)
            await db.executemany(
                "INSERT INTO usage_totals VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (agent, model) DO UPDATE SET "
                "calls = excluded.calls, cost_usd = excluded.cost_usd, "
                "prompt_tokens = excluded.prompt_tokens, completion_tokens = excluded.completion_tokens",
                totals,
            )
            await db.execute(
                "INSERT INTO projection_state VALUES ('usage', ?) "
                "ON CONFLICT (name) DO UPDATE SET last_seq = excluded.last_seq",
                (self.last_seq,),
            )
            await db.execute("COMMIT")
        except BaseException:
            await db.execute("ROLLBACK")
            raise
        self._rows.clear()
        self._dirty.clear()

    async def check(self, data: ReplayData) -> None:
        """The projection must hold every event exactly once and the exact total cost."""
        async with self.db.execute("SELECT COUNT(*) FROM usage") as cur:
            row = await cur.fetchone()
        async with self.db.execute("SELECT cost_usd FROM usage_totals") as cur:
            cost = sum((Decimal(r[0]) for r in await cur.fetchall()), Decimal(0))
        async with self.db.execute("SELECT last_seq FROM projection_state") as cur:
            last = await cur.fetchone()
        got = (row[0] if row else 0, cost, last[0] if last else 0)
        want = (data.events, data.total_cost, data.last_seq)
        if got != want:
            raise RuntimeError(f"projection (events, cost, last_seq) is {got}, expected {want}")

    async def close(self) -> None:
        await self.db.close()


async def replay_round(env: Env, data: ReplayData, rep: int, progress: Callable[[str], None]) -> dict[str, float]:
    """Replay LEDGER from ``data.first_seq`` with each variant on a fresh admin-made durable: events/s."""
    s = env.sizes
    out: dict[str, float] = {}
    async with await connect(env.legion_url, env.admin_creds, "bench-replay") as admin:
        for variant in rotate(REPLAY_VARIANTS, rep):
            name = f"replay_{new_id()[:10]}"
            consumer = ConsumerSpec(stream=LEDGER, durable=name, filter_subject=subj.LEDGER_ALL)
            await provision(admin, FleetLayout(streams=(), consumers=(consumer,)))
            db_path = env.work_dir / f"{name}.sqlite"
            projection = await UsageProjection.open(db_path) if variant == REPLAY_SQLITE else None
            try:
                handle = _replay_handler(projection, data, s.batch)
                spec = ConsumeSpec(stream=LEDGER, durable=name, batch=s.batch, expires_s=1.0)
                elapsed = await drive_pull_consumer(admin, spec, handle, producer=None, timeout=s.timeout_s)
                if projection is not None:
                    await projection.check(data)
            finally:
                if projection is not None:
                    await projection.close()
                for p in db_path.parent.glob(db_path.name + "*"):
                    p.unlink(missing_ok=True)
                with contextlib.suppress(Exception):
                    await admin.js.delete_consumer(LEDGER, name)
            out[variant] = data.events / elapsed
            progress(f"{variant}: {out[variant]:,.0f} events/s")
    return out


def _replay_handler(
    projection: UsageProjection | None, data: ReplayData, batch: int
) -> Callable[[Delivery], Awaitable[bool]]:
    seen = 0

    async def handle(delivery: Delivery) -> bool:
        nonlocal seen
        ev = delivery.message
        if delivery.stream_seq < data.first_seq:  # older than this benchmark's events
            return False
        if not isinstance(ev, UsageRecorded):
            raise TypeError(f"unexpected {type(ev).__name__} at seq {delivery.stream_seq}")
        seen += 1
        last = delivery.stream_seq >= data.last_seq
        if projection is not None:
            projection.apply(delivery.stream_seq, ev)
            if last or projection.pending >= batch:
                await projection.commit()
        if last and seen != data.events:
            raise RuntimeError(f"replay saw {seen} events, expected {data.events}")
        return last

    return handle
