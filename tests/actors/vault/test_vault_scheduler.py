"""The vault's fair scheduler on its own: round-robin turns under the vault's cap, queue bounds,
cancelled waiters (orders and counts only, no clock); and how the vault process is hosted."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from legion.actors.vault.__main__ import factory
from legion.actors.vault.actor import Vault
from legion.actors.vault.scheduler import Limits, QuotaRefused, Scheduler
from legion.contracts import subjects as subj
from legion.runtime.config import FleetConfig

UNLIMITED = Limits(concurrency=8, queue=1000, rate_per_s=None, burst=1)


class Recorder:
    """Calls that hold their slot until released; records the order they started in."""

    def __init__(self, scheduler: Scheduler) -> None:
        self.scheduler = scheduler
        self.started: list[str] = []
        self.release = asyncio.Event()

    async def call(self, agent: str) -> str:
        async with self.scheduler.admit(agent, "llm"):
            self.started.append(agent)
            await self.release.wait()
        return agent


async def settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


async def test_a_freed_slot_goes_round_robin_so_a_backlog_does_not_delay_a_new_agent() -> None:
    scheduler = Scheduler(lambda _agent: UNLIMITED, concurrency=2)
    rec = Recorder(scheduler)
    async with asyncio.TaskGroup() as tg:
        for _ in range(10):
            tg.create_task(rec.call("a"))
        await settle()
        tg.create_task(rec.call("b"))
        tg.create_task(rec.call("c"))
        await settle()
        assert rec.started == ["a", "a"], "the vault's cap of 2 is full"
        rec.release.set()

    first_turns = rec.started[2:5]
    assert sorted(first_turns) == ["a", "b", "c"], f"one call per agent per turn: {rec.started}"
    assert rec.started.count("a") == 10


async def test_an_agents_cap_leaves_the_vaults_other_slots_to_others() -> None:
    scheduler = Scheduler(lambda agent: Limits(concurrency=2, queue=100, rate_per_s=None, burst=1), concurrency=64)
    rec = Recorder(scheduler)
    async with asyncio.TaskGroup() as tg:
        for _ in range(10):
            tg.create_task(rec.call("a"))
        await settle()
        tg.create_task(rec.call("b"))
        await settle()
        assert rec.started == ["a", "a", "b"]
        assert scheduler.waiting("a", "llm") == 8
        rec.release.set()


async def test_a_full_queue_refuses_busy_and_a_cancelled_waiter_gives_its_place_back() -> None:
    scheduler = Scheduler(lambda _agent: Limits(concurrency=1, queue=1, rate_per_s=None, burst=1), concurrency=4)
    rec = Recorder(scheduler)
    running = asyncio.create_task(rec.call("a"))
    waiting = asyncio.create_task(rec.call("a"))
    await settle()
    with pytest.raises(QuotaRefused) as refused:
        await rec.call("a")
    assert refused.value.code == "busy" and refused.value.retryable
    assert "runtime.vault.agent_quota.concurrency" in refused.value.message

    waiting.cancel()
    await settle()
    again = asyncio.create_task(rec.call("a"))
    await settle()
    assert scheduler.waiting("a", "llm") == 1, "the cancelled call left the queue"
    rec.release.set()
    assert await asyncio.gather(running, again) == ["a", "a"]
    assert scheduler.running == 0


async def test_when_the_vaults_cap_holds_a_call_the_refusal_names_that_key() -> None:
    scheduler = Scheduler(lambda _agent: Limits(concurrency=4, queue=0, rate_per_s=None, burst=1), concurrency=1)
    rec = Recorder(scheduler)
    running = asyncio.create_task(rec.call("a"))
    await settle()
    with pytest.raises(QuotaRefused) as refused:
        await rec.call("b")
    assert refused.value.code == "busy"
    assert "runtime.vault.concurrency" in refused.value.message
    rec.release.set()
    await running


async def test_a_lane_waiting_for_a_token_starts_when_it_comes() -> None:
    fast = Limits(concurrency=4, queue=4, rate_per_s=1000.0, burst=1)
    scheduler = Scheduler(lambda _agent: fast, concurrency=4)
    done = []

    async def call() -> None:
        async with scheduler.admit("a", "http"):
            done.append(1)

    async with asyncio.timeout(5):
        await asyncio.gather(*(call() for _ in range(4)))
    assert len(done) == 4, "queued behind the bucket, not refused"


async def test_the_vault_process_subscribes_per_agent_without_a_host_cap(tmp_path: Path) -> None:
    """Each agent's requests wait in their own subscription's queue; the scheduler, not the host, admits."""
    config = FleetConfig.model_validate({"models": {"m": {"model": "legion/offline"}}, "agents": {"b": {}, "a": {}}})
    vault, spec = await factory("vault", config, tmp_path)
    assert isinstance(vault, Vault)
    assert [s.subject for s in spec.services] == [
        t.render(agent=agent) for agent in ("a", "b") for t in (subj.VAULT_LLM, subj.VAULT_HTTP, subj.VAULT_BUDGET)
    ]
    assert {s.concurrency for s in spec.services} == {None}
    assert {s.queue for s in spec.services} == {"vault"}
