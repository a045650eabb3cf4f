"""``runtime:``: how the fleet runs its actors (backend, agent limits, inbox redelivery, the vault's quotas)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from legion.runtime.config.agents import ResourceLimits
from legion.runtime.config.base import Strict
from legion.runtime.config.quota import VaultConfig

__all__ = ["RuntimeConfig"]


class RuntimeConfig(Strict):
    """How actors run. The process backend isolates by OS process only, so run_command is off unless
    the fleet says so explicitly (the Docker backend isolates it)."""

    backend: Literal["process"] = "process"
    allow_run_command: bool = Field(default=False, description="let agents that list run_command use it")
    inbox_ack_wait_s: float = Field(default=30.0, gt=0, description="redelivery delay of a crashed agent's work")
    inbox_max_depth: int = Field(
        default=10_000, ge=1, le=10_000_000, description="messages waiting per agent before the next is refused"
    )
    agent_limits: ResourceLimits = Field(default_factory=ResourceLimits, description="limits of every agent process")
    vault: VaultConfig = Field(default_factory=VaultConfig, description="how the vault shares itself among agents")
