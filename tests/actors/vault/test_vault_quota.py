"""Per-agent quotas and the fair queue of the vault, on a real nats-server with the real vault.

The fake model holds the flooding agent's calls (``Reply(gate=...)``) so they stay in flight; every
assertion is a count (calls at the provider, calls answered), never a duration.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable, Sequence
from typing import Any

import pytest
from llm_rig import VaultRig, vault_rig

from legion.contracts import HttpError, HttpRequest, HttpResponse, LlmError, LlmRefused, LlmReply, decode, encode
from legion.contracts import subjects as subj
from legion.testing import FakeLlmServer, Reply, TestFleet

pytestmark = [pytest.mark.nats, pytest.mark.timeout(60)]

HELD = "primary-model"  # the flooding agent's model on the wire: held at the fake server
FREE = "secondary"  # the other agent's alias: answered at once
POLL_S = 0.005  # between two reads of a counter that has no event, bounded by the deadline


async def eventually(check: Callable[[], bool], *, timeout: float = 10, what: str = "") -> None:
    """Wait until ``check()`` holds, else fail after ``timeout`` (Temporal's assert_eventually: the
    scheduler's queue length is a counter with no event of its own)."""
    try:
        async with asyncio.timeout(timeout):
            while not check():  # noqa: ASYNC110 - polls a counter that has no event; bounded by the deadline
                await asyncio.sleep(POLL_S)
    except TimeoutError:
        raise AssertionError(f"not within {timeout}s: {what}") from None


def flood(rig: VaultRig, n: int) -> list[asyncio.Task[LlmReply | LlmError]]:
    return [asyncio.create_task(rig.ask("primary")) for _ in range(n)]


def hold(llm: FakeLlmServer) -> asyncio.Event:
    gate = asyncio.Event()
    llm.always(Reply(text="slow answer", gate=gate), model=HELD)
    return gate


async def finish(gate: asyncio.Event, tasks: Sequence[asyncio.Task[LlmReply | LlmError]]) -> list[LlmReply | LlmError]:
    gate.set()
    return list(await asyncio.gather(*tasks))


async def test_another_agents_call_is_answered_while_one_agents_backlog_waits(
    legion_fleet: TestFleet, fake_llm: FakeLlmServer
) -> None:
    """More calls from alpha than the old shared 64 slots; beta's single call still goes first."""
    cap, n = 4, 120
    alpha = {"model": "primary", "quota": {"concurrency": cap, "queue": n, "rate_per_s": None}}
    gate = hold(fake_llm)
    async with vault_rig(legion_fleet, fake_llm, agent_config=alpha, other_agents=["beta"]) as rig:
        beta = rig.others[0]
        beta_client = await rig.fleet.connect(beta.creds, name=f"conn-{beta.name}")
        tasks = flood(rig, n)
        await fake_llm.wait_for_requests(cap)
        await eventually(lambda: rig.vault.scheduler.waiting(rig.agent.name, "llm") == n - cap, what="alpha queued")

        reply = await rig.ask(FREE, client=beta_client, agent=beta.name)
        unanswered = sum(not t.done() for t in tasks)

        replies = await finish(gate, tasks)

    assert isinstance(reply, LlmReply), reply
    assert unanswered == n, "beta was answered while every one of alpha's calls was still waiting"
    assert all(isinstance(r, LlmReply) for r in replies), "alpha's backlog is served, not dropped"


async def test_an_agent_never_has_more_calls_at_the_provider_than_its_cap(
    legion_fleet: TestFleet, fake_llm: FakeLlmServer
) -> None:
    cap, n = 3, 20
    alpha = {"model": "primary", "quota": {"concurrency": cap, "queue": n, "rate_per_s": None}}
    gate = hold(fake_llm)
    async with vault_rig(legion_fleet, fake_llm, agent_config=alpha) as rig:
        tasks = flood(rig, n)
        await fake_llm.wait_for_requests(cap)
        await eventually(lambda: rig.vault.scheduler.waiting(rig.agent.name, "llm") == n - cap, what="queued")
        at_provider = fake_llm.in_flight
        replies = await finish(gate, tasks)

    assert at_provider == cap
    assert all(isinstance(r, LlmReply) for r in replies)
    assert len(fake_llm.requests) == n
    assert fake_llm.max_in_flight == cap, "never more than the cap at once, also while the queue drained"


async def test_calls_past_the_agents_queue_are_refused_busy_and_retryable(
    legion_fleet: TestFleet, fake_llm: FakeLlmServer
) -> None:
    cap, queue, n = 2, 3, 10
    alpha = {"model": "primary", "quota": {"concurrency": cap, "queue": queue}}
    gate = hold(fake_llm)
    async with vault_rig(legion_fleet, fake_llm, agent_config=alpha) as rig:
        tasks = flood(rig, n)
        done: set[asyncio.Task[LlmReply | LlmError]] = set()
        async with asyncio.timeout(20):
            while len(done) < n - cap - queue:
                finished, _ = await asyncio.wait(set(tasks) - done, return_when=asyncio.FIRST_COMPLETED)
                done |= finished
        refused = [t.result() for t in done]
        replies = await finish(gate, tasks)
        events = await rig.events()

    assert len(refused) == n - cap - queue
    for r in refused:
        assert isinstance(r, LlmError), r
        assert (r.code, r.retryable) == ("busy", True)
        assert f"agents.{rig.agent.name}.quota.concurrency" in r.message, r.message
        assert f"agents.{rig.agent.name}.quota.queue" in r.message, r.message
    assert sum(isinstance(r, LlmReply) for r in replies) == cap + queue
    assert len(fake_llm.requests) == cap + queue, "refused calls never reached the provider"
    assert not [e for e in events if isinstance(e, LlmRefused)], "quota refusals are logged, not recorded"


async def test_past_the_rate_limit_and_the_queue_a_call_is_refused_rate_limited(
    legion_fleet: TestFleet, fake_llm: FakeLlmServer
) -> None:
    alpha = {"model": "primary", "quota": {"rate_per_s": 0.001, "burst": 2, "queue": 0}}
    async with vault_rig(legion_fleet, fake_llm, agent_config=alpha) as rig:
        replies = [await rig.ask(FREE) for _ in range(3)]

    first, second, third = replies
    assert isinstance(first, LlmReply) and isinstance(second, LlmReply), replies
    assert isinstance(third, LlmError), third
    assert (third.code, third.retryable) == ("rate_limited", True)
    assert f"agents.{rig.agent.name}.quota.rate_per_s" in third.message, third.message
    assert len(fake_llm.requests) == 2


async def test_the_default_quota_names_the_fleet_key(legion_fleet: TestFleet, fake_llm: FakeLlmServer) -> None:
    runtime = {"vault": {"agent_quota": {"rate_per_s": 0.001, "burst": 1, "queue": 0}}}
    async with vault_rig(legion_fleet, fake_llm, runtime=runtime) as rig:
        replies = [await rig.ask(FREE) for _ in range(2)]

    assert isinstance(replies[0], LlmReply)
    assert isinstance(replies[1], LlmError) and replies[1].code == "rate_limited"
    assert "runtime.vault.agent_quota.rate_per_s" in replies[1].message


async def test_http_calls_have_their_own_lane_and_the_same_refusal(
    legion_fleet: TestFleet, fake_llm: FakeLlmServer
) -> None:
    alpha = {
        "model": "primary",
        "allowed_apis": ["llm", "http"],
        "quota": {"rate_per_s": 0.001, "burst": 1, "queue": 0},
    }
    async with vault_rig(legion_fleet, fake_llm, agent_config=alpha) as rig:
        first = await _http(rig)
        second = await _http(rig)
        llm = await rig.ask(FREE)

    assert isinstance(first, HttpError) and first.code == "ssrf", "admitted, then refused by the SSRF guard"
    assert isinstance(second, HttpError), second
    assert (second.code, second.retryable) == ("rate_limited", True)
    assert "for http calls" in second.message
    assert isinstance(llm, LlmReply), "the llm lane has its own tokens"


async def _http(rig: VaultRig) -> Any:
    req = HttpRequest(request_id=uuid.uuid4().hex, url="http://127.0.0.1:9/")
    data, headers = encode(req)
    msg = await rig.client.request_raw(subj.VAULT_HTTP.render(agent=rig.agent.name), data, headers=headers, timeout=20)
    reply = decode(msg.data, msg.headers, strict=True)
    assert isinstance(reply, HttpResponse | HttpError), reply
    return reply
