"""Replay of 100k LEDGER events into an empty projection, on a server of its own (measured and printed).

Run: .venv/bin/pytest tests/actors/ledger/test_replay.py -s
"""

from __future__ import annotations

import asyncio
import time
import uuid
from decimal import Decimal
from pathlib import Path

import pytest
from ledger_rig import start_ledger

from legion.actors.ledger import Budgets, FeedSpec, Limits, StreamFeed, StreamRecord
from legion.broker import LEDGER
from legion.contracts import Commit, CostsQuery, Reserve
from legion.contracts import subjects as subj
from legion.testing import NatsTestServer, TestFleet

pytestmark = [pytest.mark.nats, pytest.mark.slow]

EVENTS = 100_000
AGENTS = [f"agent-{i}" for i in range(50)]
PROJECTS = ["", "p1", "p2"]


async def fill(fleet: TestFleet, n: int) -> None:
    """n/2 reservations and their commits, published in concurrent batches."""
    admin = fleet.admin
    sem = asyncio.Semaphore(512)

    async def one(i: int) -> None:
        agent, project = AGENTS[i % len(AGENTS)], PROJECTS[i % len(PROJECTS)]
        rid = uuid.uuid4().hex
        reserve = Reserve(reservation_id=rid, agent=agent, project=project, estimate_usd=Decimal("0.02"))
        commit = Commit(
            reservation_id=rid,
            agent=agent,
            project=project,
            model=f"model-{i % 4}",
            actual_usd=Decimal("0.0123"),
            prompt_tokens=100,
            completion_tokens=20,
        )
        async with sem:
            await admin.js_publish(subj.LEDGER.render(agent=agent, op="reserve"), reserve, msg_id=f"{rid}:reserve")
            await admin.js_publish(subj.LEDGER.render(agent=agent, op="commit"), commit, msg_id=rid)

    await asyncio.gather(*(one(i) for i in range(n // 2)))


async def test_replay_of_100k_events(tmp_path: Path) -> None:
    async with NatsTestServer() as server:
        admin = await server.admin()
        fleet = TestFleet(server=server, admin=admin)
        try:
            started = time.perf_counter()
            await fill(fleet, EVENTS)
            print(f"\nappended {EVENTS} events in {time.perf_counter() - started:.1f} s")

            seen = 0

            def count(_: StreamRecord) -> None:
                nonlocal seen
                seen += 1

            feed = StreamFeed(admin, FeedSpec(stream=LEDGER, filter_subject=subj.LEDGER_ALL), count, after_seq=0)
            started = time.perf_counter()
            await feed.start()
            await asyncio.wait_for(feed.caught_up.wait(), 300)
            feed_s = time.perf_counter() - started
            await feed.stop()
            assert seen == EVENTS
            print(f"feed only: {EVENTS / feed_s:,.0f} events/s ({feed_s:.2f} s)")

            budgets = Budgets(agents={AGENTS[0]: Limits(daily_usd=Decimal(1000))})
            running = await start_ledger(fleet, tmp_path / "ledger.db", budgets, catch_up_s=600)
            replay = running.ledger.replay
            assert replay is not None and replay.events == EVENTS
            print(
                f"ledger rebuild (decode + fold + SQLite): {EVENTS} events in {replay.seconds:.2f} s"
                f" = {replay.rate:,.0f} events/s"
            )
            report = await running.client.costs(agent=AGENTS[0], by="month")
            assert report.total_usd == Decimal("0.0123") * (EVENTS // 2 // len(AGENTS))
            state = running.ledger.state
            assert all(state.held("agent", a) == 0 for a in AGENTS), "every reservation was committed"
            live = state.snapshot()
            await running.stop()

            resumed = await start_ledger(fleet, tmp_path / "ledger.db", budgets)
            assert resumed.ledger.replay is not None and resumed.ledger.replay.events == 0
            print(f"restart on the existing projection: caught up in {resumed.ledger.replay.seconds * 1000:.0f} ms")
            assert resumed.ledger.state.snapshot() == live
            full = await resumed.client.costs()
            assert full == await resumed.client.call("costs", CostsQuery())
            await resumed.stop()
        finally:
            await fleet.close()
            await admin.close()
