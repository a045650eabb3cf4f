"""``legion``: commands parse options (each declared once, with an env var) and call the runtime."""

from __future__ import annotations

import asyncio
import json
import signal
import sys
from pathlib import Path
from typing import Annotated

import typer

from legion.actors.launcher import Launcher
from legion.broker import FleetAuth
from legion.cli import agent_cmds, data_cmds
from legion.contracts import LegionError
from legion.contracts.schema import write_schemas
from legion.runtime import FleetHealth, console, state_dir_of
from legion.runtime.logs import configure_logging

__all__ = ["app", "main"]

app = typer.Typer(
    no_args_is_help=True, add_completion=False, help="Legion: isolated, budgeted LLM agent fleets on NATS."
)


@app.callback()
def _root(
    log_level: Annotated[
        str, typer.Option("--log-level", envvar="LEGION_LOG_LEVEL", help="debug, info, warning, error")
    ] = "warning",
    log_json: Annotated[bool, typer.Option("--log-json", envvar="LEGION_LOG_JSON", help="JSON log lines")] = False,
) -> None:
    """Logs go to stderr; stdout is for command output."""
    configure_logging(level=log_level, json_lines=log_json)


contracts_app = typer.Typer(no_args_is_help=True, help="Wire contracts.")
app.add_typer(contracts_app, name="contracts")
nats_app = typer.Typer(no_args_is_help=True, help="The fleet's NATS server.")
app.add_typer(nats_app, name="nats")

FleetDir = Annotated[
    Path, typer.Argument(envvar="LEGION_FLEET_DIR", help="fleet directory (holds legion.yaml and .legion/)")
]
JsonOpt = Annotated[bool, typer.Option("--json", envvar="LEGION_JSON", help="print JSON instead of text")]


@contracts_app.command("schema")
def contracts_schema(
    out: Annotated[Path, typer.Option("--out", envvar="LEGION_SCHEMA_DIR", help="output directory")] = Path("schema"),
) -> None:
    """Write a JSON Schema per contract (<tag>.json) and index.json, for publishers in any language."""
    files = write_schemas(out)
    typer.echo(f"wrote {len(files) - 1} contract schemas and index.json to {out}")


@nats_app.command("config")
def nats_config(fleet_dir: FleetDir = Path(".")) -> None:
    """Print the operator/account config block for running the fleet on your own nats-server.

    Include it in that server's config and set `nats: {url: ...}` in legion.yaml; the fleet's account
    keys stay in .legion/keys.
    """
    typer.echo(FleetAuth(state_dir_of(fleet_dir.resolve())).server_config())


def _print_health(health: FleetHealth, as_json: bool, actors: dict[str, str] | None = None) -> None:
    if as_json:
        typer.echo(
            json.dumps(
                {
                    "status": "healthy",
                    "nats_url": health.url,
                    "embedded": health.embedded,
                    "streams": health.streams,
                    "buckets": health.buckets,
                    "agents": health.agents,
                    "actors": actors or {},
                    "provisioned": {"created": health.report.created, "updated": health.report.updated},
                }
            )
        )
        return
    typer.secho(f"legion: healthy  nats {health.url}{' (embedded)' if health.embedded else ''}", fg="green")
    for name, count in health.streams.items():
        typer.echo(f"  stream {name:<7} {count} messages")
    for bucket in health.buckets:
        typer.echo(f"  bucket {bucket}")
    for name, state in (actors or {}).items():
        typer.echo(f"  actor  {name}: {state}")
    for agent in health.agents:
        typer.echo(f"  agent  {agent}: credentials in .legion/creds/{agent}.creds")
    if health.report.created:
        typer.echo(f"  created: {', '.join(health.report.created)}")


async def _up(fleet_dir: Path, as_json: bool, once: bool) -> None:
    launcher = Launcher(fleet_dir)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)

    def progress(actor: str, status: str) -> None:
        if not as_json:
            typer.echo(f"  {actor:<8} {status}")

    try:
        health = await launcher.start(progress)
        _print_health(health, as_json, actors={n: s.state for n, s in launcher.actors.items()})
        if not once:
            if not as_json:
                typer.echo("press Ctrl-C to stop")
            await stop.wait()
    finally:
        await launcher.stop()
        if not as_json:
            typer.echo("legion: stopped")


@app.command()
def up(
    fleet_dir: FleetDir = Path("."),
    as_json: JsonOpt = False,
    once: Annotated[
        bool, typer.Option("--once", envvar="LEGION_ONCE", help="provision, report health and stop")
    ] = False,
) -> None:
    """Start the fleet: NATS (embedded by default), accounts, streams, credentials, the ledger and the vault
    as supervised processes; report health and run until Ctrl-C (``--once``: stop after the report)."""
    asyncio.run(_up(fleet_dir, as_json, once))


# -- console: tail, publish, creds ---------------------------------------------------------------
creds_app = typer.Typer(no_args_is_help=True, help="Credentials for external systems.")
app.add_typer(creds_app, name="creds")

FleetDirOpt = Annotated[
    Path, typer.Option("--fleet-dir", envvar="LEGION_FLEET_DIR", help="fleet directory (holds .legion/)")
]


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
    fleet_dir: FleetDirOpt = Path("."),
) -> None:
    """Print events of the EVENTS stream: the last 20, or from --since/--from-seq; --follow keeps going."""
    spec = console.TailSpec(
        fleet_dir=fleet_dir,
        filter=subject_filter,
        since=since,
        from_seq=from_seq,
        follow=follow,
        as_json=as_json,
        agent=agent,
        type=event_type,
        color=sys.stdout.isatty(),
    )
    asyncio.run(console.tail(spec))


@app.command("publish")
def publish_cmd(
    subject: Annotated[str, typer.Argument(help="a subject under legion.events.<source>. or legion.ext.<source>.")],
    payload: Annotated[str, typer.Argument(help="a JSON document, or @file")],
    event_type: Annotated[
        str | None, typer.Option("--type", envvar="LEGION_PUBLISH_TYPE", help="contract tag, e.g. task.started.v1")
    ] = None,
    as_json: JsonOpt = False,
    fleet_dir: FleetDirOpt = Path("."),
) -> None:
    """Validate an event against its contract and store it in EVENTS with the admin credential."""
    spec = console.PublishSpec(subject=subject, payload=payload, type=event_type, fleet_dir=fleet_dir)
    done = asyncio.run(console.publish(spec))
    if as_json:
        typer.echo(json.dumps({"stream": done.stream, "seq": done.seq}))
    else:
        typer.echo(f"published {done.type} to {done.subject}: stream {done.stream} seq {done.seq}")


@creds_app.command("ingest")
def creds_ingest(
    source: Annotated[str, typer.Argument(help="the external system's name, [a-z0-9_-]{1,64}")],
    fleet_dir: FleetDirOpt = Path("."),
    as_json: JsonOpt = False,
) -> None:
    """Mint a credential that may only publish legion.ext.SOURCE.> (the running server needs no reload)."""
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
    typer.echo(f"nats url:     {cred.url or '(fleet not started: run `legion up`)'}")
    typer.echo(f"may publish:  {cred.subject}")
    typer.echo(f"inbox prefix: {cred.inbox_prefix}  (use it for acked JetStream publishes; no JS API prefix)")
    typer.echo("the running server accepts it now: a new user (JWT) needs no reload")


agent_cmds.register(app)  # task, chat
data_cmds.register(app)  # costs, bb, vault, doctor


def main() -> None:
    try:
        app()
    except LegionError as exc:
        typer.secho(f"legion: {exc}", fg="red", err=True)
        sys.exit(2)
