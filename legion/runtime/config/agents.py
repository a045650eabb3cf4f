"""``agents:`` and ``projects:``: what each agent runs, may call and may spend, and the event
filters it subscribes to."""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import Field

from legion.contracts import subjects as subj
from legion.runtime.config.base import Strict, Token, Usd
from legion.runtime.config.quota import Quota

__all__ = ["AgentConfig", "Budget", "ProjectConfig", "ResourceLimits", "check_subscription"]


class Budget(Strict):
    daily_usd: Usd | None = None
    monthly_usd: Usd | None = None


class ProjectConfig(Strict):
    budget: Budget = Field(default_factory=Budget)


class ResourceLimits(Strict):
    """Per-process limits the process backend applies with setrlimit before the actor starts.

    ``memory_mb`` caps the address space (RLIMIT_AS): an agent process maps ~150 MB of virtual
    memory at start (its RSS is ~60 MB), so leave room; a process past the cap gets MemoryError.
    ``open_files`` caps file descriptors (RLIMIT_NOFILE)."""

    memory_mb: int | None = Field(default=None, ge=256, description="address-space cap in MiB")
    open_files: int | None = Field(default=None, ge=64, description="file descriptor cap")


class AgentConfig(Strict):
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
    quota: Quota | None = Field(default=None, description="its share of the vault; overrides runtime.vault.agent_quota")
    subscribe: list[str] = Field(
        default_factory=list,
        description="event subjects delivered to it as work, e.g. legion.ext.github.> or legion.events.pm.report.>",
    )

    def issue_options(self) -> dict[str, Any]:
        """What its credential allows beyond its own subjects (for FleetAuth.issue_agent)."""
        return {"projects": self.projects, "can_message": self.can_message, "subscribes": bool(self.subscribe)}


_SUBSCRIBE_ROOTS = tuple(t.pattern.split("{", 1)[0] for t in (subj.EVENTS, subj.EXT))  # legion.events., legion.ext.
_FILTER_TOKEN = re.compile(r"[a-z0-9_-]{1,64}|\*|>")


def check_subscription(where: str, pattern: str) -> None:
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
