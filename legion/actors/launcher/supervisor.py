"""The launcher's supervisor: start the system actors (ledger, vault) through a backend, wait until
each has announced ActorStarted, restart what exits with backoff, give up on a crash loop, and
record every restart as an event. Agents join when the agent actor exists (issue "Launcher and CLI").
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import structlog
from nats.aio.msg import Msg

from legion.actors.ledger import ledger_permissions
from legion.actors.vault import vault_permissions
from legion.broker import Broker
from legion.contracts import subjects as subj
from legion.contracts.errors import Unavailable
from legion.contracts.lifecycle import ActorStopped
from legion.runtime.backends import ActorProcessSpec, Backend, ProcessBackend, RunningActor
from legion.runtime.fleet import FleetHealth, FleetNats

__all__ = ["Launcher", "SupervisorSpec"]

log = structlog.get_logger("legion.launcher")
SOURCE = "launcher"
Progress = Callable[[str, str], None]  # (actor, status)


@dataclass(frozen=True, slots=True)
class SupervisorSpec:
    backoff_s: tuple[float, ...] = (1.0, 2.0, 5.0, 10.0, 30.0)
    crash_loop_restarts: int = 5  # this many restarts within crash_loop_window_s: stop restarting
    crash_loop_window_s: float = 60.0
    start_timeout_s: float = 90.0  # the vault imports LiteLLM: seconds on a busy machine
    stop_grace_s: float = 15.0


@dataclass(slots=True)
class _Supervised:
    spec: ActorProcessSpec
    running: RunningActor | None = None
    started: asyncio.Event = field(default_factory=asyncio.Event)
    restarts: deque[float] = field(default_factory=deque)
    state: str = "starting"


def _secret_env(prefixes: tuple[str, ...]) -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k.startswith(prefixes)}


class Launcher:
    """``async with Launcher(fleet_dir) as launcher:`` runs NATS, the ledger and the vault."""

    def __init__(self, fleet_dir: Path, *, backend: Backend | None = None, spec: SupervisorSpec | None = None) -> None:
        self.fleet = FleetNats(fleet_dir)
        self.backend = backend or ProcessBackend()
        self.spec = spec or SupervisorSpec()
        self.actors: dict[str, _Supervised] = {}
        self._stopping = asyncio.Event()
        self._tasks: set[asyncio.Task[None]] = set()

    def _system_actors(self) -> list[ActorProcessSpec]:
        fleet_dir = self.fleet.fleet_dir
        logs = self.fleet.state_dir / "logs"
        vault_env = {
            **_secret_env(("LEGION_SYSTEM_", "LEGION_CRED_")),  # only the vault ever holds keys
            "LEGION_AGENTS_ACCOUNT": self.fleet.auth.keys.agents.public_key,
            "LEGION_LEDGER_SERVICE": "ledger",
        }
        return [
            ActorProcessSpec("ledger", "ledger", "legion.actors.ledger", fleet_dir, log_path=logs / "ledger.log"),
            ActorProcessSpec(
                "vault", "vault", "legion.actors.vault", fleet_dir, env=vault_env, log_path=logs / "vault.log"
            ),
        ]

    async def start(self, progress: Progress | None = None) -> FleetHealth:
        report = progress or (lambda _a, _s: None)
        auth = self.fleet.auth
        # service credentials before the server starts, so it loads them (and any revocations) at once
        auth.issue_service("ledger", ledger_permissions("ledger"), expires_in=None, replace=True)
        auth.issue_service("vault", vault_permissions("vault"), expires_in=None, replace=True)
        report("nats", "starting")
        health = await self.fleet.start()
        report("nats", f"healthy at {health.url}")
        admin = self.fleet.admin
        assert admin is not None
        self.actors = {s.name: _Supervised(spec=s) for s in self._system_actors()}

        async def on_started(msg: Msg) -> None:
            parsed = subj.EVENTS.parse(msg.subject)
            sup = self.actors.get(parsed["source"]) if parsed else None
            if sup is not None:
                sup.state = "healthy"
                sup.started.set()

        await admin.subscribe(subj.EVENTS.wildcard(type="actor.started"), on_started)
        for sup in self.actors.values():
            report(sup.spec.name, "starting")
            sup.running = await self.backend.start(sup.spec)
            task = asyncio.create_task(self._watch(sup, admin), name=f"supervise-{sup.spec.name}")
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        for sup in self.actors.values():
            try:
                async with asyncio.timeout(self.spec.start_timeout_s):
                    await sup.started.wait()
            except TimeoutError:
                raise Unavailable(
                    f"{sup.spec.name} did not start within {self.spec.start_timeout_s:g}s; see {sup.spec.log_path}"
                ) from None
            report(sup.spec.name, "healthy")
        return health

    async def _watch(self, sup: _Supervised, admin: Broker) -> None:
        """Restart ``sup`` whenever it exits, with backoff; stop restarting on a crash loop."""
        while sup.running is not None:
            code = await sup.running.wait()
            if self._stopping.is_set():
                return
            now = time.monotonic()
            sup.restarts.append(now)
            while sup.restarts and now - sup.restarts[0] > self.spec.crash_loop_window_s:
                sup.restarts.popleft()
            if len(sup.restarts) > self.spec.crash_loop_restarts:
                sup.state = "crash-loop"
                await self._record(
                    admin,
                    sup,
                    f"crash loop: {len(sup.restarts)} exits in "
                    f"{self.spec.crash_loop_window_s:g}s; not restarting (see {sup.spec.log_path})",
                    code,
                )
                return
            delay = self.spec.backoff_s[min(len(sup.restarts) - 1, len(self.spec.backoff_s) - 1)]
            sup.state = "restarting"
            await self._record(admin, sup, f"exited with code {code}; restarting in {delay:g}s", code)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(delay):
                    await self._stopping.wait()
            if self._stopping.is_set():
                return
            sup.started.clear()
            sup.running = await self.backend.start(sup.spec)

    async def _record(self, admin: Broker, sup: _Supervised, reason: str, code: int) -> None:
        log.warning("actor.exited", actor=sup.spec.name, reason=reason)
        event = ActorStopped(actor=sup.spec.name, reason=reason, exit_code=code)
        with contextlib.suppress(Exception):
            await admin.js_publish(subj.EVENTS.render(source=SOURCE, type="actor.stopped"), event)

    async def stop(self) -> None:
        """Stop every actor (SIGTERM, their own graceful shutdown), then NATS. Safe to call twice."""
        self._stopping.set()
        await asyncio.gather(
            *(s.running.stop(self.spec.stop_grace_s) for s in self.actors.values() if s.running is not None)
        )
        for task in list(self._tasks):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await self.fleet.stop()

    async def __aenter__(self) -> Launcher:
        try:
            await self.start()
        except BaseException:
            await self.stop()
            raise
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()
