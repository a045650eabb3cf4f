"""``python -m legion.actors.ledger`` as a real process: kill -9 and restart, delete the database and rebuild."""

from __future__ import annotations

import uuid
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from ledger_rig import Collector, LedgerClient, LedgerProcess, ledger_process

from legion.actors.ledger import LedgerStore, Snapshot
from legion.contracts import Commit, Release
from legion.contracts import subjects as subj
from legion.testing import TestFleet

pytestmark = [pytest.mark.nats, pytest.mark.slow]
D = Decimal


def rid() -> str:
    return uuid.uuid4().hex


def fleet_config(fleet: TestFleet) -> dict[str, Any]:
    return {
        "fleet": fleet.name("fleet"),
        "agents": {
            fleet.name("alpha"): {"budget": {"daily_usd": "1.00"}},
            fleet.name("beta"): {"budget": {"daily_usd": "5", "monthly_usd": "50"}},
        },
        "projects": {fleet.name("proj"): {"budget": {"daily_usd": "3"}}},
    }


async def read_snapshot(proc: LedgerProcess) -> Snapshot:
    store = await LedgerStore.open(proc.db_path)
    try:
        return await store.load()
    finally:
        await store.close()


async def applied_by_the_ledger(client: LedgerClient, commit: Commit) -> None:
    """``commit`` was appended straight to LEDGER (not through the ledger). A granted Reserve is stored
    only on the ledger's up-to-date state (Nats-Expected-Last-Sequence), so once one returns, every
    earlier LEDGER event has been applied: the commit is in the costs now, no polling needed."""
    barrier = await client.reserve(rid(), "barrier", "0")
    assert barrier.granted
    assert (await client.release(barrier.reservation_id)).ok
    report = await client.costs(agent=commit.agent, project=commit.project)
    assert any(r.model == commit.model for r in report.rows), report


async def test_kill_9_between_reserve_and_commit_leaks_nothing(legion_fleet: TestFleet, tmp_path: Path) -> None:
    """Two calls are in flight at the crash: one still running after the restart (long TTL), one that
    never comes back (short TTL, so the test sees it expire). Neither is dropped, nothing is leaked.

    The long one makes the check after the restart independent of how long the restart takes."""
    fleet = legion_fleet
    alpha = fleet.name("alpha")
    client = LedgerClient(fleet.admin, "ledger")
    releases = Collector()
    await fleet.admin.subscribe(subj.LEDGER.render(agent=alpha, op="release"), releases.on_msg)
    async with ledger_process(fleet, tmp_path, fleet_config(fleet)) as proc:
        await proc.start()
        await client.wait_serving()
        running = await client.reserve(rid(), alpha, "0.40", ttl_s=120.0)
        lost = await client.reserve(rid(), alpha, "0.20", ttl_s=3.0)
        done = await client.reserve(rid(), alpha, "0.30")
        assert running.granted and lost.granted and done.granted
        assert (await client.commit(done.reservation_id, alpha, "0.25")).ok
        await proc.kill9()  # the calls behind `running` and `lost` are in flight: no Commit, no Release

        await proc.start()
        await client.wait_serving()
        # 0.25 spent + 0.40 held: 0.36 does not fit (the crash did not drop `running`), whether or not
        # `lost` has expired yet
        assert not (await client.reserve(rid(), alpha, "0.36")).granted, "the crash did not drop the reservation"
        expired = await releases.wait_for(
            lambda m: isinstance(m, Release) and m.reservation_id == lost.reservation_id, timeout=20
        )
        assert expired == Release(reservation_id=lost.reservation_id, reason="expired")
        exact = await client.reserve(rid(), alpha, "0.35")
        assert exact.granted and exact.remaining_usd == 0, "1.00 - 0.25 spent - 0.40 held: nothing leaked or lost"
        late = await client.commit(lost.reservation_id, alpha, "0.05")
        assert late.ok and "usage recorded" in late.reason
        assert (await client.commit(running.reservation_id, alpha, "0.40")).ok
        assert (await client.release(exact.reservation_id)).ok
        report = await client.costs(agent=alpha)
        assert report.total_usd == D("0.70") and sum(r.calls for r in report.rows) == 3
        assert await proc.terminate() == 0, proc.output()


async def test_deleting_the_database_rebuilds_identical_totals_and_costs(
    legion_fleet: TestFleet, tmp_path: Path
) -> None:
    fleet = legion_fleet
    alpha, beta, proj = fleet.name("alpha"), fleet.name("beta"), fleet.name("proj")
    client = LedgerClient(fleet.admin, "ledger")
    queries: list[dict[str, Any]] = [
        {"agent": alpha},
        {"agent": beta, "by": "month"},
        {"project": proj},
        {"by": "month"},
        {},
    ]
    async with ledger_process(fleet, tmp_path, fleet_config(fleet)) as proc:
        await proc.start()
        await client.wait_serving()
        for i in range(30):
            agent = beta if i % 3 else alpha
            r = await client.reserve(rid(), agent, "0.05", project=proj if i % 2 else "")
            if not r.granted:
                continue
            if i % 5 == 4:
                assert (await client.release(r.reservation_id)).ok
            else:
                ack = await client.commit(r.reservation_id, agent, f"0.0{i % 4 + 1}", model=f"model-{i % 2}")
                assert ack.ok
        open_one = await client.reserve(rid(), beta, "0.40", project=proj, ttl_s=3600)
        assert open_one.granted
        vault_direct = Commit(reservation_id=rid(), agent=alpha, project=proj, model="x", actual_usd=D("0.07"))
        await fleet.admin.js_publish(
            subj.LEDGER.render(agent=alpha, op="commit"), vault_direct, msg_id=vault_direct.reservation_id
        )
        await applied_by_the_ledger(client, vault_direct)  # a direct append reaches the ledger through its feed
        before = [await client.costs(**q) for q in queries]
        assert before[0].total_usd > 0 and before[2].total_usd > 0
        assert await proc.terminate() == 0, proc.output()
        first = await read_snapshot(proc)

        proc.delete_db()
        await proc.start()
        await client.wait_serving()
        after = [await client.costs(**q) for q in queries]
        assert await proc.terminate() == 0, proc.output()
        rebuilt = await read_snapshot(proc)

    assert after == before
    assert rebuilt.totals == first.totals
    assert rebuilt.costs == first.costs
    ours = {alpha, beta}
    assert {k: v for k, v in rebuilt.reservations.items() if v.agent in ours} == {
        k: v for k, v in first.reservations.items() if v.agent in ours
    }
    assert open_one.reservation_id in rebuilt.reservations
    assert {k: a for k, a in rebuilt.alerts.items() if k[1] in ours | {proj}} == {
        k: a for k, a in first.alerts.items() if k[1] in ours | {proj}
    }
    assert rebuilt.last_seq >= first.last_seq
