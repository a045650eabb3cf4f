"""Which tools an agent gets: ``tools:`` in legion.yaml names tools or groups; unset means every
safe tool. ``run_command`` is never a default: the agent must list it and the fleet must allow it
(``runtime.allow_run_command``), because the process backend does not isolate what it runs.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from legion.actors.agent.memory import MemoryStore
from legion.actors.agent.spec import AgentSpec
from legion.actors.agent.tools.agents import agent_tools
from legion.actors.agent.tools.base import Tool, ToolSet
from legion.actors.agent.tools.blackboard import blackboard_tools
from legion.actors.agent.tools.command import command_tool
from legion.actors.agent.tools.events import event_tools
from legion.actors.agent.tools.files import file_tools
from legion.actors.agent.tools.http import http_tool
from legion.actors.agent.tools.memory import memory_tools
from legion.actors.agent.tools.skills import discover_skills
from legion.actors.agent.tools.system import system_tools
from legion.broker import Broker
from legion.contracts.errors import ConfigError

__all__ = ["DEFAULT_GROUPS", "build_toolset"]

DEFAULT_GROUPS = ("files", "memory", "blackboard", "events", "agents", "http", "system", "skills")
COMMAND = "run_command"


def build_toolset(
    spec: AgentSpec,
    broker: Broker,
    memory: MemoryStore,
    *,
    budget: Callable[[], Awaitable[dict[str, object]]] | None = None,
) -> ToolSet:
    toolset = ToolSet()

    def tool_names() -> list[str]:
        return list(toolset.tools)

    groups: dict[str, list[Tool]] = {
        "files": file_tools(spec.workspace),
        "memory": memory_tools(memory),
        "events": event_tools(broker, spec.name),
        "system": system_tools(
            broker,
            spec.name,
            projects=list(spec.projects),
            tool_names=tool_names,
            budget=budget,
            can_message=list(spec.can_message),
            subscribe=list(spec.subscribe),
        ),
    }
    if spec.projects:
        groups["blackboard"] = blackboard_tools(broker, spec.name, list(spec.projects))
    if spec.can_message:
        groups["agents"] = agent_tools(broker, spec.name, spec.can_message)
    if "http" in spec.allowed_apis:
        groups["http"] = [http_tool(broker, spec.name)]
    if spec.skills_dir is not None:
        groups["skills"] = discover_skills(spec.skills_dir)
    for tool in _select(spec, groups):
        toolset.add(tool)
    if COMMAND in (spec.tools or ()):
        if not spec.allow_run_command:
            raise ConfigError(
                f"agents.{spec.name}.tools lists run_command, but the process backend does not isolate it; "
                "set runtime.allow_run_command: true in legion.yaml to allow it anyway"
            )
        toolset.add(command_tool(spec.workspace))
    return toolset


def _select(spec: AgentSpec, groups: dict[str, list[Tool]]) -> list[Tool]:
    if spec.tools is None:
        return [t for g in DEFAULT_GROUPS if g in groups for t in groups[g]]
    by_name = {t.name: t for ts in groups.values() for t in ts}
    unknown = [n for n in spec.tools if n not in groups and n not in by_name and n != COMMAND]
    if unknown:
        raise ConfigError(
            f"agents.{spec.name}.tools: unknown tool or group {unknown[0]!r}; "
            f"groups: {', '.join(sorted(groups))}; tools: {', '.join(sorted(by_name))}"
        )
    out: dict[str, Tool] = {}
    for name in spec.tools:
        for tool in groups.get(name) or ([by_name[name]] if name in by_name else []):
            out.setdefault(tool.name, tool)
    return list(out.values())
