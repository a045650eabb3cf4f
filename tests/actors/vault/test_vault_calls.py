"""LLM calls through the vault: billing, policy, prices, budget and the ledger's absence.

Real nats-server (agent credentials), the fake OpenAI-compatible server through real LiteLLM, and a
fake ledger speaking the ledger contracts.
"""

from __future__ import annotations

import asyncio
import time
from decimal import Decimal
from typing import Any

import pytest
from llm_rig import (
    PRIMARY_PRICE,
    cost,
    default_models,
    vault_rig,
)

from legion.contracts import Commit, LlmError, LlmRefused, LlmReply, ModelCalled, decode
from legion.contracts import headers as h
from legion.contracts import subjects as subj
from legion.testing import FakeLlmServer, LlmErrorReply, Reply, TestFleet, ToolCall, read_stream

pytestmark = [pytest.mark.nats, pytest.mark.timeout(60)]


async def test_a_call_is_answered_billed_and_recorded(legion_fleet: TestFleet, fake_llm: FakeLlmServer) -> None:
    fake_llm.script(Reply(text="hi there", prompt_tokens=10, completion_tokens=5))
    async with vault_rig(legion_fleet, fake_llm) as rig:
        reply = await rig.ask("primary")

        expected = cost(PRIMARY_PRICE, 10, 5)
        assert isinstance(reply, LlmReply), reply
        assert (reply.model, reply.content, reply.finish_reason) == ("primary", "hi there", "stop")
        assert (reply.prompt_tokens, reply.completion_tokens, reply.cost_usd) == (10, 5, expected)
        [reserve] = rig.ledger.reserves
        assert reserve.agent == rig.agent.name
        assert reserve.estimate_usd >= expected, "the reservation covers the call"
        [commit] = rig.ledger.commits
        assert commit == Commit(
            reservation_id=reserve.reservation_id,
            agent=rig.agent.name,
            model="primary",
            actual_usd=expected,
            prompt_tokens=10,
            completion_tokens=5,
        )
        assert rig.ledger.releases == []
        [called] = [e for e in await rig.events() if isinstance(e, ModelCalled)]
        assert (called.agent, called.model, called.provider_model) == (
            rig.agent.name,
            "primary",
            "openai/primary-model",
        )
        assert (called.prompt_tokens, called.completion_tokens, called.cost_usd, called.ok) == (10, 5, expected, True)
        assert called.latency_ms > 0
        [sent] = fake_llm.requests
        assert sent.api_key == rig.secret, "the vault used the provider key"
        assert sent.model == "primary-model"


async def test_tool_calls_come_back_to_the_agent(legion_fleet: TestFleet, fake_llm: FakeLlmServer) -> None:
    fake_llm.script(Reply(tool_calls=[ToolCall(name="write_file", arguments={"path": "a.txt"}, id="call_1")]))
    tools = [{"type": "function", "function": {"name": "write_file", "parameters": {"type": "object"}}}]
    async with vault_rig(legion_fleet, fake_llm) as rig:
        reply = await rig.ask("primary", tools=tools)

    assert isinstance(reply, LlmReply), reply
    assert reply.finish_reason == "tool_calls"
    assert reply.tool_calls == [
        {"id": "call_1", "type": "function", "function": {"name": "write_file", "arguments": '{"path": "a.txt"}'}}
    ]
    assert fake_llm.requests[0].body["tools"] == tools


async def test_the_trace_of_the_request_reaches_the_event(legion_fleet: TestFleet, fake_llm: FakeLlmServer) -> None:
    async with vault_rig(legion_fleet, fake_llm) as rig:
        req = rig.request("primary")
        reply = await rig.send(req, headers={h.TRACE: "trace-abc"})
        assert isinstance(reply, LlmReply)
        msgs = await read_stream(legion_fleet.admin, "EVENTS", subj.EVENTS.wildcard(source=rig.vault.name))
        traced = [m for m in msgs if decode(m.data, m.headers).__class__ is ModelCalled]
        assert [m.headers[h.TRACE] for m in traced] == ["trace-abc"]


async def test_max_tokens_is_capped_by_the_agent_and_the_model(
    legion_fleet: TestFleet, fake_llm: FakeLlmServer
) -> None:
    models = default_models(fake_llm.base_url)
    models["primary"]["max_tokens"] = 300
    async with vault_rig(
        legion_fleet, fake_llm, models=models, agent_config={"model": "primary", "max_tokens": 500}
    ) as rig:
        await rig.ask("primary", max_tokens=1000)
        await rig.ask("primary", max_tokens=20)
        await rig.ask("primary")
    assert [r.body["max_tokens"] for r in fake_llm.requests] == [300, 20, 300]


@pytest.mark.parametrize(
    ("agent_config", "model", "fragment"),
    [
        ({"model": "primary"}, "other", "may not call model 'other'"),
        ({"model": "primary", "allowed_models": ["secondary"]}, "primary", "may not call model 'primary'"),
        ({"model": "primary", "allowed_apis": ["http"]}, "primary", "'llm' is not in its allowed_apis"),
    ],
    ids=["not-in-chain", "not-allowed", "llm-api-not-allowed"],
)
async def test_policy_refusals(
    legion_fleet: TestFleet, fake_llm: FakeLlmServer, agent_config: dict[str, Any], model: str, fragment: str
) -> None:
    models = default_models(fake_llm.base_url)
    models["other"] = dict(models["secondary"])
    async with vault_rig(legion_fleet, fake_llm, models=models, agent_config=agent_config) as rig:
        reply = await rig.ask(model)
        events = await rig.events()

    assert isinstance(reply, LlmError), reply
    assert reply.code == "policy"
    assert fragment in reply.message
    assert fake_llm.requests == [], "no model was called"
    assert rig.ledger.reserves == [], "no budget was reserved"
    [refused] = [e for e in events if isinstance(e, LlmRefused)]
    assert (refused.agent, refused.code, refused.model) == (rig.agent.name, "policy", model)


async def test_the_request_names_which_of_the_agents_projects_is_billed(
    legion_fleet: TestFleet, fake_llm: FakeLlmServer
) -> None:
    agent_config = {"model": "primary", "projects": ["p1", "p2"]}
    async with vault_rig(legion_fleet, fake_llm, agent_config=agent_config) as rig:
        billed = await rig.ask("primary", project="p2")
        refused = await rig.ask("primary", project="p3")

    assert isinstance(billed, LlmReply), billed
    [reserve] = rig.ledger.reserves
    [commit] = rig.ledger.commits
    assert (reserve.project, commit.project) == ("p2", "p2")
    assert isinstance(refused, LlmError), refused
    assert refused.code == "policy"
    assert "may not bill project 'p3' (its projects: p1, p2)" in refused.message
    assert len(fake_llm.requests) == 1, "the refused call reached no model"


async def test_a_model_without_a_known_price_fails_closed(legion_fleet: TestFleet, fake_llm: FakeLlmServer) -> None:
    models = default_models(fake_llm.base_url)
    models["mystery"] = {"model": "openai/no-such-model-in-any-price-map", "api_base": fake_llm.base_url, "key": "fake"}
    async with vault_rig(legion_fleet, fake_llm, models=models, agent_config={"model": "mystery"}) as rig:
        reply = await rig.ask("mystery")

    assert isinstance(reply, LlmError), reply
    assert reply.code == "policy"
    assert "no known price" in reply.message
    assert "price:" in reply.message and "legion.yaml" in reply.message
    assert fake_llm.requests == []


async def test_a_known_model_is_priced_from_litellm(legion_fleet: TestFleet, fake_llm: FakeLlmServer) -> None:
    fake_llm.script(Reply(text="ok", prompt_tokens=1000, completion_tokens=100))
    models = {"mini": {"model": "openai/gpt-4o-mini", "api_base": fake_llm.base_url, "key": "fake"}}
    async with vault_rig(legion_fleet, fake_llm, models=models, agent_config={"model": "mini"}) as rig:
        reply = await rig.ask("mini")

    assert isinstance(reply, LlmReply), reply
    # gpt-4o-mini in LiteLLM's bundled map: 0.15 / 0.60 USD per million tokens
    assert reply.cost_usd == Decimal("0.00015") + Decimal("0.00006")
    assert rig.ledger.commits[0].actual_usd == reply.cost_usd


async def test_a_refused_budget_answers_quickly_without_calling_a_model(
    legion_fleet: TestFleet, fake_llm: FakeLlmServer
) -> None:
    options = {"grant": False, "reason": "daily budget of 1.00 USD spent"}
    async with vault_rig(legion_fleet, fake_llm, ledger_options=options) as rig:
        started = time.monotonic()
        reply = await rig.ask("primary")
        elapsed = time.monotonic() - started
        events = await rig.events()

    assert isinstance(reply, LlmError), reply
    assert reply.code == "budget"
    assert "daily budget of 1.00 USD spent" in reply.message
    assert elapsed < 1.0, f"a budget refusal took {elapsed:.2f}s"
    assert fake_llm.requests == []
    assert len(rig.ledger.reserves) == 1
    assert rig.ledger.commits == [] and rig.ledger.releases == []
    assert [e.code for e in events if isinstance(e, LlmRefused)] == ["budget"]


async def test_no_call_is_made_when_the_ledger_does_not_answer(
    legion_fleet: TestFleet, fake_llm: FakeLlmServer
) -> None:
    async with vault_rig(legion_fleet, fake_llm, spec={"ledger_service": "nobody-listens"}) as rig:
        reply = await rig.ask("primary")

    assert isinstance(reply, LlmError), reply
    assert (reply.code, reply.retryable) == ("budget", True)
    assert fake_llm.requests == []


async def test_a_commit_the_ledger_does_not_answer_goes_into_the_ledger_stream(
    legion_fleet: TestFleet, fake_llm: FakeLlmServer
) -> None:
    fake_llm.script(Reply(text="hi", prompt_tokens=10, completion_tokens=5))
    async with vault_rig(
        legion_fleet, fake_llm, ledger_options={"answer_settlements": False}, spec={"ledger_timeout_s": 0.5}
    ) as rig:
        reply = await rig.ask("primary")
        assert isinstance(reply, LlmReply), reply
        [reserve] = rig.ledger.reserves
        msgs = await read_stream(legion_fleet.admin, "LEDGER", subj.LEDGER.render(agent=rig.agent.name, op="commit"))

    [msg] = msgs
    commit = decode(msg.data, msg.headers, strict=True, type=Commit)
    assert msg.headers[h.MSG_ID] == reserve.reservation_id, "a retry would be stored once"
    assert (commit.reservation_id, commit.actual_usd) == (reserve.reservation_id, cost(PRIMARY_PRICE, 10, 5))
    assert rig.ledger.commits == []


async def test_a_call_that_fails_before_any_cost_releases_its_reservation(
    legion_fleet: TestFleet, fake_llm: FakeLlmServer
) -> None:
    fake_llm.always(LlmErrorReply(status=400, message="bad messages"))
    async with vault_rig(legion_fleet, fake_llm) as rig:
        reply = await rig.ask("primary")

    assert isinstance(reply, LlmError), reply
    assert reply.code == "invalid"
    [reserve] = rig.ledger.reserves
    [release] = rig.ledger.releases
    assert release.reservation_id == reserve.reservation_id
    assert rig.ledger.commits == []


async def test_calls_of_one_agent_run_concurrently(legion_fleet: TestFleet, fake_llm: FakeLlmServer) -> None:
    """DESIGN.md section 7: a per-agent lock serialised a peer's calls. All 8 reach the provider at once."""
    fake_llm.always(Reply(text="slow", latency=1.0))
    async with vault_rig(legion_fleet, fake_llm) as rig, asyncio.TaskGroup() as tg:
        calls = [tg.create_task(rig.ask("primary")) for _ in range(8)]
        await fake_llm.wait_for_requests(8, timeout=5)
        assert not any(c.done() for c in calls)
    assert all(isinstance(c.result(), LlmReply) for c in calls)
    assert len(rig.ledger.commits) == 8


async def test_several_vault_instances_share_the_work(legion_fleet: TestFleet, fake_llm: FakeLlmServer) -> None:
    """Instances form one queue group; each request is answered once, and one instance may stop."""
    async with vault_rig(legion_fleet, fake_llm, instances=2) as rig:
        replies = await asyncio.gather(*(rig.ask("primary") for _ in range(6)))
        assert all(isinstance(r, LlmReply) for r in replies)
        assert len(fake_llm.requests) == 6
        assert len({c.reservation_id for c in rig.ledger.commits}) == 6
        stopped: asyncio.Queue[object] = asyncio.Queue()

        async def on_stopped(msg: object) -> None:
            stopped.put_nowait(msg)

        await legion_fleet.admin.subscribe(subj.EVENTS.render(source=rig.vault.name, type="actor.stopped"), on_stopped)
        rig.hosts[0].stop()
        await asyncio.wait_for(stopped.get(), 10)  # its subscription is gone (UNSUB precedes the event)
        after = await rig.ask("primary")
        assert isinstance(after, LlmReply), after
    assert len(rig.ledger.commits) == 7
