"""The launcher's supervisor: start the system actors (ledger, vault), then every agent of legion.yaml,
through a backend; wait until each has announced ActorStarted; restart what exits with backoff, give
up on a crash loop, record every restart as an event, and keep ``.legion/run/state.json`` current.
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
from legion.runtime.process import CONFIG_EXIT
from legion.runtime.state import ActorRecord, ActorStatus, FleetState, write_state

__all__ = ["AGENT_MODULE", "Launcher", "OnChange", "SupervisorSpec"]

log = structlog.get_logger("legion.launcher")

SOURCE = "launcher"
AGENT_MODULE = "legion.actors.agent"
OnChange = Callable[[FleetState], None]


@dataclass(frozen=True, slots=True)
class SupervisorSpec:
    backoff_s: tuple[float, ...] = (1.0, 2.0, 5.0, 10.0, 30.0)
    crash_loop_restarts: int = 5  # this many restarts within crash_loop_window_s: stop restarting
    crash_loop_window_s: float = 60.0
    start_timeout_s: float = 90.0  # the vault imports LiteLLM: seconds on a busy machine
    stop_grace_s: float = 15.0
    write_state: bool = True  # keep <fleet>/.legion/run/state.json current


@dataclass(slots=True)
class _Supervised:
    spec: ActorProcessSpec
    record: ActorRecord
    running: RunningActor | None = None
    started: asyncio.Event = field(default_factory=asyncio.Event)  # its ActorStarted arrived
    settled: asyncio.Event = field(default_factory=asyncio.Event)  # healthy or given up
    restarts: deque[float] = field(default_factory=deque)

    @property
    def state(self) -> ActorStatus:
        return self.record.state


def _secret_env(prefixes: tuple[str, ...]) -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k.startswith(prefixes)}


class Launcher:
    """``async with Launcher(fleet_dir) as launcher:`` runs NATS, the ledger, the vault and the agents."""

    def __init__(
        self,
        fleet_dir: Path,
        *,
        backend: Backend | None = None,
        spec: SupervisorSpec | None = None,
        on_change: OnChange | None = None,
    ) -> None:
        self.fleet = FleetNats(fleet_dir)
        self.backend = backend or ProcessBackend()
        self.spec = spec or SupervisorSpec()
        self.on_change = on_change
        self.actors: dict[str, _Supervised] = {}
        self.state = FleetState(
            fleet=self.fleet.config.fleet,
            fleet_dir=str(self.fleet.fleet_dir),
            launcher_pid=os.getpid(),
            started_at=time.time(),
        )
        self._stopping = asyncio.Event()
        self._tasks: set[asyncio.Task[None]] = set()

    # -- state ---------------------------------------------------------------------------------------
    def _changed(self) -> None:
        self.state.actors = {name: sup.record for name, sup in self.actors.items()}
        if self.spec.write_state:
            try:
                write_state(self.fleet.fleet_dir, self.state)
            except OSError as exc:  # a full disk must not take the fleet down
                log.warning("launcher.state_not_written", error=str(exc))
        if self.on_change is not None:
            self.on_change(self.state)

    def _set(self, sup: _Supervised, state: ActorStatus) -> None:
        sup.record.state = state
        if state in ("healthy", "crash-loop", "failed"):
            sup.settled.set()
        self._changed()

    # -- specs ---------------------------------------------------------------------------------------
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

    def _agent_actors(self) -> list[ActorProcessSpec]:
        """Agents get base_environment() only: no provider key, no credential, just their creds file."""
        logs = self.fleet.state_dir / "logs"
        return [
            ActorProcessSpec(
                name,
                "agent",
                AGENT_MODULE,
                self.fleet.fleet_dir,
                log_path=logs / f"{name}.log",
                memory_mb=self.fleet.config.limits_of(name).memory_mb,
                open_files=self.fleet.config.limits_of(name).open_files,
            )
            for name in self.fleet.config.agents
        ]

    # -- start ---------------------------------------------------------------------------------------
    async def start(self) -> FleetHealth:
        """NATS, then the ledger and the vault, then every agent (concurrently); returns when all are
        healthy. Raises Unavailable naming the actor and its log if one does not come up."""
        auth = self.fleet.auth
        # service credentials before the server starts, so it loads them (and any revocations) at once
        auth.issue_service("ledger", ledger_permissions("ledger"), expires_in=None, replace=True)
        auth.issue_service("vault", vault_permissions("vault"), expires_in=None, replace=True)
        self.state.nats.log = str(self.fleet.state_dir / "logs" / "nats-server.log")
        self._changed()
        health = await self.fleet.start()
        nats = self.state.nats
        nats.url, nats.embedded, nats.state = health.url, health.embedded, "healthy"
        nats.pid = self.fleet.server.pid if self.fleet.server is not None else None
        self.state.streams, self.state.buckets = dict(health.streams), list(health.buckets)
        self.state.provisioned = {"created": health.report.created, "updated": health.report.updated}
        admin = self.fleet.admin
        assert admin is not None
        system, agents = self._system_actors(), self._agent_actors()
        self.actors = {
            s.name: _Supervised(spec=s, record=ActorRecord(kind=s.kind, log=str(s.log_path))) for s in system + agents
        }
        self._changed()

        async def on_started(msg: Msg) -> None:
            parsed = subj.EVENTS.parse(msg.subject)
            sup = self.actors.get(parsed["source"]) if parsed else None
            if sup is not None and sup.running is not None and not self._stopping.is_set():
                sup.started.set()
                self._set(sup, "healthy")

        await admin.subscribe(subj.EVENTS.wildcard(type="actor.started"), on_started)
        await self._start_group([self.actors[s.name] for s in system], admin)
        await self._start_group([self.actors[a.name] for a in agents], admin)
        self.state.status = "running"
        self._changed()
        return health

    async def _start_group(self, group: list[_Supervised], admin: Broker) -> None:
        for sup in group:
            await self._spawn(sup)
            task = asyncio.create_task(self._watch(sup, admin), name=f"supervise-{sup.spec.name}")
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        await asyncio.gather(*(self._until_ready(sup) for sup in group))

    async def _until_ready(self, sup: _Supervised) -> None:
        try:
            async with asyncio.timeout(self.spec.start_timeout_s):
                await sup.settled.wait()
        except TimeoutError:
            raise Unavailable(
                f"{sup.spec.name} did not start within {self.spec.start_timeout_s:g}s; see {sup.spec.log_path}"
            ) from None
        if sup.record.state == "failed":
            raise Unavailable(
                f"{sup.spec.name} could not start: its configuration is invalid (exit code {CONFIG_EXIT}); "
                f"see {sup.spec.log_path}"
            )
        if sup.record.state != "healthy":
            raise Unavailable(f"{sup.spec.name} keeps exiting (crash loop); see {sup.spec.log_path}")

    async def _spawn(self, sup: _Supervised, *, fresh_credentials: bool = False) -> None:
        name = sup.spec.name
        if fresh_credentials and sup.spec.kind == "agent":  # agent credentials expire: a restart gets new ones
            self.fleet.auth.issue_agent(name, **self.fleet.config.agents[name].issue_options())
        sup.started.clear()
        sup.settled.clear()
        sup.running = await self.backend.start(sup.spec)
        sup.record.pid, sup.record.started_at = sup.running.pid, time.time()
        self._set(sup, "starting")

    async def _watch(self, sup: _Supervised, admin: Broker) -> None:
        """Restart ``sup`` whenever it exits, with backoff; stop restarting on a crash loop."""
        while sup.running is not None:
            code = await sup.running.wait()
            if self._stopping.is_set():
                return
            now = time.monotonic()
            sup.restarts.append(now)
            sup.record.restarts += 1
            sup.record.pid = None
            if code == CONFIG_EXIT:  # run_actor_process: a ConfigError; restarting cannot fix it
                self._set(sup, "failed")
                reason = f"exited with code {code} (invalid configuration); not restarting"
                await self._record(admin, sup, f"{reason} (see {sup.spec.log_path})", code)
                return
            while sup.restarts and now - sup.restarts[0] > self.spec.crash_loop_window_s:
                sup.restarts.popleft()
            if len(sup.restarts) > self.spec.crash_loop_restarts:
                self._set(sup, "crash-loop")
                await self._record(
                    admin,
                    sup,
                    f"crash loop: {len(sup.restarts)} exits in "
                    f"{self.spec.crash_loop_window_s:g}s; not restarting (see {sup.spec.log_path})",
                    code,
                )
                return
            delay = self.spec.backoff_s[min(len(sup.restarts) - 1, len(self.spec.backoff_s) - 1)]
            self._set(sup, "restarting")
            await self._record(admin, sup, f"exited with code {code}; restarting in {delay:g}s", code)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(delay):
                    await self._stopping.wait()
            if self._stopping.is_set():
                return
            await self._spawn(sup, fresh_credentials=True)

    async def _record(self, admin: Broker, sup: _Supervised, reason: str, code: int) -> None:
        log.warning("actor.exited", actor=sup.spec.name, reason=reason)
        event = ActorStopped(actor=sup.spec.name, reason=reason, exit_code=code)
        with contextlib.suppress(Exception):
            await admin.js_publish(subj.EVENTS.render(source=SOURCE, type="actor.stopped"), event)

    # -- stop ----------------------------------------------------------------------------------------
    async def _stop_all(self, group: list[_Supervised]) -> None:
        await asyncio.gather(*(s.running.stop(self.spec.stop_grace_s) for s in group if s.running is not None))
        for sup in group:
            sup.record.pid = None
            sup.record.state = "stopped"
        self._changed()

    async def stop(self) -> None:
        """Stop the agents, then the vault, then the ledger (SIGTERM, their own graceful shutdown), then
        NATS: nothing in flight is lost. Safe to call twice."""
        self._stopping.set()
        self.state.status = "stopping"
        self._changed()
        sups = list(self.actors.values())
        await self._stop_all([s for s in sups if s.spec.kind == "agent"])
        await self._stop_all([s for s in sups if s.spec.kind == "vault"])  # in-flight calls commit to the ledger
        await self._stop_all([s for s in sups if s.spec.kind not in ("agent", "vault")])
        for task in list(self._tasks):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await self.fleet.stop()
        self.state.nats.pid, self.state.nats.state = None, "stopped"
        self.state.status = "stopped"
        self._changed()

    async def __aenter__(self) -> Launcher:
        try:
            await self.start()
        except BaseException:
            await self.stop()
            raise
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()
