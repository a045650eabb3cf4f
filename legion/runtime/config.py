"""legion.yaml, validated with pydantic. Errors name the file, the key path, the bad value and the fix.

This is the foundation subset (fleet name, NATS, projects, agents with their projects); the
launcher issue grows it (models, budgets, permissions, schedules, bridges).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Any

import yaml
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError

from legion.contracts.errors import ConfigError
from legion.contracts.names import validate_token

__all__ = ["AgentConfig", "FleetConfig", "NatsConfig", "load_config"]

CONFIG_NAME = "legion.yaml"
RESERVED = frozenset({"admin", "vault", "ledger", "scheduler", "gateway", "launcher", "legion"})


def _token(kind: str) -> AfterValidator:
    def check(value: str) -> str:
        try:
            return validate_token(value, kind=kind)
        except ConfigError as exc:  # pydantic reports ValueErrors with their key path
            raise ValueError(str(exc)) from None

    return AfterValidator(check)


Token = Annotated[str, _token("name")]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class NatsConfig(_Strict):
    url: str | None = Field(default=None, description="connect to this NATS instead of the embedded server")
    port: int = Field(default=0, ge=0, le=65535, description="embedded server port; 0 picks a free one")
    host: str = "127.0.0.1"


class AgentConfig(_Strict):
    role: str = ""
    projects: list[Token] = Field(default_factory=list)


class FleetConfig(_Strict):
    fleet: Annotated[str, _token("fleet name")] = "legion"
    nats: NatsConfig = Field(default_factory=NatsConfig)
    projects: list[Token] = Field(default_factory=list)
    agents: dict[Annotated[str, _token("agent name")], AgentConfig] = Field(default_factory=dict)

    def all_projects(self) -> tuple[str, ...]:
        names = list(self.projects)
        for agent in self.agents.values():
            names.extend(agent.projects)
        return tuple(dict.fromkeys(names))


def _format(path: Path, exc: ValidationError) -> str:
    lines = [f"{path}: invalid configuration"]
    for err in exc.errors():
        loc = ".".join(str(p) for p in err["loc"]) or "(top level)"
        value = err.get("input")
        msg = err["msg"].removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            msg = f"unknown key {loc.rsplit('.', 1)[-1]!r}; check its spelling (see docs/operations.md)"
        lines.append(f"  {loc}: {msg} (got {value!r})" if err["type"] != "extra_forbidden" else f"  {loc}: {msg}")
    return "\n".join(lines)


def load_config(fleet_dir: Path) -> FleetConfig:
    """Read ``<fleet_dir>/legion.yaml``; a missing file means the defaults (an empty fleet)."""
    path = fleet_dir / CONFIG_NAME
    if not path.exists():
        return FleetConfig(fleet=_default_name(fleet_dir))
    try:
        raw: Any = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from exc
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: the top level must be a mapping (fleet:, agents:, ...), got {type(raw).__name__}")
    raw.setdefault("fleet", _default_name(fleet_dir))
    try:
        config = FleetConfig.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(_format(path, exc)) from None
    clash = sorted(RESERVED & set(config.agents))
    if clash:
        raise ConfigError(f"{path}: agents.{clash[0]}: {clash[0]!r} is reserved for a system actor; rename the agent")
    return config


def _default_name(fleet_dir: Path) -> str:
    name = re.sub(r"[^a-z0-9_-]+", "-", fleet_dir.resolve().name.lower()).strip("-")[:64]
    return name or "legion"
