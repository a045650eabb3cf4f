"""The SQLite projection: batches written with their sequence load back as the same state; costs queries."""

from __future__ import annotations

import random
from decimal import Decimal
from pathlib import Path

import pytest
from ledger_fold import BUDGETS, Folder, commit, random_history, ts

from legion.actors.ledger import LedgerState, LedgerStore
from legion.contracts import ConfigError, CostsQuery


async def test_batches_written_with_their_sequence_load_back_as_the_same_state(tmp_path: Path) -> None:
    history = random_history(4000, seed=11)
    folder = Folder(BUDGETS)
    store = await LedgerStore.open(tmp_path / "ledger.db")
    rng = random.Random(3)
    for event, at in history:
        folder.add(event, at)
        if rng.random() < 0.05:  # batches of random sizes, like the flusher makes
            await store.write(folder.state.take_changes())
    await store.write(folder.state.take_changes())
    loaded = await store.load()
    assert loaded == folder.state.snapshot()
    assert loaded.last_seq == 4000
    resumed = LedgerState(BUDGETS, loaded)
    assert resumed.snapshot() == folder.state.snapshot()
    await store.close()


async def test_a_crash_between_batches_leaves_the_file_at_an_exact_sequence(tmp_path: Path) -> None:
    folder = Folder(BUDGETS)
    store = await LedgerStore.open(tmp_path / "ledger.db")
    folder.add(commit("c1", "0.10"), ts("2025-01-15T10:00:00"))
    await store.write(folder.state.take_changes())
    folder.add(commit("c2", "0.20"), ts("2025-01-15T11:00:00"))  # applied, never written
    await store.close()
    reopened = await LedgerStore.open(tmp_path / "ledger.db")
    snap = await reopened.load()
    assert snap.last_seq == 1
    assert snap.totals[("agent", "a", "day", "2025-01-15")] == Decimal("0.10")
    await reopened.close()


async def test_costs_by_day_and_month_per_agent_project_and_model(tmp_path: Path) -> None:
    folder = Folder(BUDGETS)
    folder.add(commit("c1", "0.10", agent="a", project="p", model="x"), ts("2025-01-31T10:00:00"))
    folder.add(commit("c2", "0.20", agent="a", project="p", model="x"), ts("2025-01-31T11:00:00"))
    folder.add(commit("c3", "0.30", agent="a", project="p", model="y"), ts("2025-02-01T00:00:00"))
    folder.add(commit("c4", "0.40", agent="b", project="", model="x"), ts("2025-02-02T00:00:00"))
    store = await LedgerStore.open(tmp_path / "ledger.db")
    await store.write(folder.state.take_changes())

    by_day = await store.costs(CostsQuery(agent="a", by="day"))
    assert [(r.period, r.model, r.cost_usd, r.calls) for r in by_day.rows] == [
        ("2025-01-31", "x", Decimal("0.30"), 2),
        ("2025-02-01", "y", Decimal("0.30"), 1),
    ]
    assert by_day.total_usd == Decimal("0.60")
    by_month = await store.costs(CostsQuery(by="month"))
    assert [(r.period, r.agent, r.model, r.cost_usd) for r in by_month.rows] == [
        ("2025-01", "a", "x", Decimal("0.30")),
        ("2025-02", "a", "y", Decimal("0.30")),
        ("2025-02", "b", "x", Decimal("0.40")),
    ]
    assert by_month.rows[0].prompt_tokens == 0 and by_month.total_usd == Decimal("1.00")
    february = await store.costs(CostsQuery(since="2025-02", until="2025-02-01", project="p"))
    assert [r.cost_usd for r in february.rows] == [Decimal("0.30")]
    with pytest.raises(ConfigError, match="YYYY-MM-DD"):
        await store.costs(CostsQuery(since="yesterday"))
    await store.close()
