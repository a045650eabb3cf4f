"""A vault, a fake ledger and an agent on the shared test server, with names unique to one test.

    async with vault_rig(legion_fleet, fake_llm) as rig:
        reply = await rig.ask("primary")

The vault serves only this test's agents' subjects (not ``legion.vault.*.llm``) so that vaults of
other tests on the same server never answer for it. The fake ledger speaks exactly the Reserve /
Reserved / Commit / Release / LedgerAck contracts on ``legion.svc.<unique ledger>.<op>``.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import uuid
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from nats.aio.msg import Msg

from legion.actors.vault import CredentialStore, ProviderKeys, Vault, VaultSpec, host_spec, vault_permissions
from legion.broker import Broker, service_permissions
from legion.contracts import (
    Commit,
    LedgerAck,
    LlmChunk,
    LlmError,
    LlmReply,
    LlmRequest,
    Message,
    Release,
    Reserve,
    Reserved,
    decode,
    encode,
)
from legion.contracts import headers as h
from legion.contracts import subjects as subj
from legion.runtime.config import FleetConfig
from legion.runtime.host.actor import Actor, Context, handler
from legion.runtime.host.actor_host import ActorHost, HostSpec, ServiceSpec
from legion.testing import AgentHandle, FakeLlmServer, TestFleet, read_stream

KEY_NAME = "fake"
KEY_ENV = "LEGION_SYSTEM_FAKE"
PRIMARY_PRICE = (Decimal(2), Decimal(4))  # USD per million input / output tokens
SECONDARY_PRICE = (Decimal(1), Decimal(1))
MILLION = Decimal(1_000_000)


def cost(price: tuple[Decimal, Decimal], prompt: int, completion: int) -> Decimal:
    return (price[0] * prompt + price[1] * completion) / MILLION


def default_models(base_url: str) -> dict[str, Any]:
    return {
        "primary": {
            "model": "openai/primary-model",
            "api_base": base_url,
            "key": KEY_NAME,
            "price": {"input_per_mtok": str(PRIMARY_PRICE[0]), "output_per_mtok": str(PRIMARY_PRICE[1])},
            "fallbacks": ["secondary"],
        },
        "secondary": {
            "model": "openai/secondary-model",
            "api_base": base_url,
            "key": KEY_NAME,
            "price": {"input_per_mtok": str(SECONDARY_PRICE[0]), "output_per_mtok": str(SECONDARY_PRICE[1])},
        },
    }


class FakeClock:
    """Monotonic seconds that move only when a test says so."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class FakeLedger(Actor):
    """Records what the vault asks; grants or refuses every reservation; may stop answering settlements."""

    kind = "ledger"

    def __init__(self, name: str, *, grant: bool = True, reason: str = "", answer_settlements: bool = True) -> None:
        super().__init__(name)
        self.grant = grant
        self.reason = reason
        self.answer_settlements = answer_settlements
        self.reserves: list[Reserve] = []
        self.commits: list[Commit] = []
        self.releases: list[Release] = []
        self._never = asyncio.Event()

    @handler
    async def reserve(self, req: Reserve, ctx: Context) -> Reserved:
        self.reserves.append(req)
        return Reserved(reservation_id=req.reservation_id, granted=self.grant, reason=self.reason)

    @handler
    async def commit(self, req: Commit, ctx: Context) -> LedgerAck:
        if not self.answer_settlements:
            await self._never.wait()
        self.commits.append(req)
        return LedgerAck(reservation_id=req.reservation_id, ok=True)

    @handler
    async def release(self, req: Release, ctx: Context) -> LedgerAck:
        if not self.answer_settlements:
            await self._never.wait()
        self.releases.append(req)
        return LedgerAck(reservation_id=req.reservation_id, ok=True)


@dataclass
class VaultRig:
    fleet: TestFleet
    llm: FakeLlmServer
    agent: AgentHandle
    others: list[AgentHandle]
    client: Broker
    vaults: list[Vault]
    hosts: list[ActorHost]
    ledger: FakeLedger
    clock: FakeClock
    secret: str
    config: FleetConfig

    @property
    def vault(self) -> Vault:
        return self.vaults[0]

    @property
    def vault_name(self) -> str:
        return self.vault.name

    def request(self, model: str = "primary", *, content: str = "hello there", **fields: Any) -> LlmRequest:
        return LlmRequest(
            request_id=uuid.uuid4().hex,
            model=model,
            messages=[{"role": "user", "content": content}],
            **fields,
        )

    async def ask(
        self,
        model: str = "primary",
        *,
        content: str = "hello there",
        client: Broker | None = None,
        agent: str | None = None,
        **fields: Any,
    ) -> LlmReply | LlmError:
        req = self.request(model, content=content, **fields)
        return await self.send(req, client=client, agent=agent)

    async def send(
        self,
        req: LlmRequest,
        *,
        client: Broker | None = None,
        agent: str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> LlmReply | LlmError:
        subject = subj.VAULT_LLM.render(agent=agent or self.agent.name)
        data, hdrs = encode(req)
        msg = await (client or self.client).request_raw(subject, data, headers={**hdrs, **(headers or {})}, timeout=20)
        reply = decode(msg.data, msg.headers, strict=True)
        assert isinstance(reply, LlmReply | LlmError), reply
        return reply

    async def listen(self, session: str) -> asyncio.Queue[LlmChunk]:
        """Collect the token stream of ``session`` (as a CLI or bridge in LEGION would)."""
        queue: asyncio.Queue[LlmChunk] = asyncio.Queue()

        async def on_chunk(msg: Msg) -> None:
            queue.put_nowait(decode(msg.data, msg.headers, strict=True, type=LlmChunk))

        await self.fleet.admin.subscribe(subj.STREAM.render(agent=self.agent.name, session=session), on_chunk)
        return queue

    async def events(self) -> list[Message]:
        """Every event the vault appended to EVENTS, oldest first."""
        msgs = await read_stream(self.fleet.admin, "EVENTS", subj.EVENTS.wildcard(source=self.vault_name))
        out = []
        for m in msgs:
            decoded = decode(m.data, m.headers, strict=True)
            assert isinstance(decoded, Message)
            out.append(decoded)
        return out


async def collect_stream(queue: asyncio.Queue[LlmChunk], *, timeout: float = 10) -> list[LlmChunk]:
    """Chunks until the one marked ``done``."""
    out: list[LlmChunk] = []
    async with asyncio.timeout(timeout):
        while not out or not out[-1].done:
            out.append(await queue.get())
    return out


def ledger_host(fleet: TestFleet, ledger: FakeLedger, broker: Broker) -> ActorHost:
    spec = HostSpec(
        services=(ServiceSpec(subject=subj.SERVICE.wildcard(service=ledger.name), queue=ledger.name),),
        heartbeat_s=60,
        grace_s=0.2,
        announce=False,
    )
    return ActorHost(ledger, broker, spec)


async def start_ledger(fleet: TestFleet, ledger: FakeLedger) -> ActorHost:
    creds = fleet.server.auth.issue_service(
        ledger.name, service_permissions(ledger.name, serves=[subj.SERVICE.wildcard(service=ledger.name)])
    )
    return ledger_host(fleet, ledger, await fleet.connect(creds, name=ledger.name))


@contextlib.asynccontextmanager
async def running(*hosts: ActorHost) -> AsyncIterator[None]:
    """Run ``hosts`` until the block ends, then stop them in order."""
    runs = [asyncio.create_task(host.run()) for host in hosts]
    try:
        for host in hosts:
            await asyncio.wait_for(host.ready.wait(), 20)
        yield
    finally:
        for host in hosts:
            host.stop()
        await asyncio.gather(*runs, return_exceptions=True)


@contextlib.asynccontextmanager
async def vault_rig(
    fleet: TestFleet,
    llm: FakeLlmServer,
    *,
    agent_config: Mapping[str, Any] | None = None,
    models: Mapping[str, Any] | None = None,
    other_agents: Sequence[str] = (),
    ledger_options: Mapping[str, Any] | None = None,
    spec: Mapping[str, Any] | None = None,
    instances: int = 1,
    other_config: Mapping[str, Any] | None = None,
    credentials: CredentialStore | None = None,
    runtime: Mapping[str, Any] | None = None,
) -> AsyncIterator[VaultRig]:
    """One agent (``alpha-<id>``), a fake ledger and ``instances`` vaults in one queue group.

    ``other_config`` is the legion.yaml entry of each of ``other_agents``; ``credentials`` the
    agent-tier credentials of the vaults' HTTP proxy; ``runtime`` legion.yaml's ``runtime:``.
    """
    agent = await fleet.add_agent("alpha")
    others = [await fleet.add_agent(base) for base in other_agents]
    agents = (agent, *others)
    agents_cfg: dict[str, Any] = {agent.name: dict(agent_config or {"model": "primary"})}
    for other in others:
        agents_cfg[other.name] = dict(other_config or {"model": "primary"})
    config = FleetConfig.model_validate(
        {"models": dict(models or default_models(llm.base_url)), "agents": agents_cfg, "runtime": dict(runtime or {})}
    )
    secret = f"sk-test-SECRET-{uuid.uuid4()}"
    keys = ProviderKeys.load(config, environ={KEY_ENV: secret})

    ledger_name = fleet.name("ledger")
    vault_name = fleet.name("vault")
    fake_ledger = FakeLedger(ledger_name, **dict(ledger_options or {}))
    served = [t.render(agent=a.name) for a in agents for t in (subj.VAULT_LLM, subj.VAULT_HTTP, subj.VAULT_BUDGET)]
    vault_creds = fleet.server.auth.issue_service(
        vault_name, vault_permissions(vault_name, ledger_service=ledger_name, serves=served)
    )
    clock = FakeClock()
    settings: dict[str, Any] = {
        "ledger_service": ledger_name,
        "agents_account": fleet.server.auth.keys.agents.public_key,
        **dict(spec or {}),
    }
    vault_spec = VaultSpec(**settings)
    vaults = [
        Vault(vault_name, config, keys, vault_spec, credentials=credentials, clock=clock) for _ in range(instances)
    ]
    hosts = [await start_ledger(fleet, fake_ledger)]
    vault_spec_host = dataclasses.replace(host_spec(agents=[a.name for a in agents]), heartbeat_s=60)
    for vault in vaults:
        hosts.append(ActorHost(vault, await fleet.connect(vault_creds, name=vault_name), vault_spec_host))
    async with running(*hosts):
        client = await fleet.connect(agent.creds, name=f"conn-{agent.name}")
        yield VaultRig(
            fleet=fleet,
            llm=llm,
            agent=agent,
            others=others,
            client=client,
            vaults=vaults,
            hosts=hosts[1:],
            ledger=fake_ledger,
            clock=clock,
            secret=secret,
            config=config,
        )


def with_forged_info(info: Mapping[str, Any]) -> dict[str, str]:
    """A client-sent ``Nats-Request-Info`` header (the server must overwrite it)."""
    return {h.REQUEST_INFO: json.dumps(dict(info))}
