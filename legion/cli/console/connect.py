"""THE admin connection of the console: every operator operation (tail, publish, costs, bb, task,
chat, restart) connects through :func:`admin`, with one set of settings and one error when the
fleet is not running."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Final

from legion.broker import Broker, ConnectSpec
from legion.cli.console.hints import hint
from legion.contracts.errors import ConfigError, Unavailable
from legion.runtime.config import state_dir_of

__all__ = ["FleetNotRunning", "admin", "admin_spec", "fleet_url"]

CONNECT_TIMEOUT_S: Final = 2.0
RECONNECT_ATTEMPTS: Final = 3  # a short server blip does not end `legion tail -f`


class FleetNotRunning(Unavailable):
    """The fleet's NATS server (or the service asked) does not answer."""


def fleet_url(fleet_dir: Path) -> str:
    """The NATS URL of a running fleet (``.legion/nats.url``)."""
    path = state_dir_of(fleet_dir) / "nats.url"
    if not path.exists():
        raise FleetNotRunning(
            f"the fleet in {fleet_dir} is not running (it has never been started: no {path}); "
            f"start it with `{hint('up -d', fleet_dir)}`"
        )
    return path.read_text(encoding="utf-8").strip()


def admin_spec(fleet_dir: Path, name: str) -> ConnectSpec:
    fleet_dir = fleet_dir.resolve()
    url = fleet_url(fleet_dir)
    creds = state_dir_of(fleet_dir) / "creds" / "admin.creds"
    if not creds.exists():
        raise ConfigError(f"no admin credential {creds}: start the fleet first (`{hint('up -d', fleet_dir)}`)")
    return ConnectSpec(
        url=url, creds=creds, name=name, connect_timeout=CONNECT_TIMEOUT_S, max_reconnect_attempts=RECONNECT_ATTEMPTS
    )


@asynccontextmanager
async def admin(fleet_dir: Path, name: str) -> AsyncIterator[Broker]:
    """The admin connection of the running fleet; :class:`FleetNotRunning` if there is none."""
    where = fleet_dir
    spec = admin_spec(where, name)
    try:
        broker = await Broker.connect(spec)
    except Unavailable as exc:
        raise FleetNotRunning(
            f"the fleet in {where} is not running: {exc}; start it with `{hint('up -d', where)}`"
        ) from None
    try:
        yield broker
    finally:
        await broker.close()
