"""Ledgers on the shared test server, in-process or as real subprocesses, with names unique to a test.

In-process ledgers serve ``legion.svc.<unique service>.*`` so ledgers of other tests never answer
for them; the subprocess ledger is the production entry point and serves ``legion.svc.ledger.*``.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import sys
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

import yaml
from nats.aio.msg import Msg

from legion.actors.ledger import Budgets, Ledger, LedgerSpec, ledger_host_spec, ledger_permissions
from legion.broker import LEDGER, Broker
from legion.contracts import (
    Commit,
    CostsQuery,
    CostsReport,
    LedgerAck,
    Message,
    Release,
    Reserve,
    Reserved,
    decode,
)
from legion.contracts import subjects as subj
from legion.runtime.host.actor_host import ActorHost
from legion.testing import TestFleet

REPO = Path(__file__).resolve().parents[2]


@dataclass
class LedgerClient:
    """Typed calls to one ledger service (what the vault and the CLI do)."""

    broker: Broker
    service: str

    async def call(self, op: str, msg: Message, *, timeout: float = 10.0) -> Message:
        return await self.broker.request(subj.SERVICE.render(service=self.service, op=op), msg, timeout=timeout)

    async def reserve(self, rid: str, agent: str, usd: str, *, project: str = "", ttl_s: float = 300.0) -> Reserved:
        msg = Reserve(reservation_id=rid, agent=agent, project=project, estimate_usd=Decimal(usd), ttl_s=ttl_s)
        reply = await self.call("reserve", msg)
        assert isinstance(reply, Reserved), reply
        return reply

    async def commit(self, rid: str, agent: str, usd: str, *, project: str = "", model: str = "m") -> LedgerAck:
        msg = Commit(
            reservation_id=rid,
            agent=agent,
            project=project,
            model=model,
            actual_usd=Decimal(usd),
            prompt_tokens=10,
            completion_tokens=5,
        )
        reply = await self.call("commit", msg)
        assert isinstance(reply, LedgerAck), reply
        return reply

    async def release(self, rid: str) -> LedgerAck:
        reply = await self.call("release", Release(reservation_id=rid, reason="test"))
        assert isinstance(reply, LedgerAck), reply
        return reply

    async def costs(self, **query: Any) -> CostsReport:
        reply = await self.call("costs", CostsQuery(**query))
        assert isinstance(reply, CostsReport), reply
        return reply

    async def wait_serving(self, timeout: float = 30.0) -> None:
        """The service answers now (its host announced ActorStarted only after subscribing)."""
        async with asyncio.timeout(timeout):
            await self.costs(agent="nobody")


@dataclass
class InProcessLedger:
    ledger: Ledger
    host: ActorHost
    task: asyncio.Task[None]
    client: LedgerClient

    async def stop(self) -> None:
        self.host.stop()
        await self.task


async def start_ledger(
    fleet: TestFleet,
    db_path: Path,
    budgets: Budgets,
    *,
    name: str | None = None,
    service: str | None = None,
    **spec: Any,
) -> InProcessLedger:
    """Host a Ledger in this process with its own service credential; returns once it serves."""
    name = name or fleet.name("ledger")
    service = service or name
    creds = fleet.server.auth.issue_service(name, ledger_permissions(name, service=service))
    broker = await fleet.connect(creds, name=name)
    ledger = Ledger(name, LedgerSpec(db_path=db_path, budgets=budgets, **spec))
    host = ActorHost(ledger, broker, ledger_host_spec(service))
    task = asyncio.create_task(host.run())
    ready = asyncio.ensure_future(host.ready.wait())
    done, _ = await asyncio.wait({task, ready}, timeout=60, return_when=asyncio.FIRST_COMPLETED)
    if task in done:
        ready.cancel()
        task.result()  # raises what on_start raised
    assert ready in done, "the ledger did not start within 60 s"
    client = LedgerClient(fleet.admin, service)
    await client.wait_serving()
    return InProcessLedger(ledger=ledger, host=host, task=task, client=client)


async def stream_last_seq(broker: Broker) -> int:
    info = await broker.js_api(f"STREAM.INFO.{LEDGER}")
    return int(info["state"]["last_seq"])


class Collector:
    """Decoded messages of a core subscription, awaited with deadlines."""

    def __init__(self) -> None:
        self.items: list[Message] = []
        self._changed = asyncio.Event()

    async def on_msg(self, msg: Msg) -> None:
        decoded = decode(msg.data, msg.headers)
        assert isinstance(decoded, Message)
        self.items.append(decoded)
        self._changed.set()

    async def wait_for(self, predicate: Any, *, timeout: float = 10.0) -> Message:
        async with asyncio.timeout(timeout):
            while True:
                for item in self.items:
                    if predicate(item):
                        return item
                self._changed.clear()
                await self._changed.wait()


# -- the ledger as a real process ------------------------------------------------------------------
@dataclass
class LedgerProcess:
    """``python -m legion.actors.ledger --fleet-dir DIR`` with the fleet dir built for it."""

    fleet_dir: Path
    admin: Broker
    proc: asyncio.subprocess.Process | None = None
    logs: list[Path] = field(default_factory=list)

    @property
    def db_path(self) -> Path:
        return self.fleet_dir / ".legion" / "ledger" / "ledger.db"

    async def start(self, timeout: float = 60.0) -> None:
        """Spawn the process and return once it announced ActorStarted (its services are subscribed)."""
        log = self.fleet_dir / f"ledger-{len(self.logs)}.log"
        self.logs.append(log)
        env = {**os.environ, "PYTHONPATH": str(REPO)}
        started = asyncio.Event()

        async def on_started(_msg: object) -> None:
            started.set()

        sub = await self.admin.subscribe(subj.EVENTS.render(source="ledger", type="actor.started"), on_started)
        with log.open("wb") as out:
            self.proc = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "legion.actors.ledger",
                "--fleet-dir",
                str(self.fleet_dir),
                stdout=out,
                stderr=out,
                env=env,
            )
        try:
            async with asyncio.timeout(timeout):
                await started.wait()
        except TimeoutError:
            raise AssertionError(f"the ledger did not start within {timeout} s:\n{self.output()}") from None
        finally:
            await sub.unsubscribe()

    async def kill9(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        assert await asyncio.wait_for(self.proc.wait(), 10) == -signal.SIGKILL
        self.proc = None

    async def terminate(self) -> int:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        code = await asyncio.wait_for(self.proc.wait(), 30)
        self.proc = None
        return code

    def output(self) -> str:
        return "\n".join(p.read_text(errors="replace") for p in self.logs if p.exists())

    def delete_db(self) -> None:
        for suffix in ("", "-wal", "-shm"):
            Path(f"{self.db_path}{suffix}").unlink(missing_ok=True)


@contextlib.asynccontextmanager
async def ledger_process(fleet: TestFleet, tmp: Path, config: Mapping[str, Any]) -> AsyncIterator[LedgerProcess]:
    """A fleet dir (legion.yaml, .legion/nats.url, .legion/creds/ledger.creds) and a ledger process on it."""
    fleet_dir = tmp / "fleet"
    state = fleet_dir / ".legion"
    (state / "creds").mkdir(parents=True)
    (fleet_dir / "legion.yaml").write_text(yaml.safe_dump(dict(config)), encoding="utf-8")
    (state / "nats.url").write_text(fleet.server.url + "\n", encoding="utf-8")
    creds = fleet.server.auth.issue_service("ledger", ledger_permissions())
    shutil.copy(creds, state / "creds" / "ledger.creds")
    proc = LedgerProcess(fleet_dir, fleet.admin)
    try:
        yield proc
    finally:
        if proc.proc is not None and proc.proc.returncode is None:
            proc.proc.kill()
            await proc.proc.wait()
