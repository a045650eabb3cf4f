"""The real vault and the real ledger, hosted in the test process on the shared test server, with one
agent whose daily budget pays for exactly ``CALLS_IN_BUDGET`` model calls.

    async with money_fleet(legion_fleet, llm, tmp_path) as money:
        reply = await money.ask()

Names are unique to one test: the ledger serves ``legion.svc.<unique ledger>.*`` and the vault only
this test's agent's subjects, so actors of other tests on the same server never answer for them.
Every call asks for ``MAX_TOKENS`` and the fake model reports exactly the prompt tokens the vault
counts and ``MAX_TOKENS`` completion tokens, so a call's reservation (prompt + max_tokens at the
configured price) and its actual cost are the same known amount, :data:`CALL_USD`.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any, Final

from nats.aio.msg import Msg

from legion.actors.ledger import Budgets, Ledger, LedgerSpec, ledger_host_spec, ledger_permissions
from legion.actors.vault import ProviderKeys, Vault, VaultSpec, host_spec, vault_permissions
from legion.actors.vault.llm import count_prompt_tokens
from legion.broker import Broker
from legion.contracts import (
    CostsQuery,
    CostsReport,
    LlmError,
    LlmReply,
    LlmRequest,
    Message,
    Release,
    Reserve,
    Reserved,
)
from legion.contracts import subjects as subj
from legion.runtime.config import FleetConfig
from legion.runtime.host.actor_host import ActorHost
from legion.testing import AgentHandle, FakeLlmServer, Reply, TestFleet, read_stream

MILLION: Final = Decimal(1_000_000)
PRICE_IN: Final = Decimal(3)  # USD per million prompt tokens
PRICE_OUT: Final = Decimal(15)  # USD per million completion tokens
MAX_TOKENS: Final = 200
PROVIDER_MODEL: Final = "openai/metered-model"
MESSAGES: Final = [{"role": "user", "content": "Summarise the ledger in one line."}]
PROMPT_TOKENS: Final = count_prompt_tokens(PROVIDER_MODEL, MESSAGES, None)
"""What the vault counts for :data:`MESSAGES` (its estimate) and what the fake model reports."""
CALL_USD: Final = (PRICE_IN * PROMPT_TOKENS + PRICE_OUT * MAX_TOKENS) / MILLION
"""The reservation of one call, and its actual cost."""
CALLS_IN_BUDGET: Final = 10
BUDGET_USD: Final = CALL_USD * CALLS_IN_BUDGET
KEY_NAME: Final = "metered"
KEY_ENV: Final = "LEGION_SYSTEM_METERED"


@dataclass
class Call:
    """One request as its caller saw it: the reply and how long it took to arrive."""

    reply: LlmReply | LlmError
    latency_s: float


@dataclass
class MoneyFleet:
    fleet: TestFleet
    llm: FakeLlmServer
    agent: AgentHandle
    client: Broker
    ledger: Ledger
    ledger_service: str
    vault: Vault
    secret: str
    config: FleetConfig

    async def ask(self) -> Call:
        """One LLM call on the agent's own subject, with its own connection; measures its latency."""
        req = LlmRequest(request_id=uuid.uuid4().hex, model="metered", messages=MESSAGES, max_tokens=MAX_TOKENS)
        started = time.perf_counter()
        reply = await self.client.request(subj.VAULT_LLM.render(agent=self.agent.name), req, timeout=30)
        latency = time.perf_counter() - started
        assert isinstance(reply, LlmReply | LlmError), reply
        return Call(reply=reply, latency_s=latency)

    async def ledger_call(self, op: str, msg: Message) -> Message:
        """A request to the ledger service, as the CLI makes it (admin connection)."""
        return await self.fleet.admin.request(subj.SERVICE.render(service=self.ledger_service, op=op), msg, timeout=10)

    async def costs(self) -> CostsReport:
        report = await self.ledger_call("costs", CostsQuery(agent=self.agent.name))
        assert isinstance(report, CostsReport), report
        return report

    async def reserve(self, usd: Decimal) -> Reserved:
        req = Reserve(reservation_id=uuid.uuid4().hex, agent=self.agent.name, estimate_usd=usd)
        reply = await self.ledger_call("reserve", req)
        assert isinstance(reply, Reserved), reply
        return reply

    async def release(self, reservation_id: str) -> None:
        await self.ledger_call("release", Release(reservation_id=reservation_id, reason="test probe"))


async def last_seq(admin: Broker, stream: str) -> int:
    info = await admin.js_api(f"STREAM.INFO.{stream}")
    return int(info["state"]["last_seq"])


async def read_after(admin: Broker, stream: str, seq: int) -> list[Msg]:
    """Every message ``stream`` stored after sequence ``seq``, read back with an ephemeral consumer."""
    return await read_stream(admin, stream, after_seq=seq)


@contextlib.asynccontextmanager
async def running(*hosts: ActorHost) -> AsyncIterator[None]:
    """Run ``hosts`` until the block ends, then stop them in reverse order (the vault before the ledger)."""
    runs = [asyncio.create_task(host.run()) for host in hosts]
    try:
        for host, run in zip(hosts, runs, strict=True):
            ready = asyncio.ensure_future(host.ready.wait())
            done, _ = await asyncio.wait({ready, run}, timeout=60, return_when=asyncio.FIRST_COMPLETED)
            if run in done:
                ready.cancel()
                run.result()  # raises what on_start raised
            assert ready in done, f"{host.actor.name} did not start within 60 s"
        yield
    finally:
        for host in reversed(hosts):
            host.stop()
        await asyncio.gather(*runs, return_exceptions=True)


def fleet_config(llm: FakeLlmServer, agent: str) -> FleetConfig:
    price = {"input_per_mtok": str(PRICE_IN), "output_per_mtok": str(PRICE_OUT)}
    model = {"model": PROVIDER_MODEL, "api_base": llm.base_url, "key": KEY_NAME, "price": price}
    return FleetConfig.model_validate(
        {
            "models": {"metered": model},
            "agents": {agent: {"model": "metered", "budget": {"daily_usd": str(BUDGET_USD)}}},
            # all 100 calls reach the ledger at once: the budget, not the vault's per-agent quota, decides
            "runtime": {"vault": {"concurrency": 128, "agent_quota": {"concurrency": 128, "rate_per_s": None}}},
        }
    )


@contextlib.asynccontextmanager
async def money_fleet(fleet: TestFleet, llm: FakeLlmServer, tmp_path: Path) -> AsyncIterator[MoneyFleet]:
    """An agent, the real ledger and the real vault, each connected with its own credentials."""
    agent = await fleet.add_agent("payer")
    config = fleet_config(llm, agent.name)
    secret = f"sk-e2e-SECRET-{uuid.uuid4()}"
    llm.always(Reply(text="one line", prompt_tokens=PROMPT_TOKENS, completion_tokens=MAX_TOKENS))

    ledger_name = service = fleet.name("ledger")
    ledger_creds = fleet.server.auth.issue_service(ledger_name, ledger_permissions(ledger_name, service=service))
    ledger = Ledger(ledger_name, LedgerSpec(db_path=tmp_path / "ledger.db", budgets=Budgets.from_config(config)))
    ledger_host = ActorHost(ledger, await fleet.connect(ledger_creds, name=ledger_name), ledger_host_spec(service))

    vault_name = fleet.name("vault")
    vault_spec_host = dataclasses.replace(host_spec(agents=[agent.name]), heartbeat_s=60)
    served = [s.subject for s in vault_spec_host.services]
    vault_creds = fleet.server.auth.issue_service(
        vault_name, vault_permissions(vault_name, ledger_service=service, serves=served)
    )
    spec = VaultSpec(ledger_service=service, agents_account=fleet.server.auth.keys.agents.public_key)
    vault = Vault(vault_name, config, ProviderKeys.load(config, environ={KEY_ENV: secret}), spec)
    vault_host = ActorHost(vault, await fleet.connect(vault_creds, name=vault_name), vault_spec_host)

    async with running(ledger_host, vault_host):
        client = await fleet.connect(agent.creds, name=f"conn-{agent.name}")
        yield MoneyFleet(
            fleet=fleet,
            llm=llm,
            agent=agent,
            client=client,
            ledger=ledger,
            ledger_service=service,
            vault=vault,
            secret=secret,
            config=config,
        )


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def describe(calls: list[Call]) -> dict[str, Any]:
    refused = [c.latency_s for c in calls if isinstance(c.reply, LlmError)]
    served = [c.latency_s for c in calls if isinstance(c.reply, LlmReply)]
    return {
        "served": len(served),
        "refused": len(refused),
        "refused_p50_ms": round(percentile(refused, 0.5) * 1000, 1) if refused else None,
        "refused_max_ms": round(max(refused) * 1000, 1) if refused else None,
        "served_min_ms": round(min(served) * 1000, 1) if served else None,
        "served_max_ms": round(max(served) * 1000, 1) if served else None,
    }
