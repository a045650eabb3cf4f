"""Every option of ``legion`` declared once, each with its ``LEGION_*`` environment variable, and
the root option that picks the fleet: ``legion -C DIR <command>`` (like ``git -C`` or
``docker compose --project-directory``), default ``$LEGION_FLEET_DIR`` or the current directory.

Positional arguments are actors and agents (``legion logs vault``, ``legion restart alpha``);
the fleet directory is never positional. ``-C DIR`` may also be typed after the command
(``legion ps -C DIR``): :func:`hoist_fleet_dir` moves it to the root before typer parses.
"""

from __future__ import annotations

from contextvars import ContextVar
from pathlib import Path
from typing import Annotated

import typer

from legion.cli.console.hints import hint as fleet_hint

__all__ = [
    "ActorArg",
    "AgentArg",
    "FleetDirRoot",
    "JsonOpt",
    "KindOpt",
    "ProjectOpt",
    "SecretName",
    "TimeoutOpt",
    "debugging",
    "fleet_dir",
    "hint",
    "hoist_fleet_dir",
    "set_debugging",
    "set_fleet_dir",
]

FLEET_FLAGS = ("-C", "--fleet-dir")
_fleet_dir: ContextVar[Path] = ContextVar("legion_fleet_dir", default=Path("."))
_debugging: ContextVar[bool] = ContextVar("legion_debugging", default=False)

FleetDirRoot = Annotated[
    Path,
    typer.Option(
        "-C",
        "--fleet-dir",
        envvar="LEGION_FLEET_DIR",
        help="fleet directory (holds legion.yaml and .legion/); default: the current directory",
        show_default=False,
    ),
]
JsonOpt = Annotated[bool, typer.Option("--json", envvar="LEGION_JSON", help="print JSON instead of text")]
AgentArg = Annotated[str, typer.Argument(help="agent name from legion.yaml")]
ActorArg = Annotated[str, typer.Argument(help="actor name (an agent, vault, ledger, ...); see `legion ps`")]
ProjectOpt = Annotated[
    str | None,
    typer.Option("--project", envvar="LEGION_PROJECT", help="project (blackboard); default: the fleet's only one"),
]
TimeoutOpt = Annotated[
    float, typer.Option("--timeout", "-t", envvar="LEGION_DOWN_TIMEOUT", help="seconds to wait before killing")
]
KindOpt = Annotated[
    bool | None,
    typer.Option(
        "--system/--credential",
        envvar="LEGION_VAULT_SYSTEM",
        help="a provider key (LEGION_SYSTEM_<NAME>) or an agent credential (LEGION_CRED_<NAME>); "
        "default: --credential if legion.yaml uses NAME only as an agent credential, else --system",
        show_default=False,
    ),
]
SecretName = Annotated[str, typer.Argument(help="the key's name as legion.yaml uses it, e.g. openai")]


def set_fleet_dir(path: Path) -> None:
    _fleet_dir.set(path)


def set_debugging(on: bool) -> None:
    _debugging.set(on)


def debugging() -> bool:
    """--log-level debug: unexpected errors show their traceback."""
    return _debugging.get()


def fleet_dir() -> Path:
    """The fleet directory the root option chose (absolute)."""
    return _fleet_dir.get().resolve()


def hint(command: str, where: Path | None = None) -> str:
    """``legion <command>`` as the user should type it where they are (see :mod:`.console.hints`)."""
    return fleet_hint(command, where or fleet_dir())


def hoist_fleet_dir(argv: list[str]) -> list[str]:
    """Move ``-C DIR`` / ``--fleet-dir DIR`` / ``--fleet-dir=DIR`` typed after the command to the
    root, where typer reads it. Nothing after ``--`` is touched."""
    head: list[str] = []
    rest: list[str] = []
    i = 0
    while i < len(argv):
        arg = argv[i]
        if arg == "--":
            rest.extend(argv[i:])
            break
        if arg in FLEET_FLAGS and i + 1 < len(argv):
            head += [arg, argv[i + 1]]
            i += 2
            continue
        if arg.startswith("--fleet-dir="):
            head.append(arg)
        else:
            rest.append(arg)
        i += 1
    return head + rest
