"""``python -m legion.actors.scheduler --fleet-dir DIR``: the scheduler as its own process."""

from __future__ import annotations

from legion.actors.scheduler.service import scheduler_factory
from legion.runtime.host import run_actor_process

if __name__ == "__main__":
    run_actor_process("scheduler", scheduler_factory)
