"""``legion costs``, ``legion bb ...``, ``legion vault ...`` and ``legion doctor``: options in, runtime calls out.

Registered on the `legion` app by :func:`register` (kept apart from app.py to keep files small).
"""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path
from typing import Annotated, Literal

import typer
from rich.console import Console

from legion.cli import options, render
from legion.cli.console import data, doctor, secrets
from legion.contracts.errors import ConfigError
from legion.runtime.config import load_config

__all__ = ["register"]

JsonOpt = options.JsonOpt
ProjectOpt = options.ProjectOpt
KindOpt = options.KindOpt
SecretName = options.SecretName


def _fail(message: str) -> typer.Exit:
    typer.secho(f"legion: {message}", fg="red", err=True)
    return typer.Exit(1)


def _kind(flag: bool | None) -> secrets.SecretKind | None:
    return None if flag is None else "system" if flag else "credential"


def _echo_json(value: object) -> None:
    typer.echo(json.dumps(value, ensure_ascii=False, default=str))


# -- costs --------------------------------------------------------------------------------------------
def costs(
    agent: Annotated[str | None, typer.Option("--agent", envvar="LEGION_COSTS_AGENT", help="only this agent")] = None,
    project: Annotated[
        str | None, typer.Option("--project", envvar="LEGION_COSTS_PROJECT", help="only this project")
    ] = None,
    by: Annotated[
        str, typer.Option("--by", envvar="LEGION_COSTS_BY", help="group by day or month", case_sensitive=False)
    ] = "day",
    as_json: JsonOpt = False,
) -> None:
    """Spend per agent, project and model, by day or month, from the running fleet's ledger."""
    fleet_dir = options.fleet_dir()
    period = by.lower()
    if period not in ("day", "month"):
        raise _fail(f"--by {by!r} is invalid: give day or month")
    grouped: Literal["day", "month"] = "day" if period == "day" else "month"
    spec = data.CostsSpec(fleet_dir=fleet_dir, agent=agent, project=project, by=grouped)
    try:
        report = asyncio.run(data.costs(spec))
    except data.FleetNotRunning as exc:
        raise _fail(str(exc)) from None
    if as_json:
        typer.echo(data.costs_json(report))
    else:
        render.print_costs(report, Console(), by=grouped)


# -- blackboard -----------------------------------------------------------------------------------------
bb_app = typer.Typer(no_args_is_help=True, help="A project's blackboard (KV bucket bb_<project>), as admin.")


def _bb(fleet_dir: Path, project: str | None, work: data.BbWork) -> None:
    try:
        asyncio.run(data.with_blackboard(fleet_dir, project, work))
    except data.FleetNotRunning as exc:
        raise _fail(str(exc)) from None


def _print_entry(entry: data.BbEntry, as_json: bool) -> None:
    if as_json:
        _echo_json(entry.as_dict())
    elif entry.operation == "PUT":
        typer.echo(f"{entry.key} = {json.dumps(entry.value, ensure_ascii=False)}  (revision {entry.revision})")
    else:
        typer.echo(f"{entry.key} {entry.operation.lower()}d  (revision {entry.revision})")


@bb_app.command("get")
def bb_get(
    key: Annotated[str, typer.Argument(help="the key, e.g. tasks.t1")],
    project: ProjectOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Print KEY's value (JSON) and revision."""
    fleet_dir = options.fleet_dir()

    async def work(board: data.Blackboard) -> None:
        entry = await board.get(key)
        if as_json:
            _echo_json(entry.as_dict())
        else:
            typer.echo(json.dumps(entry.value, ensure_ascii=False, indent=2))
            typer.echo(f"revision {entry.revision}", err=True)

    _bb(fleet_dir, project, work)


@bb_app.command("put")
def bb_put(
    key: Annotated[str, typer.Argument(help="the key, e.g. tasks.t1")],
    value: Annotated[str, typer.Argument(help="JSON, a plain string (stored as a JSON string), or @file")],
    project: ProjectOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Write KEY (last writer wins) and print the new revision."""
    fleet_dir = options.fleet_dir()

    async def work(board: data.Blackboard) -> None:
        revision = await board.put(key, value)
        if as_json:
            _echo_json({"key": key, "revision": revision, "project": board.project})
        else:
            typer.echo(f"{key}: revision {revision}")

    _bb(fleet_dir, project, work)


@bb_app.command("rm")
def bb_rm(
    key: Annotated[str, typer.Argument(help="the key, e.g. tasks.t1")],
    project: ProjectOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Delete KEY (its history stays: `legion bb history KEY`)."""
    fleet_dir = options.fleet_dir()

    async def work(board: data.Blackboard) -> None:
        await board.delete(key)
        if as_json:
            _echo_json({"key": key, "project": board.project, "deleted": True})
        else:
            typer.echo(f"{key}: deleted")

    _bb(fleet_dir, project, work)


@bb_app.command("ls")
def bb_ls(
    prefix: Annotated[str, typer.Argument(help="only KEY==PREFIX and keys under PREFIX.")] = "",
    project: ProjectOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """List the keys (deleted ones are left out)."""
    fleet_dir = options.fleet_dir()

    async def work(board: data.Blackboard) -> None:
        keys = await board.keys(prefix)
        if as_json:
            _echo_json({"project": board.project, "prefix": prefix, "keys": keys})
        else:
            for k in keys:
                typer.echo(k)

    _bb(fleet_dir, project, work)


@bb_app.command("history")
def bb_history(
    key: Annotated[str, typer.Argument(help="the key, e.g. tasks.t1")],
    project: ProjectOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Every revision the bucket keeps of KEY, oldest first."""
    fleet_dir = options.fleet_dir()

    async def work(board: data.Blackboard) -> None:
        for entry in await board.history(key):
            _print_entry(entry, as_json)

    _bb(fleet_dir, project, work)


@bb_app.command("watch")
def bb_watch(
    key_or_prefix: Annotated[str, typer.Argument(help="a key, or a prefix (its keys); default: every key")] = "",
    project: ProjectOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Print every change from now on, one line each, until Ctrl-C."""
    fleet_dir = options.fleet_dir()

    async def work(board: data.Blackboard) -> None:
        def ready() -> None:
            typer.echo(f"watching {board.bucket} {key_or_prefix or '>'} (Ctrl-C to stop)", err=True)

        def changed(entry: data.BbEntry) -> None:
            _print_entry(entry, as_json)
            sys.stdout.flush()

        await data.run_until_stopped(board.watch(key_or_prefix, changed, ready))

    _bb(fleet_dir, project, work)


# -- vault ----------------------------------------------------------------------------------------------
vault_app = typer.Typer(no_args_is_help=True, help="Provider keys and agent credentials in <fleet>/.env.")


def _warn(lines: tuple[str, ...] | list[str]) -> None:
    for line in lines:
        typer.secho(f"warning: {line}", fg="yellow", err=True)


@vault_app.command("add")
def vault_add(
    name: SecretName,
    kind: KindOpt = None,
    value_stdin: Annotated[
        bool, typer.Option("--value-stdin", envvar="LEGION_VAULT_VALUE_STDIN", help="read the value from stdin")
    ] = False,
    force: Annotated[bool, typer.Option("--force", envvar="LEGION_VAULT_FORCE", help="replace an existing value")] = (
        False
    ),
) -> None:
    """Store a secret in <fleet>/.env (mode 0600); the value is asked for hidden, or read from stdin."""
    fleet_dir = options.fleet_dir()
    secrets.validate_secret_name(name)
    if value_stdin:
        value = sys.stdin.read()
    else:
        value = typer.prompt(f"value of {name}", hide_input=True, confirmation_prompt=True)
    change = secrets.add_secret(fleet_dir, name, value, kind=_kind(kind), force=force)
    del value
    _warn(change.warnings)
    verb = "replaced" if change.replaced else "added"
    label = "provider key" if change.kind == "system" else "agent credential"
    typer.echo(f"{verb} {label} {change.name} as {change.env_var} in {change.path} (mode 0600)")
    typer.echo(secrets.restart_hint(fleet_dir))


@vault_app.command("ls")
def vault_ls(as_json: JsonOpt = False) -> None:
    """Names, kind, where set and who uses each secret (never a value)."""
    fleet_dir = options.fleet_dir()
    try:
        config = load_config(fleet_dir.resolve())
    except ConfigError as exc:
        _warn([f"legion.yaml does not load, so references are not shown: {exc}"])
        config = None
    found, warnings = secrets.list_secrets(fleet_dir, config=config)
    _warn(warnings)
    rows = [
        {
            "name": s.name,
            "kind": s.kind,
            "env_var": s.env_var,
            "set": s.is_set,
            "in_env_file": s.in_env_file,
            "in_environment": s.in_environment,
            "referenced_by": list(s.referenced_by),
        }
        for s in found
    ]
    if as_json:
        _echo_json(rows)
        return
    if not rows:
        typer.echo("no secrets: legion.yaml names none and .env holds none")
        return
    for s in found:
        where = " + ".join(w for w, on in ((".env", s.in_env_file), ("environment", s.in_environment)) if on)
        used = ", ".join(s.referenced_by) or "unused"
        typer.echo(
            f"{s.name:<20} {s.kind:<10} {s.env_var:<32} {'set (' + where + ')' if where else 'NOT SET':<24} {used}"
        )


@vault_app.command("rm")
def vault_rm(name: SecretName, kind: KindOpt = None) -> None:
    """Remove a secret's line from <fleet>/.env (other lines stay as they are)."""
    fleet_dir = options.fleet_dir()
    change = secrets.remove_secret(fleet_dir, name, kind=_kind(kind))
    _warn(change.warnings)
    typer.echo(f"removed {change.env_var} from {change.path}")
    typer.echo(secrets.restart_hint(fleet_dir))


# -- doctor -----------------------------------------------------------------------------------------------
def doctor_cmd(as_json: JsonOpt = False) -> None:
    """Check this machine and fleet directory: Python, nats-server, Docker, legion.yaml, keys, .env, port, disk."""
    fleet_dir = options.fleet_dir()
    report = doctor.run_doctor(fleet_dir)
    if as_json:
        typer.echo(report.as_json())
    else:
        colors = {"ok": "green", "warn": "yellow", "fail": "red"}
        for check in report.checks:
            typer.secho(check.line(), fg=colors[check.status] if sys.stdout.isatty() else None)
    if not report.ok:
        raise typer.Exit(1)


def register(app: typer.Typer) -> None:
    """Add this module's commands to ``app``."""
    app.command("costs")(costs)
    app.add_typer(bb_app, name="bb")
    app.add_typer(vault_app, name="vault")
    app.command("doctor")(doctor_cmd)
