"""A vault that is down or restarting does not fail the agent's call: the agent asks again with the
same request id until a vault answers (or its retry window ends, then a retryable ModelError)."""

from __future__ import annotations

import asyncio

import pytest
from nats.aio.msg import Msg

from legion.actors.agent.llm import ModelError, VaultClient
from legion.contracts import decode
from legion.contracts import subjects as subj
from legion.contracts.codec import encode
from legion.contracts.vault import LlmReply, LlmRequest
from legion.testing import TestFleet

pytestmark = pytest.mark.nats


async def test_the_call_goes_through_once_a_vault_is_back(legion_fleet: TestFleet) -> None:
    agent = await legion_fleet.add_agent("retry")
    broker = await legion_fleet.connect(agent.creds, name=agent.name)
    retried = asyncio.Event()
    seen: list[str] = []
    client = VaultClient(
        broker, agent.name, "m", timeout_s=5, on_retry=lambda _n, why: (seen.append(why), retried.set())
    )
    call = asyncio.create_task(client.complete([{"role": "user", "content": "hi"}]))
    await asyncio.wait_for(retried.wait(), 10)  # no vault: no responders, the agent backs off
    ids: list[str] = []

    async def vault(msg: Msg) -> None:  # the restarted vault
        request = decode(msg.data, msg.headers, type=LlmRequest)
        ids.append(request.request_id)
        data, headers = encode(LlmReply(request_id=request.request_id, model="m", content="back"))
        await legion_fleet.admin.nc.publish(msg.reply, data, headers=headers)

    await legion_fleet.admin.subscribe(subj.VAULT_LLM.render(agent=agent.name), vault)
    reply = await asyncio.wait_for(call, 30)
    assert reply.content == "back"
    assert seen[0] == "unavailable" and len(ids) == 1


async def test_after_the_window_the_error_is_retryable(legion_fleet: TestFleet) -> None:
    agent = await legion_fleet.add_agent("noretry")
    broker = await legion_fleet.connect(agent.creds, name=agent.name)
    client = VaultClient(broker, agent.name, "m", timeout_s=2, retry_window_s=1.0)
    with pytest.raises(ModelError) as caught:
        await client.complete([{"role": "user", "content": "hi"}])
    assert caught.value.code == "unavailable" and caught.value.retryable
