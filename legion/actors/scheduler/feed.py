"""Read a stream in order and keep reading live, with nats-py's ordered consumer.

The ordered consumer (ephemeral, AckNone, flow control, idle heartbeats) is re-created by nats-py
after a gap. Each record is handed to ``on_record`` once, in stream order; :meth:`wait_applied`
returns once a sequence was applied. Used for SCHEDULES (the table) and for the task ends on
EVENTS (the overlap policy).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

import msgspec
import structlog
from nats.aio.msg import Msg
from nats.js.api import ConsumerConfig, DeliverPolicy
from nats.js.client import JetStreamContext

from legion.broker import Broker
from legion.contracts.errors import Unavailable

__all__ = ["Record", "StreamReader"]

log = structlog.get_logger("legion.actors.scheduler.feed")


@dataclass(frozen=True, slots=True)
class Record:
    seq: int
    ts_ns: int
    subject: str
    headers: dict[str, str] | None
    data: bytes


def _ns(dt: datetime) -> int:
    return int(dt.timestamp()) * 1_000_000_000 + dt.microsecond * 1000


class StreamReader:
    """``await reader.start()``; ``applied`` grows as records arrive; ``await reader.stop()``."""

    def __init__(
        self,
        broker: Broker,
        stream: str,
        filters: tuple[str, ...],
        on_record: Callable[[Record], None],
        *,
        after_seq: int = 0,
        start_ns: int | None = None,
        heartbeat_s: float = 2.0,
    ) -> None:
        self.broker = broker
        self.stream = stream
        self.filters = filters
        self.on_record = on_record
        self.applied = after_seq
        self._start_ns = start_ns
        self._heartbeat_s = heartbeat_s
        self._sub: JetStreamContext.PushSubscription | None = None
        self._waiters: list[tuple[int, asyncio.Future[None]]] = []
        self.caught_up = asyncio.Event()
        """Set once everything the stream held (matching the filters) when reading started was applied."""
        self._error: BaseException | None = None

    async def start(self) -> None:
        if self._start_ns is not None:
            self.applied = await self._seq_before(self._start_ns)
        start = self.applied + 1
        config = ConsumerConfig(deliver_policy=DeliverPolicy.BY_START_SEQUENCE, opt_start_seq=start)
        if len(self.filters) > 1:
            config.filter_subjects = list(self.filters)
        sub = await self.broker.js.subscribe(
            self.filters[0],
            stream=self.stream,
            cb=self._on_msg,
            ordered_consumer=True,
            idle_heartbeat=self._heartbeat_s,
            config=config,
            inactive_threshold=60.0,
        )
        # nats-py re-creates an ordered consumer (gap, missed heartbeats, server restart) from its last
        # delivered sequence + 1, and from 1 if nothing was delivered yet: start it where we start.
        # (A start *time* is not used: its re-created consumer is refused, error 10094, start time and
        # start sequence both set.) The ledger's feed does this by hand; one shared reader belongs in
        # broker/reader.py (LAYOUT.md).
        jsi = getattr(sub, "_jsi", None)
        if jsi is not None and getattr(jsi, "_sseq", None) == 0:
            jsi._sseq = start - 1
        self._sub = sub
        info = await sub.consumer_info()
        if not info.num_pending and self.applied < start:  # nothing to replay, nothing delivered yet
            self.caught_up.set()

    async def _seq_before(self, ns: int) -> int:
        """The sequence just before the first message stored at or after ``ns`` (the last one if none)."""
        when = datetime.fromtimestamp(ns // 1_000_000_000, tz=UTC).strftime("%Y-%m-%dT%H:%M:%S")
        body = msgspec.json.encode({"start_time": f"{when}.{ns % 1_000_000_000:09d}Z"})
        msg = await self.broker.request_raw(f"{self.broker.js_api_prefix}.DIRECT.GET.{self.stream}", body)
        headers = msg.headers or {}
        if headers.get("Status") is None and headers.get("Nats-Sequence"):
            return int(headers["Nats-Sequence"]) - 1
        info = await self.broker.js_api(f"STREAM.INFO.{self.stream}")
        return int(info.get("state", {}).get("last_seq", 0))

    async def stop(self) -> None:
        sub, self._sub = self._sub, None
        if sub is not None:
            with contextlib.suppress(Exception):
                await sub.unsubscribe()
        self._fail(Unavailable(f"the {self.stream} reader stopped"))

    async def _on_msg(self, msg: Msg) -> None:
        if self._error is not None:
            return
        meta = msg.metadata
        seq = meta.sequence.stream
        if seq <= self.applied:
            return
        record = Record(seq=seq, ts_ns=_ns(meta.timestamp), subject=msg.subject, headers=msg.headers, data=msg.data)
        try:
            self.on_record(record)
        except Exception as exc:  # a bug in the fold: stop here, never skip a record silently
            log.exception("scheduler.apply_failed", stream=self.stream, seq=seq)
            self._error = exc
            self._fail(Unavailable(f"the scheduler could not apply {self.stream} #{seq}: {exc!r}"))
            return
        self.applied = seq
        if not meta.num_pending:
            self.caught_up.set()
        keep = []
        for want, fut in self._waiters:
            if want <= seq:
                if not fut.done():
                    fut.set_result(None)
            else:
                keep.append((want, fut))
        self._waiters = keep

    def check(self) -> None:
        if self._error is not None:
            raise Unavailable(f"the scheduler stopped applying {self.stream}: {self._error!r}; restart it")

    def _fail(self, exc: Unavailable) -> None:
        waiters, self._waiters = self._waiters, []
        for _, fut in waiters:
            if not fut.done():
                fut.set_exception(exc)

    async def wait_applied(self, seq: int, timeout: float) -> None:
        """Return once every record up to ``seq`` was applied; Unavailable after ``timeout``."""
        self.check()
        if self.applied >= seq:
            return
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        entry = (seq, fut)
        self._waiters.append(entry)
        try:
            async with asyncio.timeout(timeout):
                await fut
        except TimeoutError:
            raise Unavailable(f"the {self.stream} reader did not reach #{seq} within {timeout:g}s") from None
        finally:
            with contextlib.suppress(ValueError):
                self._waiters.remove(entry)
