"""Run one actor as its own OS process: connect with only its own credentials, host it, stop on SIGTERM.

Every actor's ``__main__`` calls :func:`run_actor_process`; the launcher starts them as
``python -m legion.actors.<kind> --fleet-dir DIR --name NAME``.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import signal
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path

import structlog

from legion.broker import Broker, ConnectSpec
from legion.contracts.errors import ConfigError, LegionError
from legion.runtime.config import FleetConfig, load_config, state_dir_of
from legion.runtime.host.actor import Actor
from legion.runtime.host.actor_host import ActorHost, HostSpec
from legion.runtime.host.hardening import private_files
from legion.runtime.host.logs import configure_logging

__all__ = ["CONFIG_EXIT", "ActorFactory", "actor_args", "run_actor_process"]

CONFIG_EXIT = 2
"""Exit code of an actor whose configuration is invalid; the launcher does not restart it."""

log = structlog.get_logger("legion.runtime.host.process")

ActorFactory = Callable[[str, FleetConfig, Path], Awaitable[tuple[Actor, HostSpec]]]
"""(name, fleet config, fleet dir) -> the actor and how to host it."""


def actor_args(kind: str, argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog=f"python -m legion.actors.{kind}")
    parser.add_argument("--fleet-dir", type=Path, default=Path("."), help="fleet directory (legion.yaml, .legion/)")
    parser.add_argument("--name", default=kind, help="actor name (its credentials: .legion/creds/<name>.creds)")
    parser.add_argument("--url", default=None, help="NATS URL (default: .legion/nats.url)")
    parser.add_argument("--log-level", default="info")
    return parser.parse_args(argv)


async def _main(kind: str, factory: ActorFactory, args: argparse.Namespace) -> None:
    fleet_dir = args.fleet_dir.resolve()
    state = state_dir_of(fleet_dir)
    url = args.url or (state / "nats.url").read_text(encoding="utf-8").strip()
    creds = state / "creds" / f"{args.name}.creds"
    config = load_config(fleet_dir)
    actor, spec = await factory(args.name, config, fleet_dir)
    # What is alive now (imports, config, LiteLLM's ~320k objects in the vault) lives as long as the
    # process: collect once and freeze it out of later collections, which otherwise stalled the event
    # loop for ~140 ms per full collection in the vault (measured with tests/e2e_money).
    gc.collect()
    gc.freeze()
    broker = await Broker.connect(ConnectSpec(url=url, creds=creds, name=f"legion-{kind}-{args.name}"))
    host = ActorHost(actor, broker, spec)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, host.stop)
    try:
        await host.run()
    finally:
        await broker.close()


def _loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    """uvloop unless LEGION_UVLOOP=0. bench/broker_bench.py measured +2.5-20 % on request/reply and
    publish-ack latency (p50) against asyncio's loop in the same run (noisy, shared machine): small,
    but free."""
    if os.environ.get("LEGION_UVLOOP", "1") == "0":
        return None
    try:
        import uvloop  # noqa: PLC0415 - optional: not on every platform
    except ImportError:
        return None
    factory: Callable[[], asyncio.AbstractEventLoop] = uvloop.new_event_loop
    return factory


def run_actor_process(kind: str, factory: ActorFactory, argv: list[str] | None = None) -> None:
    args = actor_args(kind, argv)
    private_files()
    configure_logging(level=args.log_level)
    try:
        with asyncio.Runner(loop_factory=_loop_factory()) as runner:
            runner.run(_main(kind, factory, args))
    except ConfigError as exc:  # restarting cannot fix a bad configuration: the launcher does not retry 2
        log.error("actor.failed", kind=kind, error=str(exc))  # noqa: TRY400 - the message says it all
        sys.exit(CONFIG_EXIT)
    except LegionError as exc:
        log.error("actor.failed", kind=kind, error=str(exc))  # noqa: TRY400 - the message says it all
        sys.exit(1)
