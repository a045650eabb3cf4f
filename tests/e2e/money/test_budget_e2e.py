"""Money end to end: one agent fires 100 concurrent LLM calls through the real vault and the real ledger
against a daily budget that pays for exactly 10 of them.

Real nats-server (agent, vault and ledger credentials), the fake OpenAI-compatible server through
real LiteLLM, and the ledger's SQLite projection. See money_rig.py for the arithmetic.
"""

from __future__ import annotations

import asyncio
import gc
import logging
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import pytest
from money_rig import (
    BUDGET_USD,
    CALL_USD,
    Call,
    MoneyFleet,
    describe,
    last_seq,
    money_fleet,
    read_after,
)
from nats.aio.msg import Msg
from structlog.testing import capture_logs

from legion.contracts import BudgetExceeded, LlmError, LlmReply, Message, decode, encode
from legion.contracts import subjects as subj
from legion.testing import FakeLlmServer, TestFleet

pytestmark = [pytest.mark.nats, pytest.mark.slow, pytest.mark.timeout(120)]

CALLS = 100
LLM_LATENCY_S = 1.0
"""How long the fake model takes to answer: a served call takes at least this long."""
QUICK_S = LLM_LATENCY_S / 2
"""Every refusal must arrive within this: well before any model could have answered."""


@pytest.fixture
def frozen_heap() -> Iterator[None]:
    """The heap as the vault process keeps it (legion/actors/vault/__main__.py): what is alive at start
    is frozen out of garbage collection. Otherwise a full collection of this test process's heap
    (pytest, LiteLLM: ~200 ms) lands at a random point of the burst and stalls every call at once."""
    gc.collect()
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()


async def fire(money: MoneyFleet) -> list[Call]:
    return list(await asyncio.gather(*(money.ask() for _ in range(CALLS))))


def decoded(msgs: list[Msg]) -> list[Message]:
    out = []
    for m in msgs:
        msg = decode(m.data, m.headers)
        if isinstance(msg, Message):
            out.append(msg)
    return out


async def test_100_concurrent_calls_spend_exactly_the_budget_and_the_rest_are_refused_at_once(
    legion_fleet: TestFleet, tmp_path: Path, frozen_heap: None
) -> None:
    fits = int(BUDGET_USD // CALL_USD)  # whole calls whose reservation fits in the budget
    assert fits == 10 and fits * CALL_USD == BUDGET_USD, "the budget pays for exactly 10 calls"
    alerts: asyncio.Queue[BudgetExceeded] = asyncio.Queue()

    async def on_alert(msg: Msg) -> None:
        alerts.put_nowait(decode(msg.data, msg.headers, strict=True, type=BudgetExceeded))

    async with FakeLlmServer(latency=LLM_LATENCY_S) as llm, money_fleet(legion_fleet, llm, tmp_path) as money:
        admin = legion_fleet.admin
        await admin.subscribe(subj.EVENTS.render(source=money.ledger.name, type="budget.exceeded"), on_alert)
        events_from = await last_seq(admin, "EVENTS")
        calls = await fire(money)
        print(f"\n{CALLS} calls, budget {BUDGET_USD} USD, {CALL_USD} USD a call: {describe(calls)}")

        replies = [c.reply for c in calls if isinstance(c.reply, LlmReply)]
        errors = [c.reply for c in calls if isinstance(c.reply, LlmError)]
        assert len(replies) == fits
        assert len(errors) == CALLS - fits
        assert {(e.code, e.retryable) for e in errors} == {("budget", False)}
        assert all(f"agent {money.agent.name!r} day budget of {BUDGET_USD} USD" in e.message for e in errors)
        assert {r.cost_usd for r in replies} == {CALL_USD}
        assert len(llm.requests) == len(replies), "refused calls never reached the model"
        # a served call waits for the model; a refused one only for the ledger's answer
        assert min(c.latency_s for c in calls if isinstance(c.reply, LlmReply)) >= LLM_LATENCY_S
        slow = [round(c.latency_s, 3) for c in calls if isinstance(c.reply, LlmError) and c.latency_s >= QUICK_S]
        assert slow == [], f"refusals that took {QUICK_S} s or more: {slow}"

        report = await money.costs()
        assert report.total_usd == fits * CALL_USD <= BUDGET_USD
        assert [(r.agent, r.model, r.calls) for r in report.rows] == [(money.agent.name, "metered", fits)]

        assert money.ledger.state.held("agent", money.agent.name) == 0, "no reservation is left open"
        probe = await money.reserve(Decimal(0))
        assert (probe.granted, probe.remaining_usd) == (True, 0)
        await money.release(probe.reservation_id)
        refused = await money.reserve(CALL_USD)
        assert not refused.granted and f"spent {BUDGET_USD} + reserved 0 + estimate" in refused.reason

        async with asyncio.timeout(10):
            raised = [await alerts.get(), await alerts.get()]  # at 80 % and at 100 % of the budget
        events = decoded(await read_after(admin, "EVENTS", events_from))
        stored = [e for e in events if isinstance(e, BudgetExceeded) and e.name == money.agent.name]
    assert [a.level for a in raised] == ["warning", "blocked"]
    assert stored == raised, "both are recorded in EVENTS"
    blocked = raised[1]
    assert (blocked.scope, blocked.name, blocked.period) == ("agent", money.agent.name, "day")
    assert blocked.limit_usd == blocked.spent_usd == BUDGET_USD


async def test_the_provider_key_never_appears_in_streams_replies_or_logs(
    legion_fleet: TestFleet,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    capfd: pytest.CaptureFixture[str],
) -> None:
    texts: list[str] = []
    with capture_logs() as entries:
        async with FakeLlmServer() as llm, money_fleet(legion_fleet, llm, tmp_path) as money:
            caplog.set_level(logging.DEBUG)  # every library logger at DEBUG, as an operator chasing a bug might
            for name in ("LiteLLM", "LiteLLM Router", "httpx", "httpcore", "openai"):
                caplog.set_level(logging.DEBUG, logger=name)
            admin = legion_fleet.admin
            starts = {stream: await last_seq(admin, stream) for stream in ("EVENTS", "LEDGER")}
            calls = await fire(money)
            await money.costs()
            for stream, seq in starts.items():
                msgs = await read_after(admin, stream, seq)
                assert msgs, f"{stream} recorded the calls (the check is meaningful)"
                texts += [m.data.decode(errors="replace") + repr(m.headers) for m in msgs]
            texts += [encode(c.reply)[0].decode() for c in calls]
            secret = money.secret
            assert {r.api_key for r in llm.requests} == {secret}, "the key was used (the check is meaningful)"

    assert {type(c.reply) for c in calls} == {LlmReply, LlmError}
    texts += [repr(e) for e in entries]
    texts += [r.getMessage() + (r.exc_text or "") for r in caplog.records]
    out, err = capfd.readouterr()
    texts += [caplog.text, out, err]
    assert entries, "logs were captured"
    leaks = [t[:200] for t in texts if secret in t]
    assert leaks == [], leaks
