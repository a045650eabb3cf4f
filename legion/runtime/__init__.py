"""What runs actors: legion.yaml (``config``), hosting one actor (``host``), the actor-kind registry
(``kinds``) and running a fleet (``fleet``)."""

from __future__ import annotations

from legion.runtime.config import AgentConfig, FleetConfig, NatsConfig, load_config, state_dir_of
from legion.runtime.fleet.nats import FleetHealth, FleetNats

__all__ = ["AgentConfig", "FleetConfig", "FleetHealth", "FleetNats", "NatsConfig", "load_config", "state_dir_of"]
