"""A pull-consumer loop for durable consumers that the launcher created.

It keeps about two MSG.NEXT requests of ``batch`` messages outstanding and reads replies in a
subscription callback. Measured with bench/broker_bench.py (nats-py 2.16, two noisy runs): nats-py's
``fetch()`` loop reached 0.61-0.91x of its rate, not the 5x gap seen earlier; we keep it for that
and for the control it gives over prefetch, keep-alive and shutdown.

Per message: decode leniently, run the handler, then ack (so the message goes away only after
its effect is durable). A failing handler is nak'ed with backoff; once a message has been
delivered ``max_deliver`` times, or if it cannot be decoded at all, it is terminated and a
``DeadLettered`` event records it, and the consumer keeps going. Every message held locally (being
handled or waiting in the prefetch queue) gets ``+WPI`` (in progress) so JetStream does not
redeliver it meanwhile.

A raw consumer (``ConsumeSpec.raw``) hands messages that do not decode to its handler as an
:class:`UnknownEvent` (raw body, tag, headers) with ``Delivery.decode_error`` set, instead of
dead-lettering them, so the handler can reject them itself (the agent's events consumer does, with
an ``IngestRejected`` event).

Stopping: no new pulls; in-flight handlers finish; queued messages that no handler started, and
any that still arrive, stay held (kept alive) until the server has answered every outstanding
pull request (at most ``expires_s``); then they are all nak'ed at once, so whoever pulls next gets
them right away, instead of after ``ack_wait`` from a dead inbox, and each burns one delivery only.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import msgspec
import structlog
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription

from legion.broker.client import Broker
from legion.broker.trace import new_id, trace_scope
from legion.contracts import headers as h
from legion.contracts import subjects as subj
from legion.contracts.base import Message, UnknownEvent
from legion.contracts.codec import decode
from legion.contracts.errors import ContractError, LegionError
from legion.contracts.lifecycle import DeadLettered

__all__ = ["ConsumeSpec", "Delivery", "PullConsumer"]

log = structlog.get_logger("legion.broker.consume")

_ACK, _NAK, _WPI, _TERM = b"+ACK", b"-NAK", b"+WPI", b"+TERM"


@dataclass(frozen=True, slots=True)
class ConsumeSpec:
    stream: str
    durable: str
    batch: int = 256  # use a small batch for slow handlers (agents): prefetched work is held, not shared
    expires_s: float = 5.0
    concurrency: int = 1
    max_deliver: int = 5
    backoff_s: tuple[float, ...] = (0.2, 1.0, 5.0, 30.0)
    in_progress_every_s: float = 10.0
    dead_letter_source: str | None = None  # the <source> of DeadLettered events; None: log only
    strict: bool = False  # decode unknown tags as errors (tests) instead of UnknownEvent
    ack_sync: bool = False  # wait for the server to confirm each ack
    raw: bool = False  # hand undecodable messages to the handler (Delivery.decode_error) instead of dead-lettering


@dataclass(frozen=True, slots=True)
class Delivery:
    """One message handed to a handler."""

    msg: Msg
    message: Message | UnknownEvent
    subject: str
    stream_seq: int
    deliveries: int
    trace: str
    decode_error: str = ""
    """Raw consumers only: why the body did not decode (``message`` is then an UnknownEvent of it)."""


Handler = Callable[[Delivery], Awaitable[None]]


class PullConsumer:
    """Consume ``spec.durable`` until :meth:`stop`. ``await consumer.run()`` inside a TaskGroup."""

    def __init__(self, broker: Broker, spec: ConsumeSpec, handler: Handler) -> None:
        self.broker = broker
        self.spec = spec
        self.handler = handler
        self._queue: asyncio.Queue[Msg] = asyncio.Queue()
        self._requested = 0
        self._inbox = f"{broker.inbox_prefix}.{new_id()}"
        self._next_subject = f"{broker.js_api_prefix}.CONSUMER.MSG.NEXT.{spec.stream}.{spec.durable}"
        self._sub: Subscription | None = None
        self._stopping = asyncio.Event()
        self._last_activity = time.monotonic()
        self._held: dict[str, Msg] = {}  # reply subject -> message received and not yet acked/nak'ed/termed
        self._requests_done = asyncio.Event()
        self.processed = 0
        self.dead_lettered = 0

    # -- pulling ---------------------------------------------------------------------------
    async def _pull(self, n: int, *, confirm: bool = False) -> None:
        body = msgspec.json.encode({"batch": n, "expires": int(self.spec.expires_s * 1e9)})
        self._requested += n
        self._requests_done.clear()
        await self.broker.nc.publish(self._next_subject, body, reply=self._inbox)
        if confirm:  # the first pull proves that this credential may read the consumer
            await self.broker.confirm_allowed("publish", self._next_subject)

    async def _refill(self) -> None:
        if self._stopping.is_set():
            return
        budget = 2 * self.spec.batch
        while self._requested + self._queue.qsize() <= budget - self.spec.batch:
            await self._pull(self.spec.batch)

    async def _on_msg(self, msg: Msg) -> None:
        self._last_activity = time.monotonic()
        status = msg.headers.get("Status") if msg.headers else None
        if status is None:
            self._requested = max(0, self._requested - 1)
            self._held[msg.reply] = msg  # kept alive with +WPI until handled or handed back
            if not self._stopping.is_set():
                self._queue.put_nowait(msg)
            self._note_requests()
            return
        if status == "100":  # idle heartbeat / flow control
            return
        # 404 no messages, 408 request expired, 409 limits/leadership: the request is over
        pending = msg.headers.get("Nats-Pending-Messages") if msg.headers else None
        if pending is not None:
            self._requested = max(0, self._requested - int(pending))
        else:
            self._requested = 0
        if status == "409":
            log.warning(
                "consumer.pull_status", status=status, detail=msg.headers.get("Description") if msg.headers else ""
            )
        self._note_requests()
        await self._refill()

    def _note_requests(self) -> None:
        if self._requested == 0:
            self._requests_done.set()
        else:
            self._requests_done.clear()

    async def _settle(self, msg: Msg, verdict: bytes) -> None:
        self._held.pop(msg.reply, None)
        await self.broker.nc.publish(msg.reply, verdict)

    async def _watchdog(self) -> None:
        """If nothing at all arrives for longer than a pull's lifetime, the requests were lost
        (server restart, reconnect): forget them and pull again."""
        while not self._stopping.is_set():
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.spec.expires_s):
                    await self._stopping.wait()
            if time.monotonic() - self._last_activity > self.spec.expires_s + 2 and self.broker.nc.is_connected:
                self._requested = 0
                await self._refill()

    # -- handling --------------------------------------------------------------------------
    async def _worker(self) -> None:
        while True:
            msg = await self._queue.get()
            try:
                if not self._stopping.is_set():  # once stopping, it stays held and is handed back at the end
                    await self._handle(msg)
            finally:
                self._queue.task_done()
            await self._refill()

    async def _keep_alive(self) -> None:
        """+WPI for every message held locally, queued or in a handler, so none passes ack_wait."""
        while True:
            await asyncio.sleep(self.spec.in_progress_every_s)
            for reply in list(self._held):
                await self.broker.nc.publish(reply, _WPI)

    async def _handle(self, msg: Msg) -> None:
        meta = msg.metadata
        deliveries = meta.num_delivered or 1
        seq = meta.sequence.stream
        trace = (msg.headers or {}).get(h.TRACE) or new_id()
        if deliveries > self.spec.max_deliver:
            await self._dead_letter(msg, seq, deliveries, f"delivered {deliveries} times without success")
            return
        decode_error = ""
        try:
            message: Message | UnknownEvent = decode(msg.data, msg.headers, strict=self.spec.strict)
        except ContractError as exc:
            if not self.spec.raw:
                await self._dead_letter(msg, seq, deliveries, str(exc))
                return
            decode_error = str(exc)
            message = UnknownEvent(tag=exc.tag or "", data=bytes(msg.data), headers=dict(msg.headers or {}))
        delivery = Delivery(
            msg=msg,
            message=message,
            subject=msg.subject,
            stream_seq=seq,
            deliveries=deliveries,
            trace=trace,
            decode_error=decode_error,
        )
        try:
            with trace_scope(trace), structlog.contextvars.bound_contextvars(trace=trace, subject=msg.subject):
                await self.handler(delivery)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - any handler failure is retried or dead-lettered, never lost
            await self._failed(msg, seq, deliveries, exc)
            return
        await self._ack(msg)
        self.processed += 1

    async def _ack(self, msg: Msg) -> None:
        self._held.pop(msg.reply, None)
        if self.spec.ack_sync:
            await self.broker.request_raw(msg.reply, _ACK)
        else:
            await self.broker.nc.publish(msg.reply, _ACK)

    async def _failed(self, msg: Msg, seq: int, deliveries: int, exc: Exception) -> None:
        retryable = getattr(exc, "retryable", not isinstance(exc, LegionError))
        if not retryable or deliveries >= self.spec.max_deliver:
            await self._dead_letter(msg, seq, deliveries, f"{type(exc).__name__}: {exc}")
            return
        backoff = self.spec.backoff_s[min(deliveries - 1, len(self.spec.backoff_s) - 1)]
        log.warning("message.retry", seq=seq, deliveries=deliveries, delay=backoff, error=str(exc))
        await self._settle(msg, _NAK + b" " + msgspec.json.encode({"delay": int(backoff * 1e9)}))

    async def _dead_letter(self, msg: Msg, seq: int, deliveries: int, error: str) -> None:
        await self._settle(msg, _TERM)
        self.dead_lettered += 1
        tag = (msg.headers or {}).get(h.TYPE, "")
        log.error("message.dead_lettered", stream=self.spec.stream, seq=seq, deliveries=deliveries, error=error)
        if self.spec.dead_letter_source is None:
            return
        event = DeadLettered(
            stream=self.spec.stream,
            subject=msg.subject,
            sequence=seq,
            deliveries=deliveries,
            error=error[:2000],
            message_type=tag,
        )
        subject = subj.EVENTS.render(source=self.spec.dead_letter_source, type="deadletter")
        try:
            await self.broker.js_publish(subject, event, msg_id=f"dl-{self.spec.stream}-{seq}")
        except LegionError as exc:  # the message is terminated either way; the log line remains
            log.exception("message.dead_letter_report_failed", seq=seq, error=str(exc))

    # -- lifecycle -------------------------------------------------------------------------
    async def run(self) -> None:
        """Consume until :meth:`stop`; then finish in-flight messages and return."""
        self._sub = await self.broker.subscribe(self._inbox, self._on_msg)
        try:
            async with asyncio.TaskGroup() as tg:
                workers = [tg.create_task(self._worker(), name=f"worker-{i}") for i in range(self.spec.concurrency)]
                helpers = [
                    tg.create_task(self._watchdog(), name="watchdog"),
                    tg.create_task(self._keep_alive(), name="keep-alive"),
                ]
                await self._pull(self.spec.batch, confirm=True)
                await self._refill()
                await self._stopping.wait()
                await self._queue.join()  # in-flight handlers finished; unstarted messages stay held
                # Outstanding pull requests would deliver into a dead inbox, and a message nak'ed now
                # would be redelivered to them: wait until the server has answered them all (408 on
                # expiry), then hand back everything held in one go, to whoever pulls next.
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(self.spec.expires_s + 1):
                        await self._requests_done.wait()
                await self._sub.unsubscribe()
                for msg in list(self._held.values()):
                    await self._settle(msg, _NAK)
                for task in (*workers, *helpers):
                    task.cancel()
            # acks are plain publishes: make sure the server has them before we report "stopped"
            if self.broker.nc.is_connected:
                await self.broker.nc.flush()
        finally:
            if self._sub is not None:
                with contextlib.suppress(Exception):
                    await self._sub.unsubscribe()

    def stop(self) -> None:
        """Stop fetching; :meth:`run` returns once in-flight work is done. Safe to call twice."""
        self._stopping.set()
