"""The agent actor: a decide-act loop over tasks and chats, tools, workspace, memory, resumable sessions.

Run one with ``python -m legion.actors.agent --fleet-dir DIR --name NAME`` (``legion up`` does). Write
custom skills as plain functions in the agent's ``skills_dir``::

    from legion.actors.agent import skill

    @skill
    def word_count(text: str) -> int:
        \"\"\"Count the words in a text.\"\"\"
        return len(text.split())

See docs/agents.md.
"""

from __future__ import annotations

from legion.actors.agent.actor import Agent, agent_host_spec
from legion.actors.agent.memory import MemoryHit, MemoryStore
from legion.actors.agent.spec import AgentSpec
from legion.actors.agent.tools.base import Params, Tool, ToolContext, ToolError, ToolResult, ToolSet
from legion.actors.agent.tools.skills import discover_skills, skill
from legion.actors.agent.workspace import Workspace

__all__ = [
    "Agent",
    "AgentSpec",
    "MemoryHit",
    "MemoryStore",
    "Params",
    "Tool",
    "ToolContext",
    "ToolError",
    "ToolResult",
    "ToolSet",
    "Workspace",
    "agent_host_spec",
    "discover_skills",
    "skill",
]
