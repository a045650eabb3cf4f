"""How a fleet runs its ledger: database path, service subject and the process factory."""

from __future__ import annotations

from pathlib import Path
from typing import Final

from legion.actors.ledger.actor import Ledger
from legion.actors.ledger.budgets import Budgets
from legion.actors.ledger.spec import LedgerSpec
from legion.contracts import subjects as subj
from legion.runtime.clients import LEDGER_SERVICE
from legion.runtime.config import FleetConfig, state_dir_of
from legion.runtime.host.actor import Actor
from legion.runtime.host.actor_host import HostSpec, ServiceSpec

__all__ = ["SERVICE", "ledger_db_path", "ledger_factory", "ledger_host_spec"]

SERVICE: Final = LEDGER_SERVICE
"""Callers (the vault, the CLI) request ``legion.svc.ledger.<op>``: reserve, commit, release, costs."""


def ledger_db_path(fleet_dir: Path) -> Path:
    return state_dir_of(fleet_dir) / "ledger" / "ledger.db"


def ledger_host_spec(service: str = SERVICE) -> HostSpec:
    return HostSpec(services=(ServiceSpec(subject=subj.SERVICE.wildcard(service=service), queue=service),))


async def ledger_factory(name: str, config: FleetConfig, fleet_dir: Path) -> tuple[Actor, HostSpec]:
    """The :data:`~legion.runtime.host.process.ActorFactory` of ``python -m legion.actors.ledger``."""
    spec = LedgerSpec(db_path=ledger_db_path(fleet_dir), budgets=Budgets.from_config(config))
    return Ledger(name, spec), ledger_host_spec()
