"""Agents as an actor kind: one actor per entry of ``agents:`` in legion.yaml, started last, each
with its own AGENTS-account credential, the base environment only and its resource limits."""

from __future__ import annotations

from legion.runtime.config import FleetConfig, ResourceLimits
from legion.runtime.kinds import ActorKind

__all__ = ["KIND"]


def _limits(name: str, config: FleetConfig) -> ResourceLimits | None:
    return config.limits_of(name)


KIND = ActorKind(
    name="agent",
    module="legion.actors.agent",
    stage=90,
    instances=lambda config: tuple(config.agents),
    account="AGENTS",
    limits=_limits,
    description="an LLM agent: tasks, chat, tools, workspace and memory",
)
