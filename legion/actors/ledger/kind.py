"""The ledger as an actor kind: one per fleet, started first (the vault reserves budget with it)."""

from __future__ import annotations

from legion.actors.ledger.permissions import ledger_permissions
from legion.runtime.kinds import ActorKind, singleton

__all__ = ["KIND"]

KIND = ActorKind(
    name="ledger",
    module="legion.actors.ledger",
    stage=10,
    instances=singleton("ledger"),
    permissions=lambda name, _config: ledger_permissions(name),
    description="event-sourced budgets and usage",
)
