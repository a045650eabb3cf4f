"""Streamed calls: deltas on ``legion.stream.<agent>.<session>``, always billed (DESIGN.md section 7)."""

from __future__ import annotations

import pytest
from llm_rig import PRIMARY_PRICE, SECONDARY_PRICE, collect_stream, cost, vault_rig

from legion.contracts import LlmError, LlmReply, ModelCalled
from legion.testing import FakeLlmServer, Reply, TestFleet

pytestmark = [pytest.mark.nats, pytest.mark.timeout(60)]


async def test_deltas_arrive_on_the_stream_subject_and_usage_is_billed(
    legion_fleet: TestFleet, fake_llm: FakeLlmServer
) -> None:
    fake_llm.script(Reply(text="one two three", prompt_tokens=7, completion_tokens=3))
    async with vault_rig(legion_fleet, fake_llm) as rig:
        chunks = await rig.listen("s1")
        reply = await rig.ask("primary", stream=True, session="s1")
        received = await collect_stream(chunks)

    assert isinstance(reply, LlmReply), reply
    assert [c.delta for c in received] == ["one", " two", " three", ""]
    assert [c.index for c in received] == [0, 1, 2, 3]
    assert [c.done for c in received] == [False, False, False, True]
    assert {c.request_id for c in received} == {reply.request_id}
    assert (reply.content, reply.prompt_tokens, reply.completion_tokens) == ("one two three", 7, 3)
    assert fake_llm.requests[0].body["stream_options"] == {"include_usage": True}, "usage was asked for"
    [commit] = rig.ledger.commits
    assert commit.actual_usd == reply.cost_usd == cost(PRIMARY_PRICE, 7, 3)


async def test_a_stream_without_usage_is_still_billed(legion_fleet: TestFleet, fake_llm: FakeLlmServer) -> None:
    fake_llm.script(Reply(text="one two three four five", report_usage=False))
    async with vault_rig(legion_fleet, fake_llm) as rig:
        chunks = await rig.listen("s1")
        reply = await rig.ask("primary", stream=True, session="s1")
        await collect_stream(chunks)
        events = [e for e in await rig.events() if isinstance(e, ModelCalled)]

    assert isinstance(reply, LlmReply), reply
    assert reply.prompt_tokens > 0 and reply.completion_tokens > 0, "tokens were counted"
    [commit] = rig.ledger.commits
    assert commit.actual_usd > 0
    assert commit.actual_usd == cost(PRIMARY_PRICE, commit.prompt_tokens, commit.completion_tokens)
    assert [(e.ok, e.cost_usd) for e in events] == [(True, commit.actual_usd)]


async def test_a_stream_that_breaks_before_the_first_token_fails_over(
    legion_fleet: TestFleet, fake_llm: FakeLlmServer
) -> None:
    fake_llm.script(Reply(text="never sent", disconnect_after=0), model="primary-model")
    fake_llm.script(Reply(text="from secondary", prompt_tokens=5, completion_tokens=2), model="secondary-model")
    async with vault_rig(legion_fleet, fake_llm) as rig:
        chunks = await rig.listen("s1")
        reply = await rig.ask("primary", stream=True, session="s1")
        received = await collect_stream(chunks)

    assert isinstance(reply, LlmReply), reply
    assert (reply.model, reply.content) == ("secondary", "from secondary")
    assert "".join(c.delta for c in received) == "from secondary"
    assert [r.model for r in fake_llm.requests] == ["primary-model", "secondary-model"]
    assert rig.ledger.commits[0].actual_usd == cost(SECONDARY_PRICE, 5, 2)


async def test_a_stream_that_breaks_after_tokens_bills_what_was_delivered(
    legion_fleet: TestFleet, fake_llm: FakeLlmServer
) -> None:
    """Another model would repeat the deltas already shown: no failover, an error, and a charge."""
    fake_llm.script(Reply(text="one two three four", disconnect_after=2), model="primary-model")
    async with vault_rig(legion_fleet, fake_llm) as rig:
        chunks = await rig.listen("s1")
        reply = await rig.ask("primary", stream=True, session="s1")
        received = await collect_stream(chunks)

    assert isinstance(reply, LlmError), reply
    assert reply.code == "provider"
    assert [c.delta for c in received] == ["one", " two", ""]
    assert [r.model for r in fake_llm.requests] == ["primary-model"]
    [commit] = rig.ledger.commits
    assert commit.prompt_tokens > 0 and commit.completion_tokens > 0
    assert commit.actual_usd == cost(PRIMARY_PRICE, commit.prompt_tokens, commit.completion_tokens)
    assert rig.ledger.releases == []


async def test_a_streamed_call_needs_a_session_token(legion_fleet: TestFleet, fake_llm: FakeLlmServer) -> None:
    async with vault_rig(legion_fleet, fake_llm) as rig:
        reply = await rig.ask("primary", stream=True)

    assert isinstance(reply, LlmError), reply
    assert reply.code == "invalid"
    assert "session" in reply.message
    assert fake_llm.requests == []


async def test_a_refused_streamed_call_still_ends_its_stream(legion_fleet: TestFleet, fake_llm: FakeLlmServer) -> None:
    async with vault_rig(legion_fleet, fake_llm, ledger_options={"grant": False, "reason": "spent"}) as rig:
        chunks = await rig.listen("s1")
        reply = await rig.ask("primary", stream=True, session="s1")
        received = await collect_stream(chunks)

    assert isinstance(reply, LlmError) and reply.code == "budget"
    assert [(c.delta, c.done, c.request_id) for c in received] == [("", True, reply.request_id)]
