"""Custom skills: plain Python functions in a skills directory, offered to the model as tools.

A skill file marks its functions with :func:`skill`::

    from legion.actors.agent.tools.skills import skill

    @skill
    def word_count(text: str, unique: bool = False) -> int:
        \"\"\"Count the words in a text.

        Args:
            text: The text to count.
            unique: Count distinct words only.
        \"\"\"
        words = text.split()
        return len(set(words) if unique else words)

:func:`discover_skills` imports every ``*.py`` file under the directory (names starting with ``_`` or
``.`` are skipped), and turns each marked function into a :class:`~.base.Tool`: the parameter model is
derived from the signature and type hints (unknown arguments are refused, defaults kept), the
description is the docstring's first paragraph, and the ``Args:`` section describes the parameters. A
parameter annotated :class:`~.base.ToolContext` or named ``ctx`` receives the call's context and is
not shown to the model. Sync functions run in a worker thread; a :class:`~.base.ToolError` raised by
a skill reaches the model as that typed error. Strings in a skill's result are stripped of invisible
Unicode. Every problem found (a file that fails to import, a parameter without a type hint, two skills
with one name...) is reported in one :class:`~legion.contracts.errors.ConfigError`.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import importlib.util
import inspect
import re
import sys
import typing
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any, Final, TypeVar, overload

from pydantic import BaseModel, Field, create_model

from legion.actors.agent.sanitize import strip_invisible_deep
from legion.actors.agent.tools.base import Params, Tool, ToolContext, ToolFn
from legion.contracts.errors import ConfigError

__all__ = ["SkillSpec", "discover_skills", "skill"]

F = TypeVar("F", bound=Callable[..., Any])

_MARK: Final = "__legion_skill__"
_NAME: Final = re.compile(r"^[a-zA-Z0-9_-]{1,64}$")
_ARGS_HEADER: Final = frozenset({"Args:", "Arguments:"})
_ARG_LINE: Final = re.compile(r"^\*{0,2}(\w+)\s*(?:\([^)]*\))?\s*:\s*(.*)$")


@dataclass(frozen=True, slots=True)
class SkillSpec:
    """What :func:`skill` records on a function."""

    name: str | None = None
    description: str | None = None
    side_effects: bool = False


@overload
def skill(fn: F, /) -> F: ...
@overload
def skill(
    *, name: str | None = None, description: str | None = None, side_effects: bool = False
) -> Callable[[F], F]: ...
def skill(
    fn: F | None = None, /, *, name: str | None = None, description: str | None = None, side_effects: bool = False
) -> F | Callable[[F], F]:
    """Mark a function as a skill; ``@skill`` or ``@skill(name=..., description=..., side_effects=True)``.

    The function is returned unchanged, so it stays callable (and testable) as plain Python.
    """
    spec = SkillSpec(name=name, description=description, side_effects=side_effects)

    def mark(f: F) -> F:
        setattr(f, _MARK, spec)
        return f

    return mark if fn is None else mark(fn)


def discover_skills(skills_dir: Path) -> list[Tool]:
    """The skills under ``skills_dir``, as tools of group ``skills``, in file and definition order."""
    if not skills_dir.is_dir():
        raise ConfigError(f"skills directory {str(skills_dir)!r} does not exist; create it or fix the path")
    problems: list[str] = []
    tools: list[Tool] = []
    origin: dict[str, str] = {}
    for path in sorted(skills_dir.rglob("*.py")):
        rel = path.relative_to(skills_dir)
        if any(part.startswith(("_", ".")) for part in rel.parts):
            continue
        module = _import(path, problems)
        if module is None:
            continue
        for fn in _marked(module):
            where = f"{rel.as_posix()}: {fn.__name__}()"
            tool = _tool(fn, where, problems)
            if tool is None:
                continue
            if tool.name in origin:
                problems.append(
                    f"{where}: the skill name {tool.name!r} is already used by {origin[tool.name]}; "
                    "rename one of them or pass @skill(name=...)"
                )
                continue
            origin[tool.name] = where
            tools.append(tool)
    if problems:
        listed = "\n".join(f"- {p}" for p in problems)
        raise ConfigError(f"skills in {str(skills_dir)!r} have {len(problems)} problem(s):\n{listed}")
    return tools


def _import(path: Path, problems: list[str]) -> ModuleType | None:
    digest = hashlib.sha256(str(path.resolve()).encode()).hexdigest()[:12]
    stem = re.sub(r"\W", "_", path.stem)
    name = f"legion_skills_{digest}_{stem}"
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        problems.append(f"{path.name}: cannot be loaded as a Python module; check the file name")
        return None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses and pydantic models in the file look their module up here
    try:
        spec.loader.exec_module(module)
    except Exception as exc:  # noqa: BLE001 - any error in a user's file is reported, with the others
        del sys.modules[name]
        problems.append(f"{path.name}: failed to import ({type(exc).__name__}: {exc}); fix the file or move it away")
        return None
    return module


def _marked(module: ModuleType) -> list[Callable[..., Any]]:
    found = {  # by identity: a skill bound to a second name (an alias) is one skill
        id(obj): obj
        for obj in vars(module).values()
        if inspect.isfunction(obj) and hasattr(obj, _MARK) and obj.__module__ == module.__name__
    }
    return list(found.values())


def _tool(fn: Callable[..., Any], where: str, problems: list[str]) -> Tool | None:
    spec: SkillSpec = getattr(fn, _MARK)
    name = spec.name or fn.__name__
    found = len(problems)
    if not _NAME.match(name):
        problems.append(f"{where}: skill name {name!r} must match [a-zA-Z0-9_-]{{1,64}}; pass @skill(name=...)")
    doc = inspect.getdoc(fn) or ""
    description = spec.description or _summary(doc)
    if not description:
        problems.append(f"{where}: has no description; add a docstring or pass @skill(description=...)")
    params, ctx_name = _params(fn, name, _arg_docs(doc), where, problems)
    if params is None or len(problems) > found:
        return None
    return Tool(
        name=name,
        description=description,
        params=params,
        run=_runner(fn, ctx_name),
        side_effects=spec.side_effects,
        group="skills",
    )


def _params(
    fn: Callable[..., Any], name: str, docs: dict[str, str], where: str, problems: list[str]
) -> tuple[type[BaseModel] | None, str | None]:
    try:
        hints = typing.get_type_hints(fn, include_extras=True)
    except Exception as exc:  # noqa: BLE001 - an unresolvable annotation is the user's to fix
        problems.append(f"{where}: type hints cannot be resolved ({exc}); import the names they use")
        return None, None
    fields: dict[str, Any] = {}
    ctx_name: str | None = None
    for param in inspect.signature(fn).parameters.values():
        if param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD, param.POSITIONAL_ONLY):
            problems.append(f"{where}: parameter {param.name!r} is {param.kind.description}; use named parameters")
            continue
        hint = hints.get(param.name)
        if hint is ToolContext or param.name == "ctx":
            ctx_name = param.name
            continue
        if hint is None:
            problems.append(f"{where}: parameter {param.name!r} has no type hint; add one, e.g. `{param.name}: str`")
            continue
        default = ... if param.default is param.empty else param.default
        fields[param.name] = (hint, Field(default, description=docs.get(param.name)))
    try:
        model: type[BaseModel] = create_model(f"{name}_params", __base__=Params, **fields)
        model.model_json_schema()  # a type pydantic cannot describe fails here, not at the first call
    except Exception as exc:  # noqa: BLE001 - pydantic raises several types for unusable hints
        problems.append(f"{where}: the parameters cannot be described to the model ({exc}); use JSON-like types")
        return None, None
    return model, ctx_name


def _runner(fn: Callable[..., Any], ctx_name: str | None) -> ToolFn:
    is_async = inspect.iscoroutinefunction(fn)

    async def run(params: BaseModel, ctx: ToolContext) -> Any:
        kwargs = {field: getattr(params, field) for field in type(params).model_fields}
        if ctx_name is not None:
            kwargs[ctx_name] = ctx
        if is_async:
            value = await fn(**kwargs)
        else:
            value = await asyncio.to_thread(functools.partial(fn, **kwargs))
        return strip_invisible_deep(value)

    return run


def _summary(doc: str) -> str:
    lines: list[str] = []
    for line in doc.strip().splitlines():
        if not line.strip() or line.strip() in _ARGS_HEADER:
            break
        lines.append(line.strip())
    return " ".join(lines)


def _arg_docs(doc: str) -> dict[str, str]:
    """Parameter descriptions from a Google-style ``Args:`` section."""
    out: dict[str, str] = {}
    lines = iter(doc.splitlines())
    for line in lines:
        if line.strip() in _ARGS_HEADER:
            break
    indent: int | None = None
    current: str | None = None
    for line in lines:
        if not line.strip():
            continue
        depth = len(line) - len(line.lstrip())
        if depth == 0:
            break  # the next section (Returns:, Raises:...)
        indent = depth if indent is None else indent
        match = _ARG_LINE.match(line.strip())
        if depth == indent and match:
            current = match.group(1)
            out[current] = match.group(2).strip()
        elif depth > indent and current is not None:
            out[current] = f"{out[current]} {line.strip()}".strip()
        else:
            break
    return out
