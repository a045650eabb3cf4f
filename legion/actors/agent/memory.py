"""Long-term memory of one agent: short facts in SQLite, found again by full-text search (FTS5).

One file per agent, one connection, WAL mode. Text is stored after :func:`strip_invisible`, so a
fact cannot smuggle hidden instructions into a later prompt. Saving the same text twice stores it
once: the second save bumps the existing row (``save_count``, ``last_access``, merged tags).

Ranking. A search first asks FTS5 for the best ``CANDIDATES`` rows by ``bm25()`` and then orders
them by::

    score = relevance * (1 + RECENCY_WEIGHT * 0.5 ** (age / HALF_LIFE))
                      * (1 + ACCESS_WEIGHT * ln(1 + access_count))

    relevance = max(-bm25, 1e-9)            # FTS5's bm25 is <= 0, more negative is better
    age       = now - max(created, last_access)   (seconds, never negative)

so relevance dominates, a fact used or saved recently counts up to ``1 + RECENCY_WEIGHT`` times as
much as an old one, and a fact that keeps being found climbs slowly (logarithmically). Ties go to
the more recent, then the older id. Every hit returned gets ``access_count + 1`` and
``last_access = now``; the hits returned carry those updated values.

Queries come from a model and are never passed to FTS5 as syntax: every word (``\\w+``) becomes
a quoted phrase and the phrases are OR-ed, so ``"``, ``AND(``, ``*``, ``NEAR`` or ``col:`` are
just words, and a query with no words returns ``[]``.
"""

from __future__ import annotations

import asyncio
import json
import math
import re
import sqlite3
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Final

import aiosqlite

from legion.actors.agent.sanitize import strip_invisible

__all__ = ["ACCESS_WEIGHT", "HALF_LIFE", "RECENCY_WEIGHT", "MemoryHit", "MemoryStore", "fts_query"]

HALF_LIFE: Final = 7 * 24 * 3600.0
"""Seconds after which the recency bonus of a fact halves."""
RECENCY_WEIGHT: Final = 1.0
ACCESS_WEIGHT: Final = 0.5
CANDIDATES: Final = 50
"""Rows taken from FTS5 (by bm25) before re-ranking; at least ``limit``."""
MAX_QUERY_TOKENS: Final = 32
MAX_LIMIT: Final = 100

_WORD = re.compile(r"\w+")

_SCHEMA: Final = """
CREATE TABLE IF NOT EXISTS memories (
    id INTEGER PRIMARY KEY,
    text TEXT NOT NULL UNIQUE,
    tags TEXT NOT NULL DEFAULT '[]',
    source TEXT NOT NULL DEFAULT '',
    created REAL NOT NULL,
    last_access REAL NOT NULL,
    access_count INTEGER NOT NULL DEFAULT 0,
    save_count INTEGER NOT NULL DEFAULT 1
);
CREATE VIRTUAL TABLE IF NOT EXISTS memories_fts
    USING fts5(text, tags, tokenize = 'unicode61 remove_diacritics 2');
"""
_BY_TEXT: Final = (
    "SELECT m.id, m.text, m.tags, m.source, m.created, m.last_access, m.access_count, m.save_count "
    "FROM memories m WHERE m.text = ?"
)
_BY_ID: Final = (
    "SELECT m.id, m.text, m.tags, m.source, m.created, m.last_access, m.access_count, m.save_count "
    "FROM memories m WHERE m.id = ?"
)
_RECENT: Final = (
    "SELECT m.id, m.text, m.tags, m.source, m.created, m.last_access, m.access_count, m.save_count "
    "FROM memories m ORDER BY m.created DESC, m.id DESC LIMIT ?"
)
_MATCH: Final = (
    "SELECT m.id, m.text, m.tags, m.source, m.created, m.last_access, m.access_count, m.save_count, bm25(memories_fts) "
    "FROM memories_fts f JOIN memories m ON m.id = f.rowid "
    "WHERE memories_fts MATCH ? ORDER BY bm25(memories_fts) LIMIT ?"
)


@dataclass(frozen=True, slots=True)
class MemoryHit:
    """One stored fact. ``score`` is the ranking score of a search hit (0.0 elsewhere)."""

    id: int
    text: str
    tags: tuple[str, ...]
    source: str
    created: float
    last_access: float
    access_count: int
    save_count: int
    score: float = 0.0


def fts_query(text: str) -> str:
    """A safe FTS5 query for free text: each word quoted, OR-ed; ``""`` when there are no words."""
    tokens = list(dict.fromkeys(_WORD.findall(strip_invisible(text).lower())))[:MAX_QUERY_TOKENS]
    return " OR ".join('"' + t.replace('"', '""') + '"' for t in tokens)


def score(relevance: float, age: float, access_count: int) -> float:
    """The ranking formula of the module docstring."""
    recency = 1.0 + RECENCY_WEIGHT * math.pow(0.5, max(age, 0.0) / HALF_LIFE)
    usage = 1.0 + ACCESS_WEIGHT * math.log1p(max(access_count, 0))
    return max(relevance, 1e-9) * recency * usage


class MemoryStore:
    """Facts of one agent in one SQLite file. Open with :meth:`open`; :meth:`close` is safe twice."""

    def __init__(self, db: aiosqlite.Connection, *, clock: Callable[[], float]) -> None:
        self._db: aiosqlite.Connection | None = db
        self._clock = clock
        self._lock = asyncio.Lock()

    @classmethod
    async def open(cls, path: str | Path, *, clock: Callable[[], float] = time.time) -> MemoryStore:
        """Open (creating if needed) the store at ``path``; its parent directory must exist."""
        db = await aiosqlite.connect(str(path))
        try:
            await db.execute("PRAGMA journal_mode=WAL")
            await db.execute("PRAGMA synchronous=NORMAL")
            await db.execute("PRAGMA busy_timeout=5000")
            await db.executescript(_SCHEMA)
            await db.commit()
        except BaseException:
            await db.close()
            raise
        return cls(db, clock=clock)

    async def close(self) -> None:
        db, self._db = self._db, None
        if db is not None:
            await db.close()

    def _conn(self) -> aiosqlite.Connection:
        if self._db is None:
            raise RuntimeError("MemoryStore is closed; open it again with MemoryStore.open(path)")
        return self._db

    async def save(self, text: str, *, tags: Iterable[str] = (), source: str = "") -> MemoryHit:
        """Store ``text`` (stripped); if the same text is stored, bump it instead and return it.

        A bump adds 1 to ``save_count``, sets ``last_access`` to now and adds new ``tags``.
        Raises :class:`ValueError` if nothing is left of ``text`` after stripping.
        """
        clean = strip_invisible(text).strip()
        if not clean:
            raise ValueError("memory text is empty after removing whitespace and invisible characters")
        new_tags = _clean_tags(tags)
        now = self._clock()
        db = self._conn()
        async with self._lock:
            try:
                row = await _fetch_one(db, _BY_TEXT, (clean,))
                if row is None:
                    cur = await db.execute(
                        "INSERT INTO memories (text, tags, source, created, last_access) VALUES (?, ?, ?, ?, ?)",
                        (clean, json.dumps(new_tags), strip_invisible(source), now, now),
                    )
                    rowid = cur.lastrowid
                    assert rowid is not None
                    await db.execute(
                        "INSERT INTO memories_fts (rowid, text, tags) VALUES (?, ?, ?)",
                        (rowid, clean, " ".join(new_tags)),
                    )
                else:
                    rowid = int(row[0])
                    merged = list(dict.fromkeys([*json.loads(row[2]), *new_tags]))
                    await db.execute(
                        "UPDATE memories SET tags = ?, last_access = ?, save_count = save_count + 1 WHERE id = ?",
                        (json.dumps(merged), now, rowid),
                    )
                    await db.execute("UPDATE memories_fts SET tags = ? WHERE rowid = ?", (" ".join(merged), rowid))
                await db.commit()
            except BaseException:
                await db.rollback()
                raise
            saved = await _fetch_one(db, _BY_ID, (rowid,))
        assert saved is not None
        return _hit(saved)

    async def search(self, query: str, *, limit: int = 5) -> list[MemoryHit]:
        """The best ``limit`` facts for free-text ``query``, ranked as the module docstring says."""
        match = fts_query(query)
        limit = max(0, min(limit, MAX_LIMIT))
        if not match or limit == 0:
            return []
        db = self._conn()
        now = self._clock()
        async with self._lock:
            rows = await _fetch_all(
                db,
                _MATCH,
                (match, max(CANDIDATES, limit)),
            )
            found = [_hit(r, score=score(-float(r[8]), now - max(r[4], r[5]), r[6])) for r in rows]
            found.sort(key=lambda h: (-h.score, -max(h.created, h.last_access), h.id))
            hits = [replace(h, last_access=now, access_count=h.access_count + 1) for h in found[:limit]]
            if hits:
                try:
                    await db.executemany(
                        "UPDATE memories SET access_count = access_count + 1, last_access = ? WHERE id = ?",
                        [(now, h.id) for h in hits],
                    )
                    await db.commit()
                except BaseException:
                    await db.rollback()
                    raise
        return hits

    async def recent(self, limit: int = 10) -> list[MemoryHit]:
        """The ``limit`` most recently saved facts, newest first (does not count as an access)."""
        rows = await _fetch_all(
            self._conn(),
            _RECENT,
            (max(0, min(limit, MAX_LIMIT)),),
        )
        return [_hit(r) for r in rows]

    async def count(self) -> int:
        row = await _fetch_one(self._conn(), "SELECT count(*) FROM memories", ())
        return int(row[0]) if row else 0


def _clean_tags(tags: Iterable[str]) -> list[str]:
    out = (" ".join(strip_invisible(t).split()) for t in tags)
    return list(dict.fromkeys(t for t in out if t))


def _hit(row: sqlite3.Row, *, score: float = 0.0) -> MemoryHit:
    return MemoryHit(
        id=int(row[0]),
        text=str(row[1]),
        tags=tuple(json.loads(row[2])),
        source=str(row[3]),
        created=float(row[4]),
        last_access=float(row[5]),
        access_count=int(row[6]),
        save_count=int(row[7]),
        score=score,
    )


async def _fetch_one(db: aiosqlite.Connection, sql: str, args: tuple[object, ...]) -> sqlite3.Row | None:
    async with db.execute(sql, args) as cur:
        return await cur.fetchone()


async def _fetch_all(db: aiosqlite.Connection, sql: str, args: tuple[object, ...]) -> list[sqlite3.Row]:
    async with db.execute(sql, args) as cur:
        return list(await cur.fetchall())
