"""The vault as an actor kind: one per fleet, after the ledger, before the agents. It is the only
actor given the fleet's secrets (``LEGION_SYSTEM_*``, ``LEGION_CRED_*``)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final

from legion.actors.vault.hosting import vault_permissions
from legion.runtime.clients import LEDGER_SERVICE
from legion.runtime.config.secrets import secret_environ
from legion.runtime.kinds import ActorKind, KindContext, singleton

__all__ = ["AGENTS_ACCOUNT_ENV", "KIND", "LEDGER_SERVICE", "LEDGER_SERVICE_ENV"]

AGENTS_ACCOUNT_ENV: Final = "LEGION_AGENTS_ACCOUNT"
LEDGER_SERVICE_ENV: Final = "LEGION_LEDGER_SERVICE"


def _env(_name: str, ctx: KindContext) -> Mapping[str, str]:
    return {AGENTS_ACCOUNT_ENV: ctx.agents_account, LEDGER_SERVICE_ENV: LEDGER_SERVICE}


def _secrets(_name: str, ctx: KindContext) -> Mapping[str, str]:
    """Only the vault ever holds keys; it gets them on stdin, not in its environment."""
    return secret_environ(ctx.environ)


KIND = ActorKind(
    name="vault",
    module="legion.actors.vault",
    stage=20,
    instances=singleton("vault"),
    permissions=lambda name, _config: vault_permissions(name, ledger_service=LEDGER_SERVICE),
    env=_env,
    secrets=_secrets,
    description="LLM calls and credentialed HTTP for agents; the only holder of keys",
)
