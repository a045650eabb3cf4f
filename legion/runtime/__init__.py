"""Actor host, launcher and fleet configuration."""

from __future__ import annotations

from legion.runtime.config import AgentConfig, FleetConfig, NatsConfig, load_config
from legion.runtime.fleet import FleetHealth, FleetNats, state_dir_of

__all__ = ["AgentConfig", "FleetConfig", "FleetHealth", "FleetNats", "NatsConfig", "load_config", "state_dir_of"]
