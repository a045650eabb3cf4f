"""What a tool is: a name, a description, a pydantic parameter model (its JSON schema is what the
model sees, its validation what the model's arguments go through), and an async function.

A tool raises :class:`ToolError` for anything the model should read and may act on (a bad path, a
missing key, a refused host); the error's ``code`` is one of :data:`TOOL_ERROR_CODES`. Any other
exception is a bug in the tool and reaches the model as ``code="internal"`` with the type name only.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, Literal

import structlog
from pydantic import BaseModel, ConfigDict, ValidationError

from legion.contracts.errors import Refused

__all__ = [
    "RESULT_CAP",
    "TOOL_ERROR_CODES",
    "Params",
    "Tool",
    "ToolContext",
    "ToolError",
    "ToolErrorCode",
    "ToolResult",
    "ToolSet",
]

log = structlog.get_logger("legion.actors.agent.tools")

ToolErrorCode = Literal[
    "invalid_args", "not_found", "denied", "conflict", "failed", "timeout", "blocked", "unavailable", "internal"
]
TOOL_ERROR_CODES: Final[frozenset[str]] = frozenset(ToolErrorCode.__args__)  # type: ignore[attr-defined]
RESULT_CAP: Final = 16_000
"""Characters of one tool result the model sees; longer results are cut with a note saying so."""


class ToolError(Refused):
    """An error the model reads: ``code`` says what kind, ``message`` what happened and what to do."""

    def __init__(self, code: ToolErrorCode, message: str, *, retryable: bool = False) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.retryable = retryable


class Params(BaseModel):
    """Base of tool parameter models: unknown arguments are an error, not silently dropped."""

    model_config = ConfigDict(extra="forbid")


@dataclass(frozen=True, slots=True)
class ToolContext:
    """Per call: who calls, in which session, and the call's idempotency key.

    ``call_key`` is stable across a crash and the resumed run (``<agent>:<session>:<tool call id>``):
    tools with side effects pass it on (``Nats-Msg-Id``, an ``Idempotency-Key`` header) so a
    repeated call is stored once.
    """

    agent: str
    session: str
    call_key: str
    workspace: Path
    trace: str = ""


ToolFn = Callable[[Any, ToolContext], Awaitable[Any]]


@dataclass(frozen=True, slots=True)
class Tool:
    name: str
    description: str
    params: type[BaseModel]
    run: ToolFn
    side_effects: bool = False
    """True: after a crash between the call and its recorded result, it is not run again blindly."""
    loop_exempt: bool = False
    """True: the tool-loop detector ignores it (memory_search)."""
    group: str = ""

    def schema(self) -> dict[str, Any]:
        """The OpenAI-style function schema the model sees."""
        params = self.params.model_json_schema()
        params.pop("title", None)
        function = {"name": self.name, "description": self.description, "parameters": params}
        return {"type": "function", "function": function}


@dataclass(frozen=True, slots=True)
class ToolResult:
    ok: bool
    content: str
    """What the model reads: JSON text of the result, or of ``{"error": code, "message": ...}``."""
    error_code: str | None = None

    @classmethod
    def error(cls, code: str, message: str) -> ToolResult:
        return cls(ok=False, content=json.dumps({"error": code, "message": message}), error_code=code)


def render_result(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value, default=str, ensure_ascii=False)
    if len(text) > RESULT_CAP:
        text = text[:RESULT_CAP] + f"\n[cut: {len(text) - RESULT_CAP} more characters; ask for less]"
    return text


@dataclass(slots=True)
class ToolSet:
    """The tools of one agent, by name."""

    tools: dict[str, Tool] = field(default_factory=dict)

    @classmethod
    def of(cls, tools: Iterable[Tool]) -> ToolSet:
        out = cls()
        for tool in tools:
            out.add(tool)
        return out

    def add(self, tool: Tool) -> None:
        if tool.name in self.tools:
            raise ValueError(f"tool {tool.name!r} is defined twice")
        self.tools[tool.name] = tool

    def __contains__(self, name: object) -> bool:
        return name in self.tools

    def get(self, name: str) -> Tool | None:
        return self.tools.get(name)

    def schemas(self) -> list[dict[str, Any]]:
        return [t.schema() for t in self.tools.values()]

    async def call(self, name: str, arguments: str | dict[str, Any], ctx: ToolContext) -> ToolResult:
        """Validate and run one call; every failure becomes a result the model can read."""
        tool = self.tools.get(name)
        if tool is None:
            known = ", ".join(sorted(self.tools)) or "none"
            return ToolResult.error("not_found", f"no tool named {name!r}; available tools: {known}")
        try:
            raw = json.loads(arguments or "{}") if isinstance(arguments, str) else arguments
            params = tool.params.model_validate(raw)
        except (json.JSONDecodeError, ValidationError) as exc:
            return ToolResult.error("invalid_args", f"arguments for {name} are invalid: {_short(exc)}")
        try:
            value = await tool.run(params, ctx)
        except ToolError as exc:
            return ToolResult.error(exc.code, exc.message)
        except Exception as exc:
            log.exception("tool.failed", tool=name, session=ctx.session)
            return ToolResult.error("internal", f"{name} failed with {type(exc).__name__}")
        return ToolResult(ok=True, content=render_result(value))


def _short(exc: Exception) -> str:
    if isinstance(exc, ValidationError):
        return "; ".join(f"{'.'.join(map(str, e['loc'])) or 'arguments'}: {e['msg']}" for e in exc.errors())
    return str(exc)
