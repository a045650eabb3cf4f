"""legion.yaml, one module per section, and the one secret-naming rule (``secrets``)."""

from __future__ import annotations

from legion.runtime.config.agents import AgentConfig, Budget, ProjectConfig, ResourceLimits
from legion.runtime.config.fleet import CONFIG_NAME, RESERVED, FleetConfig, NatsConfig, load_config
from legion.runtime.config.models import ModelConfig, Price
from legion.runtime.config.paths import state_dir_of
from legion.runtime.config.quota import Quota, VaultConfig
from legion.runtime.config.runtime import RuntimeConfig
from legion.runtime.config.schedules import DECLARED_BY, ScheduleEntry, declared_puts

__all__ = [
    "CONFIG_NAME",
    "DECLARED_BY",
    "RESERVED",
    "AgentConfig",
    "Budget",
    "FleetConfig",
    "ModelConfig",
    "NatsConfig",
    "Price",
    "ProjectConfig",
    "Quota",
    "ResourceLimits",
    "RuntimeConfig",
    "ScheduleEntry",
    "VaultConfig",
    "declared_puts",
    "load_config",
    "state_dir_of",
]
