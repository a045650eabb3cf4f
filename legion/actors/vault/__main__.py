"""``python -m legion.actors.vault --fleet-dir DIR [--name vault]``: the vault as its own process.

Provider keys come from ``LEGION_SYSTEM_<KEY>`` and agent credentials from ``LEGION_CRED_<NAME>``:
handed over on stdin by the launcher (never in this process's environment; when started by hand,
from the environment), else ``<fleet>/.env``. The process makes itself non-dumpable before it
reads any. ``LEGION_AGENTS_ACCOUNT`` (the AGENTS account public key, set by the launcher) pins who
may call; ``LEGION_LEDGER_SERVICE`` names the ledger.
"""

from __future__ import annotations

import os
from pathlib import Path

from legion.actors.vault.actor import Vault, VaultSpec
from legion.actors.vault.credentials import CredentialStore
from legion.actors.vault.hosting import host_spec
from legion.actors.vault.keys import ProviderKeys
from legion.actors.vault.kind import AGENTS_ACCOUNT_ENV, LEDGER_SERVICE, LEDGER_SERVICE_ENV
from legion.runtime.config import FleetConfig
from legion.runtime.host.actor import Actor
from legion.runtime.host.actor_host import HostSpec
from legion.runtime.host.hardening import not_dumpable, read_secrets
from legion.runtime.host.process import run_actor_process


async def factory(name: str, config: FleetConfig, fleet_dir: Path) -> tuple[Actor, HostSpec]:
    not_dumpable()  # before any key is in memory: no same-uid process may read it from /proc
    secrets = read_secrets()
    keys = ProviderKeys.load(config, fleet_dir=fleet_dir, environ=secrets)
    spec = VaultSpec(
        ledger_service=os.environ.get(LEDGER_SERVICE_ENV) or LEDGER_SERVICE,
        agents_account=os.environ.get(AGENTS_ACCOUNT_ENV) or None,
    )
    vault = Vault(name, config, keys, spec, credentials=CredentialStore.load(fleet_dir, environ=secrets))
    return vault, host_spec(agents=sorted(config.agents))  # one subscription per agent: a queue each


if __name__ == "__main__":
    run_actor_process("vault", factory)
