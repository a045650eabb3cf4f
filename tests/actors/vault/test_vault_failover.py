"""Failover chains and per-model cooldown, with an injected clock (no test sleeps through a cooldown)."""

from __future__ import annotations

import pytest
from llm_rig import SECONDARY_PRICE, cost, default_models, vault_rig

from legion.contracts import LlmError, LlmReply, ModelCalled
from legion.testing import FakeLlmServer, LlmErrorReply, Reply, TestFleet

pytestmark = [pytest.mark.nats, pytest.mark.timeout(60)]

PRIMARY = "primary-model"
SECONDARY = "secondary-model"


def called(llm: FakeLlmServer) -> list[str | None]:
    return [r.model for r in llm.requests]


@pytest.mark.parametrize("status", [500, 429, 503])
async def test_a_failing_primary_fails_over_then_cools_down(
    legion_fleet: TestFleet, fake_llm: FakeLlmServer, status: int
) -> None:
    fake_llm.script(LlmErrorReply(status=status), model=PRIMARY)
    fake_llm.always(Reply(text="from secondary", prompt_tokens=4, completion_tokens=2), model=SECONDARY)
    async with vault_rig(legion_fleet, fake_llm) as rig:
        first = await rig.ask("primary")
        assert isinstance(first, LlmReply), first
        assert (first.model, first.content) == ("secondary", "from secondary")
        assert called(fake_llm) == [PRIMARY, SECONDARY]
        assert rig.ledger.commits[0].actual_usd == cost(SECONDARY_PRICE, 4, 2), "the failed call cost nothing"

        rig.clock.advance(59)
        second = await rig.ask("primary")
        assert isinstance(second, LlmReply) and second.model == "secondary"
        assert called(fake_llm) == [PRIMARY, SECONDARY, SECONDARY], "the primary is skipped while cooling down"

        rig.clock.advance(2)
        third = await rig.ask("primary")
        assert isinstance(third, LlmReply) and third.model == "primary", "after 60 s the primary is tried again"
        assert called(fake_llm) == [PRIMARY, SECONDARY, SECONDARY, PRIMARY]
        events = [e for e in await rig.events() if isinstance(e, ModelCalled)]

    assert [(e.model, e.ok) for e in events] == [
        ("primary", False),
        ("secondary", True),
        ("secondary", True),
        ("primary", True),
    ]


async def test_repeated_transient_failures_lengthen_the_cooldown(
    legion_fleet: TestFleet, fake_llm: FakeLlmServer
) -> None:
    fake_llm.always(LlmErrorReply(status=500), model=PRIMARY)
    async with vault_rig(legion_fleet, fake_llm) as rig:
        for wait in (60, 300, 1500, 1500):
            before = called(fake_llm).count(PRIMARY)
            await rig.ask("primary")
            assert called(fake_llm).count(PRIMARY) == before + 1
            rig.clock.advance(wait - 1)
            await rig.ask("primary")
            assert called(fake_llm).count(PRIMARY) == before + 1, f"still cooling down {wait - 1} s later"
            rig.clock.advance(1)


async def test_an_auth_failure_cools_the_model_down_for_an_hour(
    legion_fleet: TestFleet, fake_llm: FakeLlmServer
) -> None:
    fake_llm.script(LlmErrorReply(status=401), model=PRIMARY)
    async with vault_rig(legion_fleet, fake_llm) as rig:
        first = await rig.ask("primary")
        assert isinstance(first, LlmReply) and first.model == "secondary"

        rig.clock.advance(3599)
        await rig.ask("primary")
        assert called(fake_llm).count(PRIMARY) == 1, "skipped for an hour, not 60 s"

        rig.clock.advance(1)
        last = await rig.ask("primary")
        assert isinstance(last, LlmReply) and last.model == "primary"


@pytest.mark.parametrize(
    "error",
    [
        LlmErrorReply(status=403),
        LlmErrorReply(status=402, message="billing hard limit reached", error_type="billing_error"),
    ],
    ids=["403", "402"],
)
async def test_permission_and_billing_failures_also_cool_down_for_an_hour(
    legion_fleet: TestFleet, fake_llm: FakeLlmServer, error: LlmErrorReply
) -> None:
    fake_llm.script(error, model=PRIMARY)
    async with vault_rig(legion_fleet, fake_llm) as rig:
        await rig.ask("primary")
        rig.clock.advance(1800)
        await rig.ask("primary")
    assert called(fake_llm) == [PRIMARY, SECONDARY, SECONDARY]


async def test_when_every_model_fails_the_agent_gets_each_reason(
    legion_fleet: TestFleet, fake_llm: FakeLlmServer
) -> None:
    fake_llm.always(LlmErrorReply(status=500, message="primary is down"), model=PRIMARY)
    fake_llm.always(LlmErrorReply(status=429, message="secondary rate limit"), model=SECONDARY)
    async with vault_rig(legion_fleet, fake_llm) as rig:
        reply = await rig.ask("primary")
        assert isinstance(reply, LlmError), reply
        assert (reply.code, reply.retryable) == ("provider", True)
        assert "primary: " in reply.message and "primary is down" in reply.message
        assert "secondary: " in reply.message and "secondary rate limit" in reply.message
        assert len(rig.ledger.releases) == 1 and rig.ledger.commits == []

        again = await rig.ask("primary")
        assert isinstance(again, LlmError)
        assert again.code == "provider" and again.retryable
        assert "cooling down" in again.message and "retry in 60 s" in again.message
        assert len(fake_llm.requests) == 2, "no model was called while all cool down"
        assert len(rig.ledger.reserves) == 1, "nor was budget reserved"


async def test_an_invalid_request_does_not_cool_the_model_down(
    legion_fleet: TestFleet, fake_llm: FakeLlmServer
) -> None:
    fake_llm.script(LlmErrorReply(status=400, message="context too long"), model=PRIMARY)
    async with vault_rig(legion_fleet, fake_llm) as rig:
        first = await rig.ask("primary")
        assert isinstance(first, LlmReply) and first.model == "secondary", "a fallback may still answer"
        second = await rig.ask("primary")
        assert isinstance(second, LlmReply) and second.model == "primary"


async def test_a_timeout_fails_over(legion_fleet: TestFleet, fake_llm: FakeLlmServer) -> None:
    models = default_models(fake_llm.base_url)
    models["primary"]["timeout_s"] = 0.3
    fake_llm.script(Reply(text="too late", latency=5), model=PRIMARY)
    async with vault_rig(legion_fleet, fake_llm, models=models) as rig:
        reply = await rig.ask("primary")
        assert isinstance(reply, LlmReply) and reply.model == "secondary"
        rig.clock.advance(30)
        await rig.ask("primary")
    assert called(fake_llm) == [PRIMARY, SECONDARY, SECONDARY], "a timeout cools the model down"
