"""legion.yaml, validated with pydantic. Errors name the file, the key path, the bad value and the fix.

Holds the fleet name, NATS (embedded or external), models (aliases with LiteLLM parameters, key
reference, price override, failover chain), projects and agents (model, projects, budgets, policy).
The launcher issue grows it (permissions between agents, runtime backend, schedules, bridges).
"""

from __future__ import annotations

import re
from decimal import Decimal
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, model_validator

from legion.contracts import subjects as subj
from legion.contracts.errors import ConfigError
from legion.contracts.names import validate_token

__all__ = [
    "AgentConfig",
    "Budget",
    "FleetConfig",
    "ModelConfig",
    "NatsConfig",
    "Price",
    "ProjectConfig",
    "ResourceLimits",
    "RuntimeConfig",
    "load_config",
]

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


class Price(_Strict):
    """USD per million tokens; overrides LiteLLM's price table (required for unknown models)."""

    input_per_mtok: Decimal = Field(ge=0)
    output_per_mtok: Decimal = Field(ge=0)


class ModelConfig(_Strict):
    """A model alias: what the vault passes to LiteLLM, and the key it uses (never given to agents)."""

    model: str = Field(description="LiteLLM model name, e.g. openai/gpt-4o-mini")
    api_base: str | None = Field(default=None, description="OpenAI-compatible endpoint, e.g. a local server")
    key: str | None = Field(default=None, description="key name: the vault reads LEGION_SYSTEM_<KEY>")
    params: dict[str, Any] = Field(default_factory=dict, description="extra LiteLLM parameters")
    price: Price | None = None
    fallbacks: list[Token] = Field(default_factory=list, description="aliases tried in order when this one fails")
    max_tokens: int | None = Field(default=None, gt=0)
    timeout_s: float = Field(default=120.0, gt=0)
    context_window: int = Field(default=128_000, gt=0, description="tokens; agents compact at ~70 %")


class Budget(_Strict):
    daily_usd: Decimal | None = Field(default=None, ge=0)
    monthly_usd: Decimal | None = Field(default=None, ge=0)


class ProjectConfig(_Strict):
    budget: Budget = Field(default_factory=Budget)


class ResourceLimits(_Strict):
    """Per-process limits the process backend applies with setrlimit before the actor starts.

    ``memory_mb`` caps the address space (RLIMIT_AS): an agent process maps ~150 MB of virtual
    memory at start (its RSS is ~60 MB), so leave room; a process past the cap gets MemoryError.
    ``open_files`` caps file descriptors (RLIMIT_NOFILE)."""

    memory_mb: int | None = Field(default=None, ge=256, description="address-space cap in MiB")
    open_files: int | None = Field(default=None, ge=64, description="file descriptor cap")


class AgentConfig(_Strict):
    role: str = ""
    model: str | None = Field(default=None, description="model alias from models:")
    projects: list[Token] = Field(default_factory=list)
    budget: Budget = Field(default_factory=Budget)
    allowed_models: list[str] | None = Field(default=None, description="default: its model and its fallbacks")
    max_tokens: int | None = Field(default=None, gt=0, description="cap on max_tokens per call")
    allowed_apis: tuple[Literal["llm", "http"], ...] = ("llm",)
    credentials: list[Token] = Field(default_factory=list, description="agent-tier credentials it may use")
    instructions: str = Field(default="", description="added to the workspace's INSTRUCTIONS.md in the prompt")
    workspace: str | None = Field(default=None, description="directory of its files; default agents/<name>")
    tools: list[str] | None = Field(default=None, description="tool names or groups; default: every safe tool")
    skills_dir: str | None = Field(default=None, description="directory of @skill Python files, relative to the fleet")
    max_iterations: int = Field(default=20, gt=0, le=1000, description="decide-act rounds per task")
    chat_rounds: int = Field(default=8, gt=0, le=100, description="model rounds per chat turn")
    can_message: list[Token] = Field(default_factory=list, description="agents it may send tasks to")
    limits: ResourceLimits | None = Field(default=None, description="overrides runtime.agent_limits")
    subscribe: list[str] = Field(
        default_factory=list,
        description="event subjects delivered to it as work, e.g. legion.ext.github.> or legion.events.pm.report.>",
    )

    def issue_options(self) -> dict[str, Any]:
        """What its credential allows beyond its own subjects (for FleetAuth.issue_agent)."""
        return {"projects": self.projects, "can_message": self.can_message, "subscribes": bool(self.subscribe)}


def _projects_list_to_dict(value: Any) -> Any:
    if isinstance(value, list):  # `projects: [p1, p2]` is shorthand for projects without budgets
        return {name: {} for name in value}
    return value


class RuntimeConfig(_Strict):
    """How actors run. The process backend isolates by OS process only, so run_command is off unless
    the fleet says so explicitly (the Docker backend isolates it)."""

    backend: Literal["process"] = "process"
    allow_run_command: bool = Field(default=False, description="let agents that list run_command use it")
    inbox_ack_wait_s: float = Field(default=30.0, gt=0, description="redelivery delay of a crashed agent's work")
    agent_limits: ResourceLimits = Field(default_factory=ResourceLimits, description="limits of every agent process")


class FleetConfig(_Strict):
    fleet: Annotated[str, _token("fleet name")] = "legion"
    nats: NatsConfig = Field(default_factory=NatsConfig)
    models: dict[Annotated[str, _token("model alias")], ModelConfig] = Field(default_factory=dict)
    projects: Annotated[
        dict[Annotated[str, _token("project name")], ProjectConfig], BeforeValidator(_projects_list_to_dict)
    ] = Field(default_factory=dict)
    agents: dict[Annotated[str, _token("agent name")], AgentConfig] = Field(default_factory=dict)
    runtime: RuntimeConfig = Field(default_factory=RuntimeConfig)

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
                _check_subscription(f"agents.{name}.subscribe", pattern)
            if "run_command" in (agent.tools or ()) and not self.runtime.allow_run_command:
                raise ValueError(
                    f"agents.{name}.tools lists run_command, which the process backend does not isolate; "
                    "set runtime.allow_run_command: true to allow it anyway"
                )
        return self

    def limits_of(self, agent: str) -> ResourceLimits:
        """The agent's own ``limits``, else the fleet's ``runtime.agent_limits``."""
        return self.agents[agent].limits or self.runtime.agent_limits

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


_SUBSCRIBE_ROOTS = tuple(t.pattern.split("{", 1)[0] for t in (subj.EVENTS, subj.EXT))  # legion.events., legion.ext.
_FILTER_TOKEN = re.compile(r"[a-z0-9_-]{1,64}|\*|>")


def _check_subscription(where: str, pattern: str) -> None:
    """An agent may subscribe to events (``legion.events.<source>.<type>``) and external events
    (``legion.ext.<source>.<type>``), with NATS wildcards; nothing else."""
    tokens = pattern.split(".")
    bad = (
        not pattern.startswith(_SUBSCRIBE_ROOTS)
        or len(tokens) < 3
        or not all(_FILTER_TOKEN.fullmatch(t) for t in tokens[2:])
        or ">" in tokens[:-1]
    )
    if bad:
        raise ValueError(
            f"{where}: {pattern!r} is not an event filter; use {subj.EVENTS.pattern} or {subj.EXT.pattern} "
            "with lower-case tokens, '*' for one token and a final '>' for the rest"
        )


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
