"""What tool tests share: a call context and readers of the result the model would see."""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

from legion.actors.agent.tools.base import ToolContext, ToolResult


def ctx(agent: str, call_key: str | None = None, *, workspace: Path = Path(".")) -> ToolContext:
    """A call of ``agent`` in session s1; a fresh call key unless one is given (to test repeats)."""
    key = call_key or f"{agent}:s1:{uuid.uuid4().hex}"
    return ToolContext(agent=agent, session="s1", call_key=key, workspace=workspace)


def ok(result: ToolResult) -> Any:
    """The result's JSON; fails the test if the tool answered with an error."""
    assert result.ok, result.content
    return json.loads(result.content)


def err(result: ToolResult, code: str) -> str:
    """The error's message; fails the test unless the tool answered with error ``code``."""
    assert not result.ok and result.error_code == code, result.content
    return str(json.loads(result.content)["message"])
