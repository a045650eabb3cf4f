"""A real nats-server for tests, with the fleet's accounts, and per-test fleets with unique names."""

from __future__ import annotations

import shutil
import tempfile
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from legion.broker import (
    Broker,
    ConnectSpec,
    EmbeddedNats,
    FleetAuth,
    FleetLayout,
    NatsServerSpec,
    provision,
)

__all__ = ["AgentHandle", "NatsTestServer", "TestFleet"]


class NatsTestServer:
    """nats-server on a free 127.0.0.1 port, store in a temp dir, streams provisioned.

    ``async with NatsTestServer() as server:`` or the ``legion_nats`` pytest fixture.
    """

    def __init__(self, state_dir: Path | None = None) -> None:
        self._own_dir = state_dir is None
        self.state_dir = state_dir or Path(tempfile.mkdtemp(prefix="legion-test-"))
        self.auth = FleetAuth(self.state_dir)
        self.admin_creds = self.auth.issue_admin()
        self.server = EmbeddedNats(
            NatsServerSpec(state_dir=self.state_dir, server_name="legion_test", auth_config=self.auth.server_config())
        )

    @property
    def url(self) -> str:
        return self.server.url

    async def start(self) -> NatsTestServer:
        await self.server.start()
        async with await self.admin() as admin:
            await provision(admin, FleetLayout())
        return self

    async def stop(self) -> None:
        await self.server.stop()
        if self._own_dir:
            shutil.rmtree(self.state_dir, ignore_errors=True)

    async def admin(self, name: str = "test-admin") -> Broker:
        return await Broker.connect(ConnectSpec(url=self.url, creds=self.admin_creds, name=name))

    async def reload_auth(self) -> None:
        """Push revocations and account changes to the running server."""
        await self.server.reload(self.auth.server_config())

    async def __aenter__(self) -> NatsTestServer:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()


@dataclass(frozen=True, slots=True)
class AgentHandle:
    name: str
    creds: Path
    projects: tuple[str, ...]


@dataclass
class TestFleet:
    """Names unique to one test, on a shared server: tests never see each other's subjects."""

    __test__ = False  # not a pytest test class

    server: NatsTestServer
    admin: Broker
    id: str = field(default_factory=lambda: uuid.uuid4().hex[:8])
    _brokers: list[Broker] = field(default_factory=list)

    def name(self, base: str) -> str:
        """``base`` made unique to this test, still a valid name token."""
        return f"{base}-{self.id}"

    async def add_agent(
        self,
        base: str,
        *,
        projects: tuple[str, ...] = (),
        expires_in: float | None = 3600.0,
        inbox_ack_wait_s: float = 30.0,
        can_message: tuple[str, ...] = (),
        subscribe: tuple[str, ...] = (),
    ) -> AgentHandle:
        """Provision an agent (inbox consumer, its state bucket, project buckets and, with ``subscribe``,
        its events consumer with those filters) and mint its credentials."""
        name = self.name(base)
        subscriptions = ((name, tuple(subscribe)),) if subscribe else ()
        layout = FleetLayout(
            agents=(name,),
            projects=projects,
            streams=(),
            inbox_ack_wait_s=inbox_ack_wait_s,
            subscriptions=subscriptions,
        )
        await provision(self.admin, layout)
        creds = self.server.auth.issue_agent(
            name, projects=projects, expires_in=expires_in, can_message=can_message, subscribes=bool(subscribe)
        )
        return AgentHandle(name=name, creds=creds, projects=projects)

    def add_ingest(self, base: str) -> tuple[str, Path]:
        name = self.name(base)
        return name, self.server.auth.issue_ingest(name)

    async def connect(self, creds: Path, *, name: str = "test-client", **spec: object) -> Broker:
        broker = await Broker.connect(ConnectSpec(url=self.server.url, creds=creds, name=name, **spec))  # type: ignore[arg-type]
        self._brokers.append(broker)
        return broker

    async def remove_agent(self, agent: AgentHandle) -> None:
        """Revoke the agent's credentials on the live server."""
        self.server.auth.revoke(agent.name)
        await self.server.reload_auth()

    async def close(self) -> None:
        for broker in self._brokers:
            await broker.close()
        self._brokers.clear()
