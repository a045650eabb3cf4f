"""An agent's spec: what legion.yaml says about it, resolved against the fleet directory."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from legion.contracts.errors import ConfigError
from legion.runtime.config import FleetConfig, state_dir_of

__all__ = ["AgentSpec"]


@dataclass(frozen=True, slots=True)
class AgentSpec:
    name: str
    role: str
    instructions: str
    model: str
    projects: tuple[str, ...]
    workspace: Path
    state_dir: Path
    """Private files outside the workspace (the memory index): the agent's tools cannot reach them."""
    tools: tuple[str, ...] | None
    skills_dir: Path | None
    allowed_apis: tuple[str, ...]
    allow_run_command: bool
    max_iterations: int
    chat_rounds: int
    context_window: int
    max_tokens: int | None
    llm_timeout_s: float
    ack_wait_s: float
    can_message: tuple[str, ...]
    """Agents it may send tasks to (send_task); its credential allows exactly these inboxes."""
    subscribe: tuple[str, ...] = ()
    """Event filters (legion.yaml ``subscribe``): their events reach it as tasks, from ``<name>_events``."""

    @classmethod
    def from_config(cls, name: str, config: FleetConfig, fleet_dir: Path) -> AgentSpec:
        agent = config.agents.get(name)
        if agent is None:
            known = ", ".join(sorted(config.agents)) or "none"
            raise ConfigError(f"agent {name!r} is not in legion.yaml (agents: {known})")
        model = config.models.get(agent.model) if agent.model else None
        chain = [agent.model, *(model.fallbacks if model else [])] if agent.model else []
        timeout = sum(config.models[m].timeout_s for m in chain if m in config.models) + 10.0
        workspace = fleet_dir / (agent.workspace or f"agents/{name}")
        skills = fleet_dir / agent.skills_dir if agent.skills_dir else None
        return cls(
            name=name,
            role=agent.role,
            instructions=agent.instructions,
            model=agent.model or "",
            projects=tuple(agent.projects),
            workspace=workspace.resolve(),
            state_dir=state_dir_of(fleet_dir) / "agents" / name,
            tools=tuple(agent.tools) if agent.tools is not None else None,
            skills_dir=skills,
            allowed_apis=tuple(agent.allowed_apis),
            allow_run_command=config.runtime.allow_run_command,
            max_iterations=agent.max_iterations,
            chat_rounds=agent.chat_rounds,
            context_window=model.context_window if model else 128_000,
            max_tokens=agent.max_tokens,
            llm_timeout_s=timeout if chain else 60.0,
            ack_wait_s=config.runtime.inbox_ack_wait_s,
            can_message=tuple(agent.can_message),
            subscribe=tuple(agent.subscribe),
        )
