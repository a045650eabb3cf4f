"""The launcher's supervisor: start every actor of every registered kind (:mod:`legion.runtime.kinds`)
stage by stage through a backend; wait until each has announced ActorStarted; restart what exits with
backoff, give up on a crash loop, record every restart as an event, restart one actor on request
(``legion restart``), and keep ``.legion/run/state.json`` current. It names no kind itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import os
import time
from collections import deque
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import structlog
from nats.aio.msg import Msg

from legion.broker import Broker
from legion.contracts import subjects as subj
from legion.contracts.codec import decode
from legion.contracts.errors import ContractError, Unavailable
from legion.contracts.lifecycle import ActorStopped, RestartActor, RestartReply
from legion.runtime.fleet.backends import backend_for
from legion.runtime.fleet.backends.base import ActorSpec, Backend, RunningActor
from legion.runtime.fleet.nats import FleetHealth, FleetNats
from legion.runtime.fleet.state import ActorRecord, ActorStatus, FleetState, write_state
from legion.runtime.host.process import CONFIG_EXIT
from legion.runtime.kinds import ActorKind, FleetActor, KindContext, fleet_actors, kind_streams

__all__ = ["RESTART_SUBJECT", "Launcher", "OnChange", "SupervisorSpec"]

log = structlog.get_logger("legion.launcher")

SOURCE = "launcher"
RESTART_SUBJECT = subj.CONTROL.render(actor=SOURCE, command="restart")
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
    spec: ActorSpec
    kind: ActorKind
    record: ActorRecord
    running: RunningActor | None = None
    started: asyncio.Event = field(default_factory=asyncio.Event)  # its ActorStarted arrived
    settled: asyncio.Event = field(default_factory=asyncio.Event)  # healthy or given up
    restarts: deque[float] = field(default_factory=deque)
    watcher: asyncio.Task[None] | None = None  # restarts it whenever it exits

    @property
    def state(self) -> ActorStatus:
        return self.record.state


class Launcher:
    """``async with Launcher(fleet_dir) as launcher:`` runs NATS and every actor of every registered kind."""

    def __init__(
        self,
        fleet_dir: Path,
        *,
        backend: Backend | None = None,
        spec: SupervisorSpec | None = None,
        on_change: OnChange | None = None,
    ) -> None:
        self.fleet = FleetNats(fleet_dir)
        self.plan = fleet_actors(self.fleet.config)  # raises ConfigError before anything starts
        self.backend = backend or backend_for(self.fleet.config.runtime.backend)
        self.spec = spec or SupervisorSpec()
        self.on_change = on_change
        self.actors: dict[str, _Supervised] = {}
        self.state = FleetState(
            fleet=self.fleet.config.fleet,
            fleet_dir=str(self.fleet.fleet_dir),
            launcher_pid=os.getpid(),
            backend=self.backend.name,
            started_at=time.time(),
        )
        self._stopping = asyncio.Event()
        self._restart_lock = asyncio.Lock()
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
    def _spec(self, actor: FleetActor, ctx: KindContext) -> ActorSpec:
        """Agents get the base environment only: no provider key, no credential, just their creds file."""
        kind, config, fleet_dir = actor.kind, self.fleet.config, self.fleet.fleet_dir
        return ActorSpec(
            name=actor.name,
            kind=kind.name,
            module=kind.module,
            fleet_dir=fleet_dir,
            env=dict(kind.env(actor.name, ctx)),
            secrets=dict(kind.secrets(actor.name, ctx)),
            log_path=self.backend.log_path(fleet_dir, actor.name),
            limits=kind.limits(actor.name, config),
        )

    # -- start ---------------------------------------------------------------------------------------
    async def start(self) -> FleetHealth:
        """NATS, then the ledger and the vault, then every agent (concurrently); returns when all are
        healthy. Raises Unavailable naming the actor and its log if one does not come up."""
        auth, config = self.fleet.auth, self.fleet.config
        # service credentials before the server starts, so it loads them (and any revocations) at once
        for actor in self.plan:
            if actor.kind.permissions is not None and actor.kind.account == "LEGION":
                perms = actor.kind.permissions(actor.name, config)
                auth.issue_service(actor.name, perms, expires_in=None, replace=True)
        self.state.nats.log = str(self.fleet.state_dir / "logs" / "nats-server.log")
        self._changed()
        health = await self.fleet.start(kind_streams(self.plan, config))
        nats = self.state.nats
        nats.url, nats.embedded, nats.state = health.url, health.embedded, "healthy"
        nats.pid = self.fleet.server.pid if self.fleet.server is not None else None
        self.state.streams, self.state.buckets = dict(health.streams), list(health.buckets)
        self.state.provisioned = {"created": health.report.created, "updated": health.report.updated}
        admin = self.fleet.admin
        assert admin is not None
        if self.fleet.server is not None:
            self._spawn_task(self._watch_nats(), "supervise-nats")
        ctx = KindContext(
            fleet_dir=self.fleet.fleet_dir,
            config=config,
            agents_account=auth.keys.agents.public_key,
            environ=dict(os.environ),
        )
        stages: dict[int, list[_Supervised]] = {}
        for actor in self.plan:
            spec = self._spec(actor, ctx)
            sup = _Supervised(spec=spec, kind=actor.kind, record=ActorRecord(kind=spec.kind, log=str(spec.log_path)))
            self.actors[actor.name] = sup
            stages.setdefault(actor.kind.stage, []).append(sup)
        self._changed()

        async def on_started(msg: Msg) -> None:
            parsed = subj.EVENTS.parse(msg.subject)
            sup = self.actors.get(parsed["source"]) if parsed else None
            if sup is not None and sup.running is not None and not self._stopping.is_set():
                sup.started.set()
                self._set(sup, "healthy")

        await admin.subscribe(subj.EVENTS.wildcard(type="actor.started"), on_started)
        await admin.subscribe(RESTART_SUBJECT, self._on_restart)
        for stage in sorted(stages):
            await self._start_group(stages[stage], admin)
        self.state.status = "running"
        self._changed()
        return health

    async def _start_group(self, group: list[_Supervised], _admin: Broker) -> None:
        for sup in group:
            await self._spawn(sup)
            self._watch_task(sup)
        await asyncio.gather(*(self._until_ready(sup) for sup in group))

    def _spawn_task(self, work: Coroutine[Any, Any, None], name: str) -> asyncio.Task[None]:
        task = asyncio.create_task(work, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def _watch_nats(self) -> None:
        """Restart the embedded nats-server whenever it exits: same port, same store, the current
        accounts and revocations. Actors and the admin connection reconnect by themselves."""
        server = self.fleet.server
        assert server is not None
        nats = self.state.nats
        while not self._stopping.is_set():
            code = await server.wait()
            if self._stopping.is_set() or code is None:
                return
            log.warning("nats.exited", code=code)
            nats.pid, nats.state = None, "restarting"
            self._changed()
            attempt = 0
            while not self._stopping.is_set():
                delay = self.spec.backoff_s[min(attempt, len(self.spec.backoff_s) - 1)]
                attempt += 1
                server.spec = dataclasses.replace(server.spec, auth_config=self.fleet.auth.server_config())
                try:
                    await server.restart()
                except Unavailable as exc:
                    log.warning("nats.restart_failed", error=str(exc), retry_in_s=delay)
                    with contextlib.suppress(TimeoutError):
                        async with asyncio.timeout(delay):
                            await self._stopping.wait()
                    continue
                break
            if self._stopping.is_set():
                return
            nats.pid, nats.state = server.pid, "healthy"
            nats.restarts += 1
            self._changed()
            await self._record_event(
                ActorStopped(actor="nats", reason=f"nats-server exited with code {code}; restarted", exit_code=code)
            )

    def _watch_task(self, sup: _Supervised) -> None:
        admin = self.fleet.admin
        assert admin is not None
        task = asyncio.create_task(self._watch(sup, admin), name=f"supervise-{sup.spec.name}")
        sup.watcher = task
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

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
        if fresh_credentials and sup.kind.account == "AGENTS":  # agent credentials expire: a restart gets new ones
            self.fleet.auth.issue_agent(name, **self.fleet.config.agents[name].issue_options())
        sup.started.clear()
        sup.settled.clear()
        sup.running = await self.backend.start(sup.spec)
        sup.record.ref, sup.record.started_at = sup.running.ref, time.time()
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
            sup.record.ref = None
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
        await self._record_event(ActorStopped(actor=sup.spec.name, reason=reason, exit_code=code))

    async def _record_event(self, event: ActorStopped) -> None:
        admin = self.fleet.admin
        if admin is None:
            return
        with contextlib.suppress(Exception):
            await admin.js_publish(subj.EVENTS.render(source=SOURCE, type="actor.stopped"), event)

    # -- restart on request -------------------------------------------------------------------------
    async def restart(self, name: str) -> RestartReply:
        """Stop actor ``name`` (its own graceful shutdown) and start it again at once, with fresh
        credentials; not counted as a crash. Also brings back an actor given up on (crash loop)."""
        sup = self.actors.get(name)
        if sup is None:
            known = ", ".join(sorted(self.actors)) or "none"
            return RestartReply(actor=name, ok=False, message=f"no actor {name!r} in this fleet (actors: {known})")
        if self._stopping.is_set():
            return RestartReply(actor=name, ok=False, message="the fleet is stopping")
        async with self._restart_lock:
            watched = sup.watcher is not None and not sup.watcher.done()
            running, sup.running = sup.running, None  # its watcher sees None and leaves it to us
            if watched:
                assert sup.watcher is not None
                sup.watcher.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await sup.watcher
            sup.record.restarts += 1
            self._set(sup, "restarting")
            if running is not None:
                await running.stop(self.spec.stop_grace_s)
            sup.restarts.clear()
            await self._spawn(sup, fresh_credentials=True)
            self._watch_task(sup)
        await self._record_event(ActorStopped(actor=name, reason="restarted on request (legion restart)"))
        return RestartReply(actor=name, ok=True, message=f"{name} restarted")

    async def _on_restart(self, msg: Msg) -> None:
        try:
            request = decode(msg.data, msg.headers, strict=True, type=RestartActor)
        except ContractError as exc:
            reply = RestartReply(actor="", ok=False, message=f"invalid request: {exc}")
        else:
            reply = await self.restart(request.actor)
        admin = self.fleet.admin
        if admin is not None and msg.reply:
            with contextlib.suppress(Exception):
                await admin.publish(msg.reply, reply)

    # -- stop ----------------------------------------------------------------------------------------
    async def _stop_all(self, group: list[_Supervised]) -> None:
        await asyncio.gather(*(s.running.stop(self.spec.stop_grace_s) for s in group if s.running is not None))
        for sup in group:
            sup.record.ref = None
            sup.record.state = "stopped"
        self._changed()

    async def stop(self) -> None:
        """Stop every actor stage by stage in the reverse of the start order (agents, then the vault, then
        the ledger; each its own graceful shutdown), then NATS: nothing in flight is lost. Safe twice."""
        self._stopping.set()
        self.state.status = "stopping"
        self._changed()
        stages: dict[int, list[_Supervised]] = {}
        for sup in self.actors.values():
            stages.setdefault(sup.kind.stage, []).append(sup)
        for stage in sorted(stages, reverse=True):  # agents first, the vault before the ledger it commits to
            await self._stop_all(stages[stage])
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
