"""Bring a fleet's NATS side up: embedded server (or an external URL), accounts, streams, buckets,
consumers and credentials. The launcher (``legion up``) builds on this."""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import structlog

from legion.broker import (
    Broker,
    ConnectSpec,
    EmbeddedNats,
    FleetAuth,
    FleetLayout,
    NatsServerSpec,
    ProvisionReport,
    StreamSpec,
    provision,
)
from legion.broker.streams import default_streams
from legion.runtime.config import FleetConfig, load_config, state_dir_of
from legion.runtime.fleet.backends.process import base_environment

__all__ = ["FleetHealth", "FleetNats"]

log = structlog.get_logger("legion.runtime.fleet.nats")


@dataclass(frozen=True, slots=True)
class FleetHealth:
    url: str
    embedded: bool
    streams: dict[str, int]
    buckets: list[str]
    agents: list[str]
    report: ProvisionReport = field(default_factory=ProvisionReport)


class FleetNats:
    """``async with FleetNats(fleet_dir) as fleet: fleet.health``."""

    def __init__(self, fleet_dir: Path, config: FleetConfig | None = None) -> None:
        self.fleet_dir = fleet_dir.resolve()
        self.config = config or load_config(self.fleet_dir)
        self.state_dir = state_dir_of(self.fleet_dir)
        self.auth = FleetAuth(self.state_dir)
        self.server: EmbeddedNats | None = None
        self.admin: Broker | None = None
        self.url = ""
        self.streams: tuple[StreamSpec, ...] = default_streams()

    async def start(self, streams: Sequence[StreamSpec] = ()) -> FleetHealth:
        """Start (or reach) the server and provision the fleet; ``streams``: the ones actor kinds
        declare (:func:`legion.runtime.kinds.kind_streams`), besides EVENTS, INBOX and LEDGER."""
        cfg = self.config
        self.streams = (*default_streams(inbox_max_depth=cfg.runtime.inbox_max_depth), *streams)
        admin_creds = self.auth.admin_creds()
        removed = [name for name in self.auth.issued("agent") if name not in cfg.agents]
        for name in removed:  # an agent taken out of legion.yaml loses its credentials now, not at expiry
            self.auth.revoke(name, "agent")
            log.info("agent.credentials_revoked", agent=name, reason="no longer in legion.yaml")
        for name, agent in cfg.agents.items():
            self.auth.issue_agent(name, **agent.issue_options())
        if cfg.nats.url:
            self.url = cfg.nats.url
            if removed:
                log.warning(
                    "agent.revocation_needs_reload",
                    agents=removed,
                    fix="reload the external nats-server with the output of `legion nats config`",
                )
        else:
            self.server = EmbeddedNats(
                NatsServerSpec(
                    state_dir=self.state_dir,
                    host=cfg.nats.host,
                    port=cfg.nats.port,
                    server_name=f"legion_{cfg.fleet}",
                    auth_config=self.auth.server_config(),
                    env=base_environment(),  # never the launcher's secrets
                )
            )
            self.url = await self.server.start()
        (self.state_dir / "nats.url").write_text(self.url + "\n", encoding="utf-8")
        self.admin = await Broker.connect(ConnectSpec(url=self.url, creds=admin_creds, name="legion-launcher"))
        layout = FleetLayout(
            agents=tuple(cfg.agents),
            projects=cfg.all_projects(),
            inbox_ack_wait_s=cfg.runtime.inbox_ack_wait_s,
            subscriptions=tuple((name, tuple(a.subscribe)) for name, a in cfg.agents.items() if a.subscribe),
            streams=self.streams,
        )
        report = await provision(self.admin, layout)
        return await self.health(report)

    async def health(self, report: ProvisionReport | None = None) -> FleetHealth:
        assert self.admin is not None
        streams = {}
        for name in (s.name for s in self.streams):
            info = await self.admin.js.stream_info(name)
            streams[name] = info.state.messages
        return FleetHealth(
            url=self.url,
            embedded=self.server is not None,
            streams=streams,
            buckets=[f"bb_{p}" for p in self.config.all_projects()],
            agents=sorted(self.config.agents),
            report=report or ProvisionReport(),
        )

    async def stop(self) -> None:
        """Close the admin connection, then stop the embedded server. Safe to call twice."""
        admin, self.admin = self.admin, None
        if admin is not None:
            with contextlib.suppress(Exception):
                await admin.close()
        if self.server is not None:
            await self.server.stop()

    async def __aenter__(self) -> FleetNats:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()
