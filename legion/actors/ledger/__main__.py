"""``python -m legion.actors.ledger --fleet-dir DIR``: the ledger as its own process."""

from __future__ import annotations

from legion.actors.ledger.service import ledger_factory
from legion.runtime.host.process import run_actor_process

if __name__ == "__main__":
    run_actor_process("ledger", ledger_factory)
