"""``legion cron ls|add|rm|pause|resume|run``: the fleet's schedules, through the running scheduler.

Options in, :mod:`legion.cli.console.schedules` calls out, :func:`legion.cli.render.cron_table` for
the table. Registered on the `legion` app by :func:`register`.
"""

from __future__ import annotations

import asyncio
import json
from typing import Annotated, Literal

import typer
from rich.console import Console

from legion.cli import options, render
from legion.cli.console import schedules
from legion.cli.console.connect import FleetNotRunning
from legion.contracts.errors import ConfigError
from legion.contracts.scheduler import ScheduleAck

__all__ = ["register"]

cron_app = typer.Typer(
    no_args_is_help=True,
    help="The fleet's schedules (legion.yaml schedules:, agents' set_cron, and these commands).",
)

NameArg = Annotated[str, typer.Argument(help="the schedule's name (unique per agent)")]
AllOpt = Annotated[bool, typer.Option("--all", help="the whole fleet: no schedule fires while paused")]


def _fail(message: str) -> typer.Exit:
    typer.secho(f"legion: {message}", fg="red", err=True)
    return typer.Exit(1)


def _ack(ack: ScheduleAck, as_json: bool) -> None:
    if as_json:
        doc: dict[str, object] = {"ok": ack.ok, "message": ack.message}
        if ack.task_id:
            doc["task_id"] = ack.task_id
        if ack.schedule is not None:
            doc["schedule"] = schedules.info_dict(ack.schedule)
        typer.echo(json.dumps(doc, default=str))
    elif ack.ok:
        typer.secho(render.safe(ack.message), fg="green")
    else:
        typer.secho(f"legion: {render.safe(ack.message)}", fg="red", err=True)
    if not ack.ok:
        raise typer.Exit(1)


def _control(action: schedules.CronControl, agent: str, name: str, as_json: bool) -> None:
    fleet_dir = options.fleet_dir()
    try:
        ack = asyncio.run(schedules.control_schedule(fleet_dir, action, agent, name))
    except (FleetNotRunning, ConfigError) as exc:
        raise _fail(str(exc)) from None
    _ack(ack, as_json)


@cron_app.command("ls")
def cron_ls(
    agent: Annotated[str, typer.Option("--agent", envvar="LEGION_CRON_AGENT", help="only this agent's")] = "",
    as_json: options.JsonOpt = False,
) -> None:
    """The schedules with their next fire time, last task and who made them."""
    fleet_dir = options.fleet_dir()
    try:
        listed = asyncio.run(schedules.list_schedules(fleet_dir, agent))
    except (FleetNotRunning, ConfigError) as exc:
        raise _fail(str(exc)) from None
    if as_json:
        doc = {"fleet_paused": listed.fleet_paused, "schedules": [schedules.info_dict(i) for i in listed.schedules]}
        typer.echo(json.dumps(doc, default=str))
    elif not listed.schedules:
        typer.echo("no schedules" + (" (the fleet's schedules are paused)" if listed.fleet_paused else ""))
    else:
        console = Console()
        if not console.is_terminal:  # piped: whole rows, one per line, for grep
            console = Console(width=240)
        console.print(render.cron_table(listed))


@cron_app.command("add")
def cron_add(
    agent: options.AgentArg,
    name: NameArg,
    *,
    task: Annotated[str, typer.Option("--task", help="what the agent should do at each slot")],
    cron: Annotated[str, typer.Option("--cron", help="five cron fields or an alias (@daily)")] = "",
    every: Annotated[str, typer.Option("--every", help="an interval: 30m, 1h30m, 1d")] = "",
    offset: Annotated[str, typer.Option("--offset", help="with --every: shift the slots")] = "",
    at: Annotated[str, typer.Option("--at", help="one time, ISO 8601: 2026-12-24T18:00")] = "",
    tz: Annotated[str, typer.Option("--tz", help="IANA time zone of --cron and --at")] = "UTC",
    jitter: Annotated[str, typer.Option("--jitter", help="fire up to this much later: 2m")] = "",
    overlap: Annotated[
        str, typer.Option("--overlap", help="while the last task runs: skip, queue_one or allow")
    ] = "skip",
    catch_up: Annotated[str, typer.Option("--catch-up", help="how late after downtime a slot may fire")] = "10m",
    paused: Annotated[bool, typer.Option("--paused", help="create it paused")] = False,
    note: Annotated[str, typer.Option("--note", help="a note shown by `legion cron ls`")] = "",
    as_json: options.JsonOpt = False,
) -> None:
    """Create or replace AGENT's schedule NAME (give one of --cron, --every, --at)."""
    if overlap not in ("skip", "queue_one", "allow"):
        raise _fail(f"--overlap {overlap!r} is invalid: give skip, queue_one or allow")
    policy: Literal["skip", "queue_one", "allow"] = overlap  # type: ignore[assignment]
    spec = schedules.CronAdd(
        fleet_dir=options.fleet_dir(),
        agent=agent,
        name=name,
        task=task,
        cron=cron,
        every=every,
        offset=offset,
        at=at,
        tz=tz,
        jitter=jitter,
        overlap=policy,
        catch_up=catch_up,
        paused=paused,
        note=note,
    )
    try:
        ack = asyncio.run(schedules.add_schedule(spec))
    except (FleetNotRunning, ConfigError) as exc:
        raise _fail(str(exc)) from None
    _ack(ack, as_json)


@cron_app.command("rm")
def cron_rm(agent: options.AgentArg, name: NameArg, as_json: options.JsonOpt = False) -> None:
    """Delete AGENT's schedule NAME (a schedule legion.yaml declares comes back on the next `legion up`)."""
    _control("delete", agent, name, as_json)


MaybeAgent = Annotated[str, typer.Argument(help="agent name from legion.yaml")]
MaybeName = Annotated[str, typer.Argument(help="the schedule's name")]


def _one_or_all(op: Literal["pause", "resume"], agent: str, name: str, every_schedule: bool, as_json: bool) -> None:
    if every_schedule == bool(agent or name):
        raise _fail("give AGENT NAME, or --all")
    if every_schedule:
        _control("pause_all" if op == "pause" else "resume_all", agent, name, as_json)
    else:
        _control(op, agent, name, as_json)


@cron_app.command("pause")
def cron_pause(
    agent: MaybeAgent = "", name: MaybeName = "", every_schedule: AllOpt = False, as_json: options.JsonOpt = False
) -> None:
    """Pause AGENT's schedule NAME, or with --all every schedule of the fleet (no slot is caught up later)."""
    _one_or_all("pause", agent, name, every_schedule, as_json)


@cron_app.command("resume")
def cron_resume(
    agent: MaybeAgent = "", name: MaybeName = "", every_schedule: AllOpt = False, as_json: options.JsonOpt = False
) -> None:
    """Resume AGENT's schedule NAME, or with --all the fleet's schedules (they start from now)."""
    _one_or_all("resume", agent, name, every_schedule, as_json)


@cron_app.command("run")
def cron_run(agent: options.AgentArg, name: NameArg, as_json: options.JsonOpt = False) -> None:
    """Run AGENT's schedule NAME now: its task is sent at once (the schedule's slots do not change)."""
    _control("trigger", agent, name, as_json)


def register(app: typer.Typer) -> None:
    """Add ``legion cron`` to ``app``."""
    app.add_typer(cron_app, name="cron")
