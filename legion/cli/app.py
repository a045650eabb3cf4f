"""``legion``: commands parse options (each declared once, with an env var) and call the runtime."""

from __future__ import annotations

import asyncio
import contextlib
import json
import shlex
import sys
import traceback
from importlib.metadata import version
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from legion.broker import FleetAuth
from legion.cli import agent_cmds, cron_cmds, data_cmds, options, render
from legion.cli.console import events as console
from legion.cli.console import fleet as fleet_console
from legion.cli.console.init import TEMPLATES, InitSpec, init_fleet
from legion.contracts import LegionError
from legion.contracts.errors import ConfigError
from legion.contracts.schema import write_schemas
from legion.runtime import fleet as launcher
from legion.runtime import load_config, state_dir_of
from legion.runtime.config import CONFIG_NAME
from legion.runtime.fleet.state import FleetState
from legion.runtime.host.hardening import private_files
from legion.runtime.host.logs import configure_logging

__all__ = ["app", "main"]

app = typer.Typer(
    no_args_is_help=True, add_completion=False, help="Legion: isolated, budgeted LLM agent fleets on NATS."
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"legion {version('legion')}")
        raise typer.Exit


@app.callback()
def _root(
    fleet_dir: options.FleetDirRoot = Path("."),
    log_level: Annotated[
        str, typer.Option("--log-level", envvar="LEGION_LOG_LEVEL", help="debug, info, warning, error")
    ] = "warning",
    log_json: Annotated[bool, typer.Option("--log-json", envvar="LEGION_LOG_JSON", help="JSON log lines")] = False,
    _show_version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="print the version and exit")
    ] = False,
) -> None:
    """Logs go to stderr; stdout is for command output. -C DIR picks the fleet (default: here)."""
    options.set_fleet_dir(fleet_dir)
    options.set_debugging(log_level.lower() == "debug")
    configure_logging(level=log_level, json_lines=log_json)


contracts_app = typer.Typer(no_args_is_help=True, help="Wire contracts.")
app.add_typer(contracts_app, name="contracts")
nats_app = typer.Typer(no_args_is_help=True, help="The fleet's NATS server.")
app.add_typer(nats_app, name="nats")

JsonOpt = options.JsonOpt


@contracts_app.command("schema")
def contracts_schema(
    out: Annotated[Path, typer.Option("--out", envvar="LEGION_SCHEMA_DIR", help="output directory")] = Path("schema"),
) -> None:
    """Write a JSON Schema per contract (<tag>.json) and index.json, for publishers in any language."""
    files = write_schemas(out)
    typer.echo(f"wrote {len(files) - 1} contract schemas and index.json to {out}")


@nats_app.command("config")
def nats_config() -> None:
    """Print the operator/account config block for running the fleet on your own nats-server.

    Include it in that server's config and set `nats: {url: ...}` in legion.yaml; the fleet's account
    keys stay in .legion/keys.
    """
    fleet_dir = options.fleet_dir()
    typer.echo(FleetAuth(state_dir_of(fleet_dir.resolve())).server_config())


# -- the fleet: init, up, down, ps, logs ----------------------------------------------------------
def _echo_lines(lines: list[str], *, err: bool = False) -> None:
    for line in lines:
        typer.echo(render.safe(line), err=err)


def _on_stale(stale: launcher.StaleCleanup, as_json: bool) -> None:
    pids = ", ".join(map(str, stale.stopped)) or "none"
    typer.echo(
        f"legion: cleaned up after a launcher that did not stop (pid {stale.launcher_pid or '?'}); "
        f"stopped leftover processes: {pids}",
        err=as_json,
    )


def _print_up(state: FleetState, as_json: bool) -> None:
    if as_json:
        typer.echo(json.dumps(launcher.summary(state)))
    else:
        typer.secho(render.summary_text(state)[0], fg="green")
        _echo_lines(render.summary_text(state)[1:])


async def _up_foreground(fleet_dir: Path, as_json: bool, once: bool) -> None:
    display = render.ProgressDisplay(render.display_mode(as_json))

    def ready(state: FleetState) -> None:
        fleet_dir = options.fleet_dir()
        display.close()
        _print_up(state, as_json)
        if not once and not as_json:
            typer.echo(f"press Ctrl-C to stop (or run `{options.hint('down', fleet_dir)}`)")

    with display:
        await launcher.run_up(
            launcher.UpSpec(fleet_dir=fleet_dir, once=once),
            on_change=display,
            on_ready=ready,
            on_stale=lambda stale: _on_stale(stale, as_json),
        )
    if not as_json:
        typer.echo("legion: stopped")


def _up_detached(fleet_dir: Path, as_json: bool) -> None:
    load_config(fleet_dir)  # a bad legion.yaml fails here (exit 2), before anything starts
    stale = launcher.clean_stale(fleet_dir)
    if stale.anything:
        _on_stale(stale, as_json)
    display = render.ProgressDisplay(render.display_mode(as_json))
    try:
        with display:
            state = launcher.detach(fleet_dir, on_change=display)
    except launcher.LauncherFailed as exc:
        typer.secho(f"legion: {exc}", fg="red", err=True)
        _echo_lines([f"  {line}" for line in exc.log_tail], err=True)
        raise typer.Exit(1) from None
    except KeyboardInterrupt:
        typer.echo(
            f"legion: no longer waiting; the fleet keeps starting (`{options.hint('ps', fleet_dir)}`, "
            f"`{options.hint('down', fleet_dir)}`)"
        )
        raise typer.Exit(130) from None
    _print_up(state, as_json)
    if not as_json:
        stop = options.hint("down", fleet_dir)
        typer.echo(f"running in the background (launcher pid {state.launcher_pid}); `{stop}` stops it")


def _require_fleet(fleet_dir: Path) -> None:
    """`legion up` runs a fleet that exists: never an empty one by accident, never in a typo'd path."""
    init = f"legion init {shlex.quote(str(fleet_dir))}"
    if not fleet_dir.exists():
        raise ConfigError(f"{fleet_dir} does not exist; check the path, or create a fleet there with `{init}`")
    if not fleet_dir.is_dir():
        raise ConfigError(f"{fleet_dir} is not a directory; give the fleet's directory with -C DIR")
    if not (fleet_dir / CONFIG_NAME).is_file():
        raise ConfigError(
            f"no {CONFIG_NAME} in {fleet_dir}: this is not a fleet; create one with `{init}` "
            f"(or point -C at the directory that holds {CONFIG_NAME})"
        )


@app.command()
def up(
    as_json: JsonOpt = False,
    once: Annotated[
        bool, typer.Option("--once", envvar="LEGION_ONCE", help="provision, report health and stop")
    ] = False,
    detach: Annotated[
        bool,
        typer.Option("--detach", "-d", envvar="LEGION_DETACH", help="run in the background; return once healthy"),
    ] = False,
) -> None:
    """Start the fleet: NATS (embedded by default), accounts, streams, credentials, the ledger, the vault
    and every agent as supervised processes. Runs until Ctrl-C or `legion down`; -d runs it in the
    background and returns once every actor is healthy; --once stops after the report."""
    fleet_dir = options.fleet_dir()
    _require_fleet(fleet_dir)
    running = launcher.find_running(fleet_dir)
    if running is not None:
        typer.echo(running.message(fleet_dir, options.hint("down", fleet_dir)))
        return
    if detach and once:
        raise ConfigError("--detach and --once exclude each other: --once stops the fleet right after the report")
    if detach:
        _up_detached(fleet_dir, as_json)
        return
    try:
        asyncio.run(_up_foreground(fleet_dir, as_json, once))
    except launcher.AlreadyRunning as exc:  # lost a race with another `legion up`
        typer.echo(str(exc))


@app.command()
def down(timeout: options.TimeoutOpt = 60.0) -> None:
    """Stop a running fleet: agents first, then the vault and the ledger, then NATS (nothing is lost)."""
    fleet_dir = options.fleet_dir()
    fleet_dir = fleet_dir.resolve()

    def waiting(state: FleetState) -> None:
        typer.echo(f"stopping fleet {state.fleet} (launcher pid {state.launcher_pid}), up to {timeout:g}s ...")

    result = launcher.down(fleet_dir, timeout=timeout, on_wait=waiting)
    if not result.was_running:
        typer.echo(f"fleet in {fleet_dir} is not running")
        if result.killed:
            typer.echo(f"stopped leftover processes of a launcher that did not stop: {result.killed}")
    elif result.forced:
        typer.secho(
            f"legion: the launcher (pid {result.launcher_pid}) did not stop within {timeout:g}s; "
            f"killed it and every process of the fleet (SIGKILL): {result.killed}",
            fg="red",
            err=True,
        )
        raise typer.Exit(1)
    else:
        typer.echo("stopped")


@app.command()
def ps(as_json: JsonOpt = False) -> None:
    """The fleet's actors: state, id (checked live with the backend), restarts and uptime. Exit 1 if
    it is not running."""
    status = fleet_console.fleet_status(options.fleet_dir())
    if as_json:
        typer.echo(json.dumps(status.as_dict()))
    if not status.running or status.state is None:
        if not as_json:
            stale = f" (its launcher died without stopping: `{options.hint('down')}` cleans up)" if status.stale else ""
            typer.echo(f"fleet in {status.fleet_dir} is not running{stale}")
        raise typer.Exit(1)
    if as_json:
        return
    state = status.state
    typer.echo(f"fleet {state.fleet}: {state.status}  nats {state.nats.url}  launcher pid {status.launcher_pid}")
    rows = status.rows
    table = [(r.name, r.kind, r.state, r.id or "-", str(r.restarts), render.format_age(r.uptime_s)) for r in rows]
    Console(soft_wrap=True).print(render.ps_table(table))


@app.command()
def restart(actor: options.ActorArg) -> None:
    """Restart one actor of the running fleet: its own graceful stop, then a fresh start (an agent
    with a new credential; the vault reads .env again); not counted as a crash."""
    reply = asyncio.run(fleet_console.restart_actor(options.fleet_dir(), actor))
    typer.echo(reply.message)


@app.command()
def logs(
    actor: Annotated[str | None, typer.Argument(help="actor name (default: every log, prefixed)")] = None,
    follow: Annotated[bool, typer.Option("--follow", "-f", envvar="LEGION_LOGS_FOLLOW", help="keep printing")] = False,
    lines: Annotated[int, typer.Option("--lines", "-n", envvar="LEGION_LOGS_LINES", help="lines per log")] = 50,
) -> None:
    """Print the last lines of an actor's log (.legion/logs/<actor>.log), or of every log with a
    "name | " prefix; -f keeps printing new lines until Ctrl-C."""
    name = actor
    files = launcher.log_files(options.fleet_dir(), name)
    prefix = name is None
    for f in files:
        _echo_lines([f"{f.name} | {line}" if prefix else line for line in launcher.tail_lines(f.path, lines)])
    if follow:
        with contextlib.suppress(KeyboardInterrupt):
            launcher.follow(files, lambda line: print(render.safe(line), flush=True), prefix=prefix)


@app.command()
def init(
    directory: Annotated[
        Path | None, typer.Argument(help="where to write the fleet (default: -C DIR, or here)", show_default=False)
    ] = None,
    template: Annotated[
        str, typer.Option("--template", "-t", envvar="LEGION_TEMPLATE", help=f"one of: {', '.join(TEMPLATES)}")
    ] = "starter",
    force: Annotated[bool, typer.Option("--force", help="overwrite an existing legion.yaml")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Write a working fleet: legion.yaml (offline model by default), agents/<name>/ workspace files
    and a .gitignore for .legion/ and .env. Refuses to overwrite legion.yaml without --force."""
    fleet_dir = directory if directory is not None else options.fleet_dir()
    report = init_fleet(InitSpec(fleet_dir=fleet_dir, template=template, force=force))
    if as_json:
        doc = {"fleet_dir": str(fleet_dir), "template": template, "agents": report.agents}
        typer.echo(json.dumps({**doc, "written": report.written, "kept": report.kept}))
        return
    typer.echo(f"wrote the {template} fleet to {fleet_dir}: {', '.join(report.written) or 'nothing new'}")
    if report.kept:
        typer.echo(f"kept existing: {', '.join(report.kept)}")
    where = fleet_dir.resolve()
    task = options.hint(f'task {report.agents[0]} "say hello"', where)
    typer.echo(f"next: {options.hint('up -d', where)}   then: {task}")


# -- console: tail, publish, creds ---------------------------------------------------------------
creds_app = typer.Typer(no_args_is_help=True, help="Credentials for external systems.")
app.add_typer(creds_app, name="creds")


@app.command()
def tail(
    subject_filter: Annotated[
        str | None,
        typer.Argument(
            envvar="LEGION_TAIL_FILTER", help="subject filter under legion.events. or legion.ext. (wildcards allowed)"
        ),
    ] = None,
    *,
    since: Annotated[
        str | None, typer.Option("--since", envvar="LEGION_TAIL_SINCE", help="start 10m, 2h, 1d ago (or ISO time)")
    ] = None,
    from_seq: Annotated[
        int | None, typer.Option("--from-seq", envvar="LEGION_TAIL_FROM_SEQ", help="start at this stream sequence")
    ] = None,
    follow: Annotated[
        bool, typer.Option("--follow", "-f", envvar="LEGION_TAIL_FOLLOW", help="keep printing until Ctrl-C")
    ] = False,
    as_json: JsonOpt = False,
    agent: Annotated[
        str | None, typer.Option("--agent", envvar="LEGION_TAIL_AGENT", help="only events of this agent/source")
    ] = None,
    event_type: Annotated[
        str | None,
        typer.Option("--type", envvar="LEGION_TAIL_TYPE", help="only this Legion-Type tag (or subject type)"),
    ] = None,
) -> None:
    """Print events of the EVENTS stream: the last 20, or from --since/--from-seq; --follow keeps going."""
    fleet_dir = options.fleet_dir()
    spec = console.TailSpec(
        fleet_dir=fleet_dir,
        filter=subject_filter,
        since=since,
        from_seq=from_seq,
        follow=follow,
        agent=agent,
        type=event_type,
    )
    color = sys.stdout.isatty() and not as_json

    def show(events: list[console.TailEvent]) -> None:
        text = "\n".join(render.tail_lines(events, as_json=as_json, color=color))
        sys.stdout.write(text + "\n")
        sys.stdout.flush()

    asyncio.run(console.tail(spec, show))


@app.command("publish")
def publish_cmd(
    subject: Annotated[str, typer.Argument(help="a subject under legion.events.<source>. or legion.ext.<source>.")],
    payload: Annotated[str, typer.Argument(help="a JSON document, or @file")],
    event_type: Annotated[
        str | None, typer.Option("--type", envvar="LEGION_PUBLISH_TYPE", help="contract tag, e.g. task.started.v1")
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Validate an event against its contract and store it in EVENTS with the admin credential."""
    fleet_dir = options.fleet_dir()
    spec = console.PublishSpec(subject=subject, payload=payload, type=event_type, fleet_dir=fleet_dir)
    done = asyncio.run(console.publish(spec))
    if as_json:
        typer.echo(json.dumps({"stream": done.stream, "seq": done.seq}))
    else:
        typer.echo(f"published {done.type} to {done.subject}: stream {done.stream} seq {done.seq}")


@creds_app.command("ingest")
def creds_ingest(
    source: Annotated[str, typer.Argument(help="the external system's name, [a-z0-9_-]{1,64}")],
    as_json: JsonOpt = False,
) -> None:
    """Mint a credential that may only publish legion.ext.SOURCE.> (the running server needs no reload)."""
    fleet_dir = options.fleet_dir()
    cred = console.ingest_credentials(fleet_dir, source)
    if as_json:
        typer.echo(
            json.dumps(
                {
                    "source": cred.source,
                    "creds": str(cred.creds),
                    "nats_url": cred.url,
                    "subject": cred.subject,
                    "inbox_prefix": cred.inbox_prefix,
                    "reload_needed": False,
                }
            )
        )
        return
    typer.echo(f"creds:        {cred.creds}")
    not_started = f"(fleet not started: run `{options.hint('up -d')}`)"
    typer.echo(f"nats url:     {cred.url or not_started}")
    typer.echo(f"may publish:  {cred.subject}")
    typer.echo(f"inbox prefix: {cred.inbox_prefix}  (use it for acked JetStream publishes; no JS API prefix)")
    typer.echo("the running server accepts it now: a new user (JWT) needs no reload")


agent_cmds.register(app)  # task, chat
data_cmds.register(app)  # costs, bb, vault, doctor
cron_cmds.register(app)  # cron ls|add|rm|pause|resume|run


def main() -> None:
    """Errors Legion knows print one line and exit 2; anything else prints one line naming the error
    and exits 1 (its traceback only with --log-level debug, never over the user's screen)."""
    private_files()  # .legion/ (keys, credentials, logs, stores) and workspaces: 0600/0700
    try:
        app(args=options.hoist_fleet_dir(sys.argv[1:]), prog_name="legion")
    except LegionError as exc:
        typer.secho(f"legion: {render.safe(str(exc))}", fg="red", err=True)
        sys.exit(2)
    except KeyboardInterrupt:
        sys.exit(130)
    except Exception as exc:  # noqa: BLE001 - the last line of defence: no traceback for the user
        if options.debugging():
            traceback.print_exc()
        typer.secho(
            f"legion: unexpected error: {type(exc).__name__}: {render.safe(str(exc))} "
            "(run with --log-level debug for the traceback, and please report it)",
            fg="red",
            err=True,
        )
        sys.exit(1)
