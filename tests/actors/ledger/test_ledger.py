"""The ledger actor against a real nats-server: exact budgets under concurrency, foreign writers, alerts."""

from __future__ import annotations

import asyncio
import time
import uuid
from decimal import Decimal
from pathlib import Path

import pytest
from ledger_rig import Collector, start_ledger, stream_last_seq

from legion.actors.ledger import Budgets, Limits
from legion.contracts import BudgetExceeded, Commit, Release
from legion.contracts import subjects as subj
from legion.testing import TestFleet

pytestmark = pytest.mark.nats
D = Decimal


def rid() -> str:
    return uuid.uuid4().hex


async def test_100_concurrent_reserves_grant_exactly_what_the_budget_allows(
    legion_fleet: TestFleet, tmp_path: Path
) -> None:
    fleet = legion_fleet
    agent = fleet.name("alpha")
    budgets = Budgets(agents={agent: Limits(daily_usd=D("1.00"))})
    running = await start_ledger(fleet, tmp_path / "ledger.db", budgets)
    client = running.client
    try:
        ids = [rid() for _ in range(100)]
        started = time.perf_counter()
        replies = await asyncio.gather(*(client.reserve(i, agent, "0.10") for i in ids))
        elapsed = time.perf_counter() - started
        granted = [r for r in replies if r.granted]
        refused = [r for r in replies if not r.granted]
        print(f"100 concurrent reserves answered in {elapsed * 1000:.1f} ms")
        assert len(granted) == 10
        assert all("day budget of 1.00 USD" in r.reason and r.remaining_usd == 0 for r in refused)
        assert elapsed < 5, "refusals are quick"

        for i, reply in enumerate(granted):
            if i % 2:
                ack = await client.release(reply.reservation_id)
            else:
                ack = await client.commit(reply.reservation_id, agent, "0.10")
            assert ack.ok and ack.reason == "", ack
        report = await client.costs(agent=agent)
        assert report.total_usd == D("0.50") and report.rows[0].calls == 5
        probe = await client.reserve(rid(), agent, "0")
        assert probe.granted and probe.remaining_usd == D("0.50"), "nothing is left reserved"
        assert (await client.reserve(rid(), agent, "0.51")).granted is False
    finally:
        await running.stop()


async def test_two_ledger_instances_share_one_budget_exactly(legion_fleet: TestFleet, tmp_path: Path) -> None:
    """Two instances in one queue group both append with Nats-Expected-Last-Sequence: no overspend."""
    fleet = legion_fleet
    agent = fleet.name("beta")
    service = fleet.name("ledger")
    budgets = Budgets(agents={agent: Limits(daily_usd=D("1.00"))})
    first = await start_ledger(fleet, tmp_path / "a.db", budgets, name=fleet.name("ledger-a"), service=service)
    second = await start_ledger(fleet, tmp_path / "b.db", budgets, name=fleet.name("ledger-b"), service=service)
    try:
        replies = await asyncio.gather(*(first.client.reserve(rid(), agent, "0.10") for _ in range(100)))
        assert sum(r.granted for r in replies) == 10
        last = await stream_last_seq(fleet.admin)
        await asyncio.gather(first.ledger.wait_applied(last), second.ledger.wait_applied(last))
        assert first.ledger.state.held("agent", agent) == second.ledger.state.held("agent", agent) == D("1.00")
    finally:
        await first.stop()
        await second.stop()


async def test_events_appended_by_others_are_applied_before_deciding(legion_fleet: TestFleet, tmp_path: Path) -> None:
    """The vault appends a Commit straight into LEDGER (msg id = reservation id); the next Reserve sees it."""
    fleet = legion_fleet
    agent = fleet.name("gamma")
    budgets = Budgets(agents={agent: Limits(daily_usd=D("1.00"))})
    running = await start_ledger(fleet, tmp_path / "ledger.db", budgets)
    try:
        for _ in range(20):
            direct = Commit(reservation_id=rid(), agent=agent, model="m", actual_usd=D("0.05"))
            subject = subj.LEDGER.render(agent=agent, op="commit")
            await fleet.admin.js_publish(subject, direct, msg_id=direct.reservation_id)
            refused = await running.client.reserve(rid(), agent, "0.01")
            if not refused.granted:
                break
            await running.client.release(refused.reservation_id)
        assert refused.granted is False and refused.remaining_usd == 0, "20 x 0.05 spent the whole budget"
        again = await running.client.commit(direct.reservation_id, agent, "0.05")
        assert again.ok and again.reason == "already committed"
        assert (await running.client.costs(agent=agent)).total_usd == D("1.00")
    finally:
        await running.stop()


async def test_budget_alerts_are_emitted_once_per_level_even_after_a_rebuild(
    legion_fleet: TestFleet, tmp_path: Path
) -> None:
    fleet = legion_fleet
    agent = fleet.name("delta")
    project = fleet.name("proj")
    budgets = Budgets(
        agents={agent: Limits(daily_usd=D("1.00"), monthly_usd=D("100"))}, projects={project: Limits(daily_usd=D("10"))}
    )
    name = fleet.name("ledger")
    alerts = Collector()
    await fleet.admin.subscribe(subj.EVENTS.render(source=name, type="budget.exceeded"), alerts.on_msg)
    running = await start_ledger(fleet, tmp_path / "ledger.db", budgets, name=name)
    try:
        await running.client.commit(rid(), agent, "0.79", project=project)
        await running.client.commit(rid(), agent, "0.01", project=project)
        warning = await alerts.wait_for(lambda m: isinstance(m, BudgetExceeded) and m.level == "warning")
        assert warning == BudgetExceeded(
            scope="agent", name=agent, period="day", limit_usd=D("1.00"), spent_usd=D("0.80"), level="warning"
        )
        await running.client.commit(rid(), agent, "0.10", project=project)
        await running.client.commit(rid(), agent, "0.20", project=project)
        blocked = await alerts.wait_for(lambda m: isinstance(m, BudgetExceeded) and m.level == "blocked")
        assert blocked.spent_usd == D("1.10")  # type: ignore[attr-defined]
        refused = await running.client.reserve(rid(), agent, "0.01", project=project)
        assert not refused.granted
    finally:
        await running.stop()

    (tmp_path / "ledger.db").unlink()
    rebuilt = await start_ledger(fleet, tmp_path / "ledger.db", budgets, name=name)
    try:
        await rebuilt.client.commit(rid(), agent, "0.01", project=project)  # settles pending alerts, if any
        await fleet.admin.nc.flush()
        assert [(a.scope, a.level) for a in alerts.items] == [("agent", "warning"), ("agent", "blocked")]  # type: ignore[attr-defined]
        assert (await rebuilt.client.costs(project=project)).total_usd == D("1.11")
    finally:
        await rebuilt.stop()


async def test_release_and_commit_of_unknown_reservations(legion_fleet: TestFleet, tmp_path: Path) -> None:
    fleet = legion_fleet
    agent = fleet.name("eps")
    running = await start_ledger(fleet, tmp_path / "ledger.db", Budgets())
    try:
        released = await running.client.release(rid())
        assert not released.ok and "no open reservation" in released.reason
        late = await running.client.commit(rid(), agent, "0.30")
        assert late.ok and "usage recorded" in late.reason, "money spent is never lost"
        bad = await running.client.reserve(rid(), "Not A Token", "0.1")
        assert not bad.granted and "agent name" in bad.reason
        unlimited = await running.client.reserve(rid(), agent, "1000000")
        assert unlimited.granted and unlimited.remaining_usd is None
        relay = await running.client.call("release", Release(reservation_id=unlimited.reservation_id))
        assert relay.ok  # type: ignore[attr-defined]
    finally:
        await running.stop()
