"""The fleet's signing keys: operator and accounts, persisted with mode 0600 under ``.legion/keys``.

Only the launcher reads these. The SYSTEM account's seed signs nothing after setup and no user of
it is ever minted (a pushed account JWT is stored without an operator-signature check).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

from legion.broker.jwt import KeyPair, new_keypair

__all__ = ["FleetKeys", "write_private"]


def write_private(path: Path, text: str) -> None:
    """Write a secret file atomically with mode 0600 (created that way, never widened)."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(fd, text.encode("utf-8"))
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)


@dataclass(frozen=True, slots=True)
class FleetKeys:
    operator: KeyPair
    system: KeyPair
    legion: KeyPair
    agents: KeyPair
    ingest: KeyPair

    @classmethod
    def load_or_create(cls, keys_dir: Path) -> FleetKeys:
        """Load the fleet's keys, creating any that are missing (idempotent)."""
        path = keys_dir / "accounts.json"
        if path.exists():
            seeds = json.loads(path.read_text(encoding="utf-8"))
            return cls(**{k: KeyPair.from_seed(v) for k, v in seeds.items()})
        keys = cls(
            operator=new_keypair("operator"),
            system=new_keypair("account"),
            legion=new_keypair("account"),
            agents=new_keypair("account"),
            ingest=new_keypair("account"),
        )
        seeds = {name: getattr(keys, name).seed for name in ("operator", "system", "legion", "agents", "ingest")}
        write_private(path, json.dumps(seeds, indent=2))
        return keys
