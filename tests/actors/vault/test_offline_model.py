"""The built-in offline model (``model: legion/offline``): answered by the vault itself, through the same
path as every model (policy, ledger, ModelCalled, streaming), with no key, no price and no network."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest
from llm_rig import collect_stream, default_models, vault_rig

from legion.actors.vault.offline import LABEL, OFFLINE_MODEL, offline_reply, split_deltas
from legion.contracts import LlmError, LlmReply, ModelCalled
from legion.testing import FakeLlmServer, TestFleet

pytestmark = [pytest.mark.nats, pytest.mark.timeout(60)]


def _models(base_url: str) -> dict[str, Any]:
    # `key:` on the offline alias names a key nobody set: it is ignored, no key is needed
    return {**default_models(base_url), "offline": {"model": OFFLINE_MODEL, "key": "never-set"}}


AGENT = {"model": "offline", "allowed_models": ["offline", "primary"]}


async def test_an_offline_alias_answers_with_a_labelled_deterministic_reply(
    legion_fleet: TestFleet, fake_llm: FakeLlmServer
) -> None:
    async with vault_rig(legion_fleet, fake_llm, models=_models(fake_llm.base_url), agent_config=AGENT) as rig:
        first = await rig.ask("offline", content="What is  the plan?")
        second = await rig.ask("offline", content="What is  the plan?")
        other = await rig.ask("offline", content="something else")

    assert isinstance(first, LlmReply), first
    assert isinstance(second, LlmReply) and isinstance(other, LlmReply)
    assert first.content is not None and first.content.startswith(LABEL)
    assert "You said: What is the plan?." in first.content
    assert "Configure a model in legion.yaml" in first.content
    assert first.content == second.content, "the same conversation gives the same reply"
    assert other.content != first.content
    assert first.tool_calls == [] and first.finish_reason == "stop", "never a tool call: a task loop ends"
    assert first.model == "offline"
    assert first.cost_usd == Decimal(0)
    assert first.prompt_tokens > 0 and first.completion_tokens == (len(first.content) + 3) // 4
    assert fake_llm.requests == [], "no HTTP request left the vault"


async def test_an_offline_call_is_reserved_committed_at_zero_and_recorded(
    legion_fleet: TestFleet, fake_llm: FakeLlmServer
) -> None:
    async with vault_rig(legion_fleet, fake_llm, models=_models(fake_llm.base_url), agent_config=AGENT) as rig:
        reply = await rig.ask("offline")
        events = [e for e in await rig.events() if isinstance(e, ModelCalled)]

    assert isinstance(reply, LlmReply), reply
    [reserve] = rig.ledger.reserves
    assert reserve.estimate_usd == Decimal(0)
    [commit] = rig.ledger.commits
    assert commit.actual_usd == Decimal(0)
    assert (commit.prompt_tokens, commit.completion_tokens) == (reply.prompt_tokens, reply.completion_tokens)
    assert commit.model == "offline"
    [called] = events
    assert (called.model, called.provider_model, called.ok) == ("offline", OFFLINE_MODEL, True)
    assert called.cost_usd == Decimal(0)
    assert called.prompt_tokens == reply.prompt_tokens


async def test_an_offline_reply_streams_in_a_few_chunks(legion_fleet: TestFleet, fake_llm: FakeLlmServer) -> None:
    async with vault_rig(legion_fleet, fake_llm, models=_models(fake_llm.base_url), agent_config=AGENT) as rig:
        chunks = await rig.listen("s1")
        reply = await rig.ask("offline", content="stream me", stream=True, session="s1")
        received = await collect_stream(chunks)

    assert isinstance(reply, LlmReply), reply
    assert 2 < len(received) <= 6
    assert received[-1].done and received[-1].delta == ""
    assert not any(c.done for c in received[:-1])
    assert [c.index for c in received] == list(range(len(received)))
    assert "".join(c.delta for c in received) == reply.content
    assert fake_llm.requests == []


async def test_the_offline_model_still_obeys_the_agents_allowed_models(
    legion_fleet: TestFleet, fake_llm: FakeLlmServer
) -> None:
    async with vault_rig(
        legion_fleet, fake_llm, models=_models(fake_llm.base_url), agent_config={"model": "primary"}
    ) as rig:
        reply = await rig.ask("offline")

    assert isinstance(reply, LlmError), reply
    assert reply.code == "policy"
    assert rig.ledger.reserves == []


def test_the_reply_is_a_pure_function_of_the_last_user_message() -> None:
    convo = [
        {"role": "system", "content": "be brief"},
        {"role": "user", "content": "first"},
        {"role": "assistant", "content": "ok"},
        {"role": "user", "content": [{"type": "text", "text": "second"}, {"type": "image_url", "image_url": {}}]},
    ]
    assert offline_reply(convo) == offline_reply(list(convo))
    assert "You said: second." in offline_reply(convo)
    assert "You said nothing." in offline_reply([{"role": "system", "content": "x"}])
    text = offline_reply(convo)
    assert "".join(split_deltas(text)) == text
