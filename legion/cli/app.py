"""``legion``: commands parse options (each declared once, with an env var) and call the runtime."""

from __future__ import annotations

import asyncio
import json
import signal
import sys
from pathlib import Path
from typing import Annotated

import typer

from legion.broker import FleetAuth
from legion.contracts import LegionError
from legion.contracts.schema import write_schemas
from legion.runtime import FleetHealth, FleetNats, state_dir_of
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


def _print_health(health: FleetHealth, as_json: bool) -> None:
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
    for agent in health.agents:
        typer.echo(f"  agent  {agent}: credentials in .legion/creds/{agent}.creds")
    if health.report.created:
        typer.echo(f"  created: {', '.join(health.report.created)}")


async def _up(fleet_dir: Path, as_json: bool, once: bool) -> None:
    fleet = FleetNats(fleet_dir)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        health = await fleet.start()
        _print_health(health, as_json)
        if not once:
            if not as_json:
                typer.echo("press Ctrl-C to stop")
            await stop.wait()
    finally:
        await fleet.stop()
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
    """Start the fleet's NATS (embedded by default), accounts, streams and credentials; report health."""
    asyncio.run(_up(fleet_dir, as_json, once))


def main() -> None:
    try:
        app()
    except LegionError as exc:
        typer.secho(f"legion: {exc}", fg="red", err=True)
        sys.exit(2)
