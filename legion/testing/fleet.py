"""The real ledger and vault hosted in the test process, and agents of the real agent actor, on the
shared test server. Agents run in-process (an ActorHost with the agent's own credentials) or as their
own OS process (``python -m legion.actors.agent``) when a test kills them.

    async with agent_fleet(legion_fleet, fake_llm, tmp_path) as rig:
        await rig.assign("write the report")
        done = await rig.probe.next(TaskCompleted)
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import os
import shutil
import signal
import sys
import uuid
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any, TypeVar

import yaml
from nats.aio.msg import Msg

from legion.actors.agent.actor import Agent, agent_host_spec
from legion.actors.agent.spec import AgentSpec
from legion.actors.ledger import Budgets, Ledger, LedgerSpec, ledger_host_spec, ledger_permissions
from legion.actors.vault import ProviderKeys, Vault, VaultSpec, host_spec, vault_permissions
from legion.contracts import AssignTask, Message, decode
from legion.contracts import subjects as subj
from legion.runtime.config import FleetConfig
from legion.runtime.host.actor_host import ActorHost
from legion.testing import AgentHandle, FakeLlmServer, TestFleet

M = TypeVar("M", bound=Message)
KEY_ENV = "LEGION_SYSTEM_FAKE"
PRICE = {"input_per_mtok": "1", "output_per_mtok": "2"}


class Probe:
    """Every event published under the agents' sources, as it happens (a core subscription in LEGION)."""

    def __init__(self) -> None:
        self.events: list[tuple[str, Message]] = []
        self._changed = asyncio.Condition()

    async def on_msg(self, msg: Msg) -> None:
        decoded = decode(msg.data, msg.headers)
        if isinstance(decoded, Message):
            async with self._changed:
                self.events.append((msg.subject, decoded))
                self._changed.notify_all()

    def of(self, kind: type[M], where: Callable[[M], bool] = lambda _m: True) -> list[M]:
        return [m for _s, m in self.events if isinstance(m, kind) and where(m)]

    async def next(self, kind: type[M], where: Callable[[M], bool] = lambda _m: True, *, timeout: float = 30) -> M:
        """The first event of ``kind`` matching ``where`` (already seen or still to come)."""
        async with asyncio.timeout(timeout), self._changed:
            await self._changed.wait_for(lambda: bool(self.of(kind, where)))
        return self.of(kind, where)[0]


@dataclass
class AgentFleet:
    fleet: TestFleet
    llm: FakeLlmServer
    dir: Path
    config: FleetConfig
    agents: list[AgentHandle]
    project: str
    probe: Probe
    ledger_service: str
    hosts: dict[str, tuple[ActorHost, asyncio.Task[None]]] = field(default_factory=dict)
    procs: dict[str, asyncio.subprocess.Process] = field(default_factory=dict)

    @property
    def agent(self) -> AgentHandle:
        return self.agents[0]

    def workspace(self, agent: AgentHandle | None = None) -> Path:
        return self.dir / "agents" / (agent or self.agent).name

    async def send(self, command: Message, agent: AgentHandle | None = None) -> None:
        subject = subj.AGENT_INBOX.render(agent=(agent or self.agent).name)
        await self.fleet.admin.js_publish(subject, command)

    async def assign(self, text: str, *, task_id: str | None = None, agent: AgentHandle | None = None) -> str:
        task_id = task_id or uuid.uuid4().hex[:12]
        await self.send(AssignTask(task_id=task_id, text=text, requested_by="test"), agent)
        return task_id

    # -- in-process agents ---------------------------------------------------------------------
    async def start(self, agent: AgentHandle | None = None) -> Agent:
        handle = agent or self.agent
        spec = AgentSpec.from_config(handle.name, self.config, self.dir)
        actor = Agent(spec)
        broker = await self.fleet.connect(handle.creds, name=handle.name)
        host = ActorHost(actor, broker, dataclasses.replace(agent_host_spec(spec), grace_s=0.5))
        run = asyncio.create_task(host.run())
        ready = asyncio.ensure_future(host.ready.wait())
        done, _ = await asyncio.wait({ready, run}, timeout=30, return_when=asyncio.FIRST_COMPLETED)
        if run in done:
            ready.cancel()
            run.result()
        assert ready in done, f"agent {handle.name} did not start"
        self.hosts[handle.name] = (host, run)
        return actor

    async def stop(self, agent: AgentHandle | None = None) -> None:
        host, run = self.hosts.pop((agent or self.agent).name)
        host.stop()
        await asyncio.gather(run, return_exceptions=True)

    # -- agents as processes -------------------------------------------------------------------
    async def spawn(self, agent: AgentHandle | None = None) -> asyncio.subprocess.Process:
        """``python -m legion.actors.agent`` with only its credentials file; ready on its ActorStarted."""
        handle = agent or self.agent
        seen = len(self.probe.of(_started(), lambda e: e.actor == handle.name))
        env = {k: v for k, v in os.environ.items() if not k.startswith(("LEGION_SYSTEM_", "LEGION_CRED_"))}
        log = (self.dir / ".legion" / "logs" / f"{handle.name}.log").open("ab")
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "legion.actors.agent", "--fleet-dir", str(self.dir), "--name", handle.name,
            env=env, stdout=log, stderr=log, stdin=asyncio.subprocess.DEVNULL,
        )  # fmt: skip
        log.close()
        self.procs[handle.name] = proc
        async with asyncio.timeout(60):
            async with self.probe._changed:
                await self.probe._changed.wait_for(
                    lambda: (
                        len(self.probe.of(_started(), lambda e: e.actor == handle.name)) > seen
                        or proc.returncode is not None
                    )
                )
        assert proc.returncode is None, (self.dir / ".legion" / "logs" / f"{handle.name}.log").read_text()
        return proc

    async def kill(self, agent: AgentHandle | None = None) -> None:
        proc = self.procs.pop((agent or self.agent).name)
        proc.send_signal(signal.SIGKILL)
        await proc.wait()

    async def close(self) -> None:
        for name in list(self.hosts):
            host, run = self.hosts.pop(name)
            host.stop()
            await asyncio.gather(run, return_exceptions=True)
        for proc in self.procs.values():
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signal.SIGTERM)
            try:
                async with asyncio.timeout(20):
                    await proc.wait()
            except TimeoutError:
                proc.kill()
                await proc.wait()


def _started() -> type[Any]:
    from legion.contracts import ActorStarted  # noqa: PLC0415

    return ActorStarted


def fleet_config(
    llm: FakeLlmServer,
    agents: Sequence[str],
    project: str,
    *,
    agent_config: Mapping[str, Any] | None = None,
    budget_usd: Decimal | None = None,
    ack_wait_s: float = 30.0,
    context_window: int = 128_000,
    own_models: bool = False,
) -> dict[str, Any]:
    """legion.yaml for ``agents``; ``own_models``: agent i calls alias ``m<i>`` (``agent-<i>`` on the wire),
    so a test can script each agent's model separately."""
    model = {
        "model": "openai/agent-model",
        "api_base": llm.base_url,
        "key": "fake",
        "price": PRICE,
        "context_window": context_window,
    }
    entry: dict[str, Any] = {"model": "primary", "projects": [project], "allowed_apis": ["llm", "http"]}
    if budget_usd is not None:
        entry["budget"] = {"daily_usd": str(budget_usd)}
    entry.update(agent_config or {})
    models = {"primary": model}
    per_agent = {name: dict(entry) for name in agents}
    if own_models:
        for i, name in enumerate(agents):
            models[f"m{i}"] = {**model, "model": f"openai/agent-{i}"}
            per_agent[name]["model"] = f"m{i}"
    return {
        "fleet": "agent-test",
        "models": models,
        "agents": per_agent,
        "runtime": {"inbox_ack_wait_s": ack_wait_s},
    }


@contextlib.asynccontextmanager
async def agent_fleet(
    fleet: TestFleet,
    llm: FakeLlmServer,
    tmp_path: Path,
    *,
    agents: Sequence[str] = ("worker",),
    agent_config: Mapping[str, Any] | None = None,
    budget_usd: Decimal | None = None,
    ack_wait_s: float = 30.0,
    context_window: int = 128_000,
    start: bool = True,
    own_models: bool = False,
    can_message: Mapping[str, Sequence[str]] | None = None,
    subscribe: Mapping[str, Sequence[str]] | None = None,
) -> AsyncIterator[AgentFleet]:
    """Agents (started in-process unless ``start=False``), the real ledger and vault, a fleet dir.

    ``can_message``: base agent name -> base names of the agents it may message (legion.yaml and credentials).
    ``subscribe``: base agent name -> event filters (legion.yaml ``subscribe``; the events durable is
    provisioned and the credential may fetch from it).
    """
    project = fleet.name("board")
    targets = {a: tuple(fleet.name(o) for o in (can_message or {}).get(a, ())) for a in agents}
    handles = [
        await fleet.add_agent(
            a,
            projects=(project,),
            inbox_ack_wait_s=ack_wait_s,
            can_message=targets[a],
            subscribe=tuple((subscribe or {}).get(a, ())),
        )
        for a in agents
    ]
    names = [h.name for h in handles]
    raw = fleet_config(
        llm, names, project, agent_config=agent_config, budget_usd=budget_usd, ack_wait_s=ack_wait_s,
        context_window=context_window, own_models=own_models,
    )  # fmt: skip
    for a, h in zip(agents, handles, strict=True):
        if targets[a]:
            raw["agents"][h.name]["can_message"] = list(targets[a])
        if (subscribe or {}).get(a):
            raw["agents"][h.name]["subscribe"] = list((subscribe or {})[a])
    config = FleetConfig.model_validate(raw)
    state = tmp_path / ".legion"
    (state / "creds").mkdir(parents=True)
    (state / "logs").mkdir()
    (tmp_path / "legion.yaml").write_text(yaml.safe_dump(raw), encoding="utf-8")
    (state / "nats.url").write_text(fleet.server.url + "\n", encoding="utf-8")
    for h in handles:
        shutil.copy(h.creds, state / "creds" / f"{h.name}.creds")
    shutil.copy(fleet.server.admin_creds, state / "creds" / "admin.creds")  # for the console (legion task/chat)

    ledger_name = service = fleet.name("ledger")
    ledger_creds = fleet.server.auth.issue_service(ledger_name, ledger_permissions(ledger_name, service=service))
    ledger = Ledger(ledger_name, LedgerSpec(db_path=tmp_path / "ledger.db", budgets=Budgets.from_config(config)))
    ledger_host = ActorHost(ledger, await fleet.connect(ledger_creds, name=ledger_name), ledger_host_spec(service))
    vault_name = fleet.name("vault")
    vault_spec_host = dataclasses.replace(host_spec(agents=names), heartbeat_s=60, grace_s=1)
    served = [s.subject for s in vault_spec_host.services]
    vault_creds = fleet.server.auth.issue_service(
        vault_name, vault_permissions(vault_name, ledger_service=service, serves=served)
    )
    vspec = VaultSpec(ledger_service=service, agents_account=fleet.server.auth.keys.agents.public_key)
    vault = Vault(vault_name, config, ProviderKeys.load(config, environ={KEY_ENV: "sk-agent-test"}), vspec)
    vault_host = ActorHost(vault, await fleet.connect(vault_creds, name=vault_name), vault_spec_host)

    probe = Probe()
    for name in names:
        await fleet.admin.subscribe(subj.EVENTS.wildcard(source=name), probe.on_msg)
    hosts = [ledger_host, vault_host]
    runs = [asyncio.create_task(h.run()) for h in hosts]
    rig = AgentFleet(
        fleet=fleet, llm=llm, dir=tmp_path, config=config, agents=handles, project=project, probe=probe,
        ledger_service=service,
    )  # fmt: skip
    try:
        for host in hosts:
            await asyncio.wait_for(host.ready.wait(), 60)
        if start:
            for handle in handles:
                await rig.start(handle)
        yield rig
    finally:
        await rig.close()
        for host in reversed(hosts):
            host.stop()
        await asyncio.gather(*runs, return_exceptions=True)
