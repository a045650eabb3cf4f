"""The fleet as data: ``legion ps`` (its JSON document is built here, the CLI only renders it) and
``legion restart`` (a request to the running launcher)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from legion.cli.console.connect import admin
from legion.contracts.errors import ConfigError, Unavailable
from legion.contracts.lifecycle import RestartActor, RestartReply
from legion.runtime.fleet import ps_rows, ps_status
from legion.runtime.fleet.control import PsRow
from legion.runtime.fleet.state import FleetState, read_launcher_pid
from legion.runtime.fleet.supervisor import RESTART_SUBJECT

__all__ = ["FleetStatus", "fleet_status", "restart_actor"]


@dataclass(frozen=True, slots=True)
class FleetStatus:
    running: bool
    fleet_dir: Path
    stale: bool = False  # a launcher pid file is left by a launcher that died without stopping
    launcher_pid: int | None = None
    state: FleetState | None = None
    rows: tuple[PsRow, ...] = ()

    def as_dict(self) -> dict[str, object]:
        """What ``legion ps --json`` prints."""
        if not self.running or self.state is None:
            return {"running": False}
        state = self.state
        return {
            "running": True,
            "fleet": state.fleet,
            "fleet_dir": state.fleet_dir,
            "status": state.status,
            "backend": state.backend,
            "launcher_pid": self.launcher_pid,
            "nats_url": state.nats.url,
            "embedded": state.nats.embedded,
            "started_at": state.started_at,
            "actors": [r.as_dict() for r in self.rows],
        }


def fleet_status(fleet_dir: Path) -> FleetStatus:
    """The fleet's launcher, NATS and every actor, each checked live with its backend."""
    fleet_dir = fleet_dir.resolve()
    status = ps_status(fleet_dir)
    if status is None:
        return FleetStatus(running=False, fleet_dir=fleet_dir, stale=read_launcher_pid(fleet_dir) is not None)
    pid, state = status
    return FleetStatus(
        running=True, fleet_dir=fleet_dir, launcher_pid=pid, state=state, rows=tuple(ps_rows(fleet_dir, state))
    )


async def restart_actor(fleet_dir: Path, actor: str, *, timeout_s: float = 120.0) -> RestartReply:
    """Ask the running launcher to restart ``actor`` (stop it gracefully, start it again)."""
    async with admin(fleet_dir, "legion-restart") as broker:
        try:
            reply = await broker.request(
                RESTART_SUBJECT, RestartActor(actor=actor), reply_type=RestartReply, timeout=timeout_s
            )
        except Unavailable:
            raise Unavailable("the fleet's launcher does not answer; see .legion/logs/launcher.log") from None
    assert isinstance(reply, RestartReply)
    if not reply.ok:
        raise ConfigError(reply.message)
    return reply
