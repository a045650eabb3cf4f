"""Read a stream in order from a sequence on, then keep reading live: an ordered push consumer.

The consumer is ephemeral (AckNone, flow control, idle heartbeats, in memory) and delivers into
this connection's inbox, so a service credential needs nothing beyond ``$JS.API.>`` and its
inbox. Each message is handed to ``on_record`` exactly once and in stream order. A lost message (a
consumer-sequence gap, or a heartbeat reporting more than was received), a deleted consumer or a
server restart (heartbeats stop) is repaired by re-creating the consumer right after the last
applied sequence. Callers wait for "applied up to N" with :meth:`StreamFeed.wait_applied`.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass

import structlog
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription

from legion.actors.ledger.wire import StreamRecord
from legion.broker import Broker
from legion.broker.progress import AppliedWaiters
from legion.contracts.errors import LegionError, Unavailable

__all__ = ["FeedSpec", "StreamFeed"]

log = structlog.get_logger("legion.actors.ledger.feed")

_STATUS = "Status"
_LAST_CONSUMER = "Nats-Last-Consumer"
_STALLED = "Nats-Consumer-Stalled"


@dataclass(frozen=True, slots=True)
class FeedSpec:
    stream: str
    filter_subject: str
    heartbeat_s: float = 2.0
    inactive_s: float = 60.0
    """The server deletes the consumer this long after its subscriber went away (a killed process)."""


def parse_ack_subject(reply: str) -> tuple[int, int, int, int] | None:
    """(stream seq, consumer seq, timestamp ns, pending) from a ``$JS.ACK`` reply subject (v1 or v2)."""
    tokens = reply.split(".")
    if len(tokens) < 9 or tokens[0] != "$JS" or tokens[1] != "ACK":
        return None
    off = 0 if len(tokens) == 9 else 2  # v2 adds <domain>.<account hash> after $JS.ACK
    try:
        return int(tokens[5 + off]), int(tokens[6 + off]), int(tokens[7 + off]), int(tokens[8 + off])
    except (IndexError, ValueError):
        return None


class StreamFeed:
    """``await feed.start()``, then ``applied`` grows as ``on_record`` is called; ``await feed.stop()``."""

    def __init__(
        self, broker: Broker, spec: FeedSpec, on_record: Callable[[StreamRecord], None], *, after_seq: int
    ) -> None:
        self.broker = broker
        self.spec = spec
        self.on_record = on_record
        self.applied = after_seq
        self.caught_up = asyncio.Event()
        """Set once the feed has delivered everything the stream held when the consumer was made."""
        self.delivered = 0
        self.resets = 0
        self._gen = 0
        self._sub: Subscription | None = None
        self._consumer: str | None = None
        self._cseq = 0
        self._last_activity = time.monotonic()
        self._reset_wanted = asyncio.Event()
        self._waiters = AppliedWaiters()
        self._error: BaseException | None = None
        self._monitor: asyncio.Task[None] | None = None
        self._stopped = False

    # -- lifecycle ------------------------------------------------------------------------------
    async def start(self) -> None:
        await self._open()
        self._monitor = asyncio.create_task(self._watch(), name=f"feed-{self.spec.stream}")

    async def stop(self) -> None:
        """Stop reading and delete the consumer. Safe to call twice."""
        self._stopped = True
        self._gen += 1
        if self._monitor is not None:
            self._monitor.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._monitor
            self._monitor = None
        await self._close()
        self._waiters.fail(Unavailable(f"the {self.spec.stream} feed stopped"))

    async def _open(self) -> None:
        self._gen += 1
        gen = self._gen
        self._cseq = 0
        inbox = self.broker.nc.new_inbox()

        async def on_msg(msg: Msg) -> None:
            await self._on_msg(gen, msg)

        self._sub = await self.broker.subscribe(inbox, on_msg)
        config = {
            "deliver_subject": inbox,
            "deliver_policy": "by_start_sequence",
            "opt_start_seq": self.applied + 1,
            "ack_policy": "none",
            "filter_subject": self.spec.filter_subject,
            "replay_policy": "instant",
            "flow_control": True,
            "idle_heartbeat": int(self.spec.heartbeat_s * 1e9),
            "inactive_threshold": int(self.spec.inactive_s * 1e9),
            "mem_storage": True,
            "num_replicas": 1,
        }
        self._last_activity = time.monotonic()
        resp = await self.broker.js_api(
            f"CONSUMER.CREATE.{self.spec.stream}", {"stream_name": self.spec.stream, "config": config}
        )
        self._consumer = str(resp.get("name", ""))
        if int(resp.get("num_pending", 0)) == 0 and self._cseq == 0:
            self.caught_up.set()

    async def _close(self) -> None:
        sub, self._sub = self._sub, None
        consumer, self._consumer = self._consumer, None
        if sub is not None:
            with contextlib.suppress(Exception):
                await sub.unsubscribe()
        if consumer and not self.broker.nc.is_closed:
            with contextlib.suppress(LegionError, TimeoutError):
                await self.broker.js_api(f"CONSUMER.DELETE.{self.spec.stream}.{consumer}", timeout=2.0)

    async def _watch(self) -> None:
        """Re-create the consumer when a gap was seen or heartbeats stopped."""
        hb = self.spec.heartbeat_s
        while not self._stopped:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(hb):
                    await self._reset_wanted.wait()
            idle = time.monotonic() - self._last_activity > 3 * hb
            if not (self._reset_wanted.is_set() or idle) or self.broker.nc.is_closed:
                continue
            self._reset_wanted.clear()
            self.resets += 1
            log.info("ledger.feed_reset", stream=self.spec.stream, after=self.applied, idle=idle)
            try:
                await self._close()
                await self._open()
            except LegionError as exc:
                log.warning("ledger.feed_reset_failed", stream=self.spec.stream, error=str(exc))
                self._last_activity = time.monotonic()
                self._reset_wanted.set()
                await asyncio.sleep(hb)  # back off before the next attempt

    # -- delivery -------------------------------------------------------------------------------
    async def _on_msg(self, gen: int, msg: Msg) -> None:
        if gen != self._gen or self._error is not None:
            return
        self._last_activity = time.monotonic()
        headers = msg.headers
        if headers and _STATUS in headers:
            await self._on_status(msg, headers)
            return
        meta = parse_ack_subject(msg.reply or "")
        if meta is None:
            return
        sseq, cseq, ts_ns, pending = meta
        if cseq != self._cseq + 1:
            self._want_reset()
            return
        self._cseq = cseq
        if sseq > self.applied:
            try:
                self.on_record(StreamRecord(seq=sseq, ts_ns=ts_ns, subject=msg.subject, headers=headers, data=msg.data))
            except Exception as exc:
                # the state could not apply an event: stop here, fail closed, never skip it silently
                log.exception("ledger.apply_failed", seq=sseq, subject=msg.subject)
                self._error = exc
                self._waiters.fail(Unavailable(f"the ledger could not apply {self.spec.stream} #{sseq}: {exc!r}"))
                return
            self.applied = sseq
            self.delivered += 1
            if self._waiters:
                self._waiters.release(sseq)
        if pending == 0:
            self.caught_up.set()

    async def _on_status(self, msg: Msg, headers: dict[str, str]) -> None:
        if headers.get(_STATUS) != "100":
            self._want_reset()  # e.g. 409 consumer deleted
            return
        if msg.reply:  # a flow-control request: answer once everything before it is handled
            await self.broker.nc.publish(msg.reply, b"")
            return
        stalled = headers.get(_STALLED)
        if stalled:
            await self.broker.nc.publish(stalled, b"")
        last = headers.get(_LAST_CONSUMER)
        if last is not None and int(last) != self._cseq:
            self._want_reset()

    def _want_reset(self) -> None:
        self._gen += 1  # drop whatever the current consumer still delivers
        self._reset_wanted.set()

    # -- waiting --------------------------------------------------------------------------------
    def check(self) -> None:
        """Raise if the feed failed (an event could not be applied)."""
        if self._error is not None:
            raise Unavailable(f"the ledger stopped applying {self.spec.stream}: {self._error!r}; restart it")

    async def wait_applied(self, seq: int, timeout: float) -> None:
        """Return once every message up to ``seq`` was applied; Unavailable after ``timeout``."""
        self.check()
        if self.applied >= seq:
            return
        await self._waiters.wait(
            seq,
            timeout,
            late=lambda: f"the {self.spec.stream} feed did not reach #{seq} within {timeout:g}s (at #{self.applied})",
        )
