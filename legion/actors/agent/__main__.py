"""``python -m legion.actors.agent --fleet-dir DIR --name NAME``: one agent as its own process.

It connects with only ``.legion/creds/<name>.creds``, never imports LiteLLM and never holds a
provider key: every model call goes through the vault.
"""

from __future__ import annotations

from pathlib import Path

from legion.actors.agent.actor import Agent, agent_host_spec
from legion.actors.agent.spec import AgentSpec
from legion.runtime.config import FleetConfig
from legion.runtime.host.actor import Actor
from legion.runtime.host.actor_host import HostSpec
from legion.runtime.host.process import run_actor_process


async def factory(name: str, config: FleetConfig, fleet_dir: Path) -> tuple[Actor, HostSpec]:
    spec = AgentSpec.from_config(name, config, fleet_dir)
    return Agent(spec), agent_host_spec(spec)


if __name__ == "__main__":
    run_actor_process("agent", factory)
