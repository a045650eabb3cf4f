"""The ledger's pure fold and decisions: budgets, reservations, periods, alerts, O(1) checks."""

from __future__ import annotations

import time
from decimal import Decimal

from ledger_fold import BUDGETS, NS, T0, Folder, commit, random_history, reserve, ts

from legion.actors.ledger import LedgerState
from legion.actors.ledger.model import Snapshot
from legion.actors.ledger.state import COMMIT_DEDUPE_NS
from legion.contracts import Release

D = Decimal


def test_reserve_is_granted_while_spent_plus_reserved_plus_estimate_fits() -> None:
    f = Folder(BUDGETS)
    ok = f.state.decide_reserve(reserve("r1", "0.60"), T0)
    assert ok.granted and ok.remaining_usd == D("0.40")
    f.add(reserve("r1", "0.60"), T0)
    assert f.state.held("agent", "a") == D("0.60")
    too_much = f.state.decide_reserve(reserve("r2", "0.41"), T0)
    assert not too_much.granted
    assert "agent 'a' day budget of 1.00 USD" in too_much.reason and too_much.remaining_usd == D("0.40")
    assert f.state.decide_reserve(reserve("r2", "0.40"), T0).granted, "an exact fit is granted"


def test_commit_replaces_the_reservation_and_release_frees_it() -> None:
    f = Folder(BUDGETS)
    f.add(reserve("r1", "0.60"), T0)
    f.add(reserve("r2", "0.30"), T0)
    f.add(commit("r1", "0.50"), T0 + NS)
    assert f.state.spent("agent", "a", "day", "2025-01-15") == D("0.50")
    assert f.state.held("agent", "a") == D("0.30")
    f.add(Release(reservation_id="r2"), T0 + 2 * NS)
    assert f.state.held("agent", "a") == 0
    assert f.state.decide_reserve(reserve("r3", "0.50"), T0).remaining_usd == 0


def test_project_budget_applies_and_unknown_names_are_unlimited() -> None:
    f = Folder(BUDGETS)
    f.add(commit("x1", "1.20", agent="other", project="p"), T0)
    refused = f.state.decide_reserve(reserve("r1", "0.40", agent="a", project="p"), T0)
    assert not refused.granted and "project 'p' day budget of 1.50 USD" in refused.reason
    free = f.state.decide_reserve(reserve("r2", "1000", agent="stranger", project="elsewhere"), T0)
    assert free.granted and free.remaining_usd is None


def test_commit_without_an_open_reservation_still_records_usage_once() -> None:
    f = Folder(BUDGETS)
    f.add(commit("lost", "0.25"), T0)
    f.add(commit("lost", "0.25"), T0 + NS)  # a retried Commit (vault and ledger both appended it)
    assert f.state.spent("agent", "a", "day", "2025-01-15") == D("0.25")
    assert not f.state.decide_reserve(reserve("lost", "0.01"), T0 + NS).granted, "a committed id is not reused"
    f.add(commit("lost", "0.25"), T0 + COMMIT_DEDUPE_NS + 2 * NS)  # the same id long after: a new call
    assert f.state.spent("agent", "a", "month", "2025-01") == D("0.50")


def test_commit_takes_the_project_of_its_reservation_when_it_names_none() -> None:
    f = Folder(BUDGETS)
    f.add(reserve("r1", "0.50", project="p"), T0)
    f.add(commit("r1", "0.40"), T0)
    assert f.state.spent("project", "p", "day", "2025-01-15") == D("0.40")


def test_reservations_expire_at_stream_time_plus_ttl() -> None:
    f = Folder(BUDGETS)
    f.add(reserve("short", "0.10", ttl_s=5), T0)
    f.add(reserve("long", "0.10", ttl_s=60), T0 + NS)
    assert f.state.next_expired(T0 + 5 * NS - 1) is None
    first = f.state.next_expired(T0 + 5 * NS)
    assert first is not None and first.reservation_id == "short"
    f.add(Release(reservation_id="short", reason="expired"), T0 + 5 * NS)
    assert f.state.next_expired(T0 + 30 * NS) is None
    f.add(commit("long", "0.05"), T0 + 10 * NS)
    assert f.state.next_expired(T0 + 3600 * NS) is None, "a committed reservation never expires"


def test_day_rolls_over_at_utc_midnight() -> None:
    f = Folder(BUDGETS)
    f.add(commit("c1", "0.90"), ts("2025-01-15T23:59:59.999"))
    assert not f.state.decide_reserve(reserve("r", "0.20"), ts("2025-01-15T23:59:59.999")).granted
    after = f.state.decide_reserve(reserve("r", "0.20"), ts("2025-01-16T00:00:00"))
    assert after.granted and after.remaining_usd == D("0.80"), "a new day, same month"
    f.add(commit("c2", "0.10"), ts("2025-01-16T00:00:00"))
    assert f.state.spent("agent", "a", "day", "2025-01-15") == D("0.90")
    assert f.state.spent("agent", "a", "day", "2025-01-16") == D("0.10")
    assert f.state.spent("agent", "a", "month", "2025-01") == D("1.00")


def test_month_rolls_over_at_the_end_of_the_month() -> None:
    f = Folder(BUDGETS)
    for i, day in enumerate(("2025-01-29", "2025-01-30", "2025-01-31")):
        f.add(commit(f"c{i}", "1.00"), ts(f"{day}T10:00:00"))
    assert not f.state.decide_reserve(reserve("r", "0.01"), ts("2025-01-31T23:59:59")).granted
    feb = f.state.decide_reserve(reserve("r", "1.00"), ts("2025-02-01T00:00:00"))
    assert feb.granted and feb.remaining_usd == 0
    f.add(commit("leap", "0.10"), ts("2024-02-29T23:59:59"))
    assert f.state.spent("agent", "a", "month", "2024-02") == D("0.10")


def test_alerts_at_80_and_100_percent_once_per_period() -> None:
    f = Folder(BUDGETS)
    f.add(commit("c1", "0.79"), T0)
    assert f.state.pending_alerts() == []
    f.add(commit("c2", "0.01"), T0)
    (warning,) = f.state.pending_alerts()
    assert (warning.scope, warning.period, warning.key, warning.level) == ("agent", "day", "2025-01-15", "warning")
    f.add(warning.event(), T0, period_key=warning.key)  # recorded on the stream
    f.add(commit("c3", "0.05"), T0)
    assert f.state.pending_alerts() == [], "a warning is raised once per period"
    f.add(commit("c4", "0.15"), T0)
    (blocked,) = f.state.pending_alerts()
    assert blocked.level == "blocked" and blocked.spent_usd == D("1.00") and blocked.limit_usd == D("1.00")
    f.add(blocked.event(), T0, period_key=blocked.key)
    f.add(commit("c5", "1.50"), T0 + 86_400 * NS)  # next day: 1.50 of 1.00, month 2.50 of 3.00
    levels = {(a.period, a.level) for a in f.state.pending_alerts()}
    assert levels == {("day", "warning"), ("day", "blocked"), ("month", "warning")}


def test_skipped_and_invalid_events_still_advance_the_sequence() -> None:
    f = Folder(BUDGETS)
    f.add(None, T0)
    f.add(commit("neg", "-1"), T0)
    f.add(reserve("nan", "NaN"), T0)
    assert f.state.last_seq == 3
    assert f.state.spent("agent", "a", "day", "2025-01-15") == 0 and f.state.held("agent", "a") == 0


def test_restoring_a_snapshot_mid_stream_gives_the_same_state_as_one_fold() -> None:
    history = random_history(3000, seed=7)
    whole = Folder(BUDGETS)
    for event, at in history:
        whole.add(event, at)
    split = Folder(BUDGETS)
    for event, at in history[:1234]:
        split.add(event, at)
    resumed = Folder(BUDGETS, LedgerState(BUDGETS, split.state.snapshot()))
    for event, at in history[1234:]:
        resumed.add(event, at)
    assert resumed.state.snapshot() == whole.state.snapshot()
    assert whole.state.snapshot() != Snapshot()


def test_decisions_stay_constant_time_as_usage_grows() -> None:
    """Budget checks read in-memory totals; they never sum usage rows (measured, not asserted)."""
    f = Folder(BUDGETS)
    probe = reserve("probe", "0.01")
    timings = {}
    at = T0
    for rows in (0, 10_000, 100_000):
        while f.seq < rows:
            at += 1000
            f.add(commit(f"u{f.seq}", "0.00001"), at)
        start = time.perf_counter()
        for _ in range(1000):
            f.state.decide_reserve(probe, at)
        timings[rows] = (time.perf_counter() - start) / 1000 * 1e6
    print("decide_reserve microseconds by usage rows:", {k: round(v, 2) for k, v in timings.items()})
    assert f.state.spent("agent", "a", "month", "2025-01") == D("0.00001") * 100_000
