"""The actor host: runs one actor's routes, heartbeats and shutdown in one TaskGroup.

Shutdown order (safe to call twice): stop fetching (consumers stop pulling, service subscriptions
end), finish in-flight work within ``grace_s``, cancel the rest, ``on_stop`` (close stores), then
announce ActorStopped. The caller owns the broker and drains it afterwards.

``HostSpec.consumers`` route each message by its contract type to the actor's handler.
``HostSpec.raw_consumers`` hand every delivery, also one that does not decode
(``Delivery.decode_error``), to one method, ``await actor.on_delivery(delivery, ctx)``: for
consumers whose messages come from outside and are validated by the actor itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import os
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import structlog
from nats.aio.msg import Msg

from legion.broker import Broker, ConsumeSpec, Delivery, PullConsumer, new_id, trace_scope
from legion.contracts import headers as h
from legion.contracts import subjects as subj
from legion.contracts.base import Message, Reply, UnknownEvent
from legion.contracts.codec import decode, encode
from legion.contracts.errors import ConfigError, ContractError, LegionError
from legion.contracts.lifecycle import ActorStarted, ActorStopped, Heartbeat
from legion.contracts.service import ServiceError
from legion.runtime.host.actor import Actor, Context, Route, routes_of

__all__ = ["ActorHost", "HostSpec", "ServiceSpec"]

log = structlog.get_logger("legion.runtime.host.actor_host")


@dataclass(frozen=True, slots=True)
class ServiceSpec:
    """A request/reply subscription. Instances of one service share ``queue`` to scale out.

    ``concurrency`` bounds the requests in flight; the subscription waits for a free slot, so a
    request queues behind every earlier one. ``None``: the host does not bound them and starts each
    request's handler at once, then yields, so that the actor's subscriptions take turns (one
    subscription's backlog is not handed over in one go ahead of another's request); the actor
    admits requests itself (the vault's per-agent fair scheduler).
    """

    subject: str
    queue: str = ""
    concurrency: int | None = 64


@dataclass(frozen=True, slots=True)
class HostSpec:
    consumers: tuple[ConsumeSpec, ...] = ()
    raw_consumers: tuple[ConsumeSpec, ...] = ()
    """Delivered to ``actor.on_delivery(delivery, ctx)`` unrouted, undecodable messages included."""
    services: tuple[ServiceSpec, ...] = ()
    heartbeat_s: float = 5.0
    grace_s: float = 10.0
    announce: bool = True


class ActorHost:
    def __init__(self, actor: Actor, broker: Broker, spec: HostSpec) -> None:
        self.actor = actor
        self.broker = broker
        self.spec = spec
        self.routes = routes_of(type(actor))
        self._raw_handler: Callable[[Delivery, Context], Awaitable[None]] | None = getattr(actor, "on_delivery", None)
        if spec.raw_consumers and not callable(self._raw_handler):
            raise ConfigError(
                f"{type(actor).__qualname__} has raw consumers but no 'async def on_delivery(self, delivery, ctx)'"
            )
        self._stopping = asyncio.Event()
        self._consumers: list[PullConsumer] = []
        self._inflight: set[asyncio.Task[None]] = set()
        self._started = time.monotonic()
        self.ready = asyncio.Event()

    def _ctx(self, trace: str, msg: Msg | None) -> Context:
        return Context(broker=self.broker, actor=self.actor.name, trace=trace, msg=msg, log=self.actor.log)

    def _route(self, message: Message | UnknownEvent, *, replies: bool) -> Route:
        route = self.routes.get(type(message)) if isinstance(message, Message) else None
        if route is None or route.replies != replies:
            tag = message.tag if isinstance(message, UnknownEvent) else message.contract_tag()
            raise ContractError(f"{self.actor.name} has no handler for {tag!r}", tag=tag)
        return route

    # -- consumers -------------------------------------------------------------------------
    async def _on_delivery(self, d: Delivery) -> None:
        route = self._route(d.message, replies=False)
        await getattr(self.actor, route.method)(d.message, self._ctx(d.trace, d.msg))

    async def _on_raw_delivery(self, d: Delivery) -> None:
        assert self._raw_handler is not None
        await self._raw_handler(d, self._ctx(d.trace, d.msg))

    # -- services --------------------------------------------------------------------------
    async def _serve(self, msg: Msg, limit: asyncio.Semaphore | None) -> None:
        trace = (msg.headers or {}).get(h.TRACE) or new_id()
        reply: Reply
        try:
            with trace_scope(trace), structlog.contextvars.bound_contextvars(trace=trace, subject=msg.subject):
                message = decode(msg.data, msg.headers)
                route = self._route(message, replies=True)
                result = await getattr(self.actor, route.method)(message, self._ctx(trace, msg))
                reply = result if isinstance(result, Reply) else ServiceError(code="internal", message="no reply")
        except asyncio.CancelledError:
            raise
        except ContractError as exc:
            reply = ServiceError(code="invalid", message=str(exc))
        except LegionError as exc:
            reply = ServiceError(code=type(exc).__name__, message=str(exc), retryable=exc.retryable)
        except Exception as exc:
            log.exception("service.handler_failed", actor=self.actor.name, subject=msg.subject)
            reply = ServiceError(code="internal", message=f"{type(exc).__name__}", retryable=True)
        finally:
            if limit is not None:
                limit.release()
        if msg.reply:
            data, headers = encode(reply)
            headers[h.TRACE] = trace
            await self.broker.nc.publish(msg.reply, data, headers=headers)

    async def _service_loop(self, spec: ServiceSpec, tg: asyncio.TaskGroup, subscribed: asyncio.Event) -> None:
        limit = asyncio.Semaphore(spec.concurrency) if spec.concurrency is not None else None

        async def on_msg(msg: Msg) -> None:
            if limit is not None:
                await limit.acquire()  # back-pressure: at most `concurrency` requests in flight
            task = tg.create_task(self._serve(msg, limit))
            self._inflight.add(task)
            task.add_done_callback(self._inflight.discard)
            if limit is None:
                await asyncio.sleep(0)  # let the other subscriptions hand over theirs

        sub = await self.broker.subscribe(spec.subject, on_msg, queue=spec.queue)
        subscribed.set()
        try:
            await self._stopping.wait()
        finally:
            # drain, not unsubscribe: requests the server already delivered to us are still served
            # (with unsubscribe they were dropped and their callers waited for a timeout)
            with contextlib.suppress(Exception):
                await sub.drain()  # type: ignore[no-untyped-call]  # nats-py leaves it unannotated

    # -- heartbeats and lifecycle ----------------------------------------------------------
    async def _heartbeats(self) -> None:
        subject = subj.HEALTH.render(actor=self.actor.name)
        seq = 0
        while not self._stopping.is_set():
            seq += 1
            beat = Heartbeat(
                actor=self.actor.name, seq=seq, uptime_s=time.monotonic() - self._started, inflight=len(self._inflight)
            )
            with contextlib.suppress(LegionError):
                await self.broker.publish(subject, beat)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.spec.heartbeat_s):
                    await self._stopping.wait()

    async def _announce(self, event: ActorStarted | ActorStopped) -> None:
        if not self.spec.announce:
            return
        try:
            await self._ctx(new_id(), None).emit(event)
        except LegionError as exc:
            log.warning("actor.announce_failed", actor=self.actor.name, error=str(exc))

    async def run(self) -> None:
        """Run until :meth:`stop`; returns after the shutdown sequence."""
        await self.actor.on_start(self._ctx(new_id(), None))
        reason = "stopped"
        try:
            async with asyncio.TaskGroup() as tg:
                for cspec in self.spec.consumers:
                    consumer = PullConsumer(self.broker, cspec, self._on_delivery)
                    self._consumers.append(consumer)
                    tg.create_task(consumer.run(), name=f"consume-{cspec.durable}")
                for cspec in self.spec.raw_consumers:
                    consumer = PullConsumer(self.broker, dataclasses.replace(cspec, raw=True), self._on_raw_delivery)
                    self._consumers.append(consumer)
                    tg.create_task(consumer.run(), name=f"consume-{cspec.durable}")
                subscribed = []
                for sspec in self.spec.services:
                    event = asyncio.Event()
                    subscribed.append(event)
                    tg.create_task(self._service_loop(sspec, tg, event), name=f"serve-{sspec.subject}")
                for event in subscribed:  # ActorStarted and `ready` mean "requests are answered now"
                    await event.wait()
                if self.spec.heartbeat_s > 0:  # 0: no heartbeats (agents may not publish on legion.health)
                    tg.create_task(self._heartbeats(), name="heartbeats")
                await self._announce(ActorStarted(actor=self.actor.name, kind=self.actor.kind, pid=os.getpid()))
                self.ready.set()
                await self._stopping.wait()
                for consumer in self._consumers:
                    consumer.stop()
                if self._inflight:
                    _done, pending = await asyncio.wait(set(self._inflight), timeout=self.spec.grace_s)
                    for task in pending:
                        task.cancel()
        except BaseException as exc:
            reason = f"crashed: {type(exc).__name__}: {exc}"
            raise
        finally:
            await self.actor.on_stop()
            await self._announce(ActorStopped(actor=self.actor.name, reason=reason))

    def stop(self) -> None:
        """Begin the shutdown sequence. Safe to call twice."""
        self._stopping.set()
