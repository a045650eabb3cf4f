"""legion.yaml, validated with pydantic. Errors name the file, the key path, the bad value and the fix.

The top level (fleet name, NATS) and the loader live here; each other section has its own module:
``models``, ``agents`` (and projects), ``runtime``, ``schedules``. The one rule that names secrets' environment
variables is :mod:`legion.runtime.config.secrets`.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Any

import yaml
from pydantic import BeforeValidator, Field, ValidationError, model_validator

from legion.contracts.errors import ConfigError
from legion.runtime.config.agents import AgentConfig, ProjectConfig, ResourceLimits, check_subscription
from legion.runtime.config.base import Strict, token
from legion.runtime.config.models import ModelConfig
from legion.runtime.config.quota import Quota
from legion.runtime.config.runtime import RuntimeConfig
from legion.runtime.config.schedules import ScheduleEntry

__all__ = ["CONFIG_NAME", "RESERVED", "FleetConfig", "NatsConfig", "load_config"]

CONFIG_NAME = "legion.yaml"
RESERVED = frozenset({"admin", "vault", "ledger", "scheduler", "gateway", "launcher", "legion"})


class NatsConfig(Strict):
    url: str | None = Field(default=None, description="connect to this NATS instead of the embedded server")
    port: int = Field(default=0, ge=0, le=65535, description="embedded server port; 0 picks a free one")
    host: str = "127.0.0.1"


def _projects_list_to_dict(value: Any) -> Any:
    if isinstance(value, list):  # `projects: [p1, p2]` is shorthand for projects without budgets
        return {name: {} for name in value}
    return value


class FleetConfig(Strict):
    fleet: Annotated[str, token("fleet name")] = "legion"
    nats: NatsConfig = Field(default_factory=NatsConfig)
    models: dict[Annotated[str, token("model alias")], ModelConfig] = Field(default_factory=dict)
    projects: Annotated[
        dict[Annotated[str, token("project name")], ProjectConfig], BeforeValidator(_projects_list_to_dict)
    ] = Field(default_factory=dict)
    agents: dict[Annotated[str, token("agent name")], AgentConfig] = Field(default_factory=dict)
    runtime: RuntimeConfig = Field(default_factory=RuntimeConfig)
    schedules: dict[Annotated[str, token("schedule name")], ScheduleEntry] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _references_exist(self) -> FleetConfig:
        for alias, model in self.models.items():
            for fb in model.fallbacks:
                if fb not in self.models:
                    raise ValueError(f"models.{alias}.fallbacks: unknown model alias {fb!r}; define it under models:")
        for name, agent in self.agents.items():
            for ref in [agent.model, *(agent.allowed_models or [])]:
                if ref is not None and ref not in self.models:
                    known = ", ".join(sorted(self.models)) or "none defined"
                    raise ValueError(f"agents.{name}: unknown model alias {ref!r} (models: {known})")
            for other in agent.can_message:
                if other not in self.agents or other == name:
                    raise ValueError(
                        f"agents.{name}.can_message: {other!r} is not another agent of this fleet "
                        f"(agents: {', '.join(sorted(self.agents))})"
                    )
            for pattern in agent.subscribe:
                check_subscription(f"agents.{name}.subscribe", pattern)
            quota = self.quota_of(name)
            if quota.concurrency > self.runtime.vault.concurrency:
                raise ValueError(
                    f"agents.{name}.quota.concurrency ({quota.concurrency}) is more than "
                    f"runtime.vault.concurrency ({self.runtime.vault.concurrency}), which no agent can exceed; "
                    "lower the first or raise the second"
                )
            if "run_command" in (agent.tools or ()) and not self.runtime.allow_run_command:
                raise ValueError(
                    f"agents.{name}.tools lists run_command, which the process backend does not isolate; "
                    "set runtime.allow_run_command: true to allow it anyway"
                )
        return self

    @model_validator(mode="after")
    def _schedules_name_agents(self) -> FleetConfig:
        for sid, entry in self.schedules.items():
            if entry.agent not in self.agents:
                raise ValueError(
                    f"schedules.{sid}.agent: {entry.agent!r} is not an agent of this fleet "
                    f"(agents: {', '.join(sorted(self.agents)) or 'none'})"
                )
        return self

    def limits_of(self, agent: str) -> ResourceLimits:
        """The agent's own ``limits``, else the fleet's ``runtime.agent_limits``."""
        return self.agents[agent].limits or self.runtime.agent_limits

    def quota_of(self, agent: str) -> Quota:
        """``runtime.vault.agent_quota`` with the keys the agent's own ``quota`` sets replaced; the default
        for an agent not in legion.yaml."""
        cfg = self.agents.get(agent)
        return self.runtime.vault.agent_quota.merged(cfg.quota if cfg is not None else None)

    def allowed_models(self, agent: str) -> list[str]:
        """The aliases ``agent`` may call: explicit list, else its model plus that model's failover chain."""
        cfg = self.agents[agent]
        if cfg.allowed_models is not None:
            return list(cfg.allowed_models)
        if cfg.model is None:
            return []
        return [cfg.model, *self.models[cfg.model].fallbacks]

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
        if err["type"] == "extra_forbidden" or not err["loc"]:  # a cross-field check names its own keys
            lines.append(f"  {msg}" if not err["loc"] else f"  {loc}: {msg}")
        else:
            lines.append(f"  {loc}: {msg} (got {value!r})")
    return "\n".join(lines)


def load_config(fleet_dir: Path) -> FleetConfig:
    """Read ``<fleet_dir>/legion.yaml``; a missing file means the defaults (an empty fleet)."""
    path = fleet_dir / CONFIG_NAME
    if not path.exists():
        return FleetConfig(fleet=_default_name(fleet_dir))
    try:
        text = path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as exc:
        line = path.read_bytes()[: exc.start].count(b"\n") + 1
        raise ConfigError(
            f"{path}: line {line}: byte 0x{exc.object[exc.start]:02x} is not UTF-8; save the file as UTF-8"
        ) from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot be read: {exc.strerror}") from None
    try:
        raw: Any = yaml.load(text, Loader=_UniqueKeyLoader) or {}  # noqa: S506 - a SafeLoader subclass
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from None
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


class _UniqueKeyLoader(yaml.SafeLoader):
    """SafeLoader that refuses a key given twice in one mapping (PyYAML keeps the last silently, so
    two agents with one name would merge into one)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: dict[Any, int] = {}
        for key_node, _value in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None,
                    None,
                    f"key {key!r} is given twice (first on line {seen[key] + 1}); "
                    "each key may appear once: rename or merge the two entries",
                    key_node.start_mark,
                )
            seen[key] = key_node.start_mark.line
        return super().construct_mapping(node, deep=deep)


def _default_name(fleet_dir: Path) -> str:
    name = re.sub(r"[^a-z0-9_-]+", "-", fleet_dir.resolve().name.lower()).strip("-")[:64]
    return name or "legion"
