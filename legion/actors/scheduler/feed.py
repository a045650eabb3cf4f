"""Read a stream in order and keep reading live, with the broker's ordered reader
(:class:`legion.broker.reader.StreamReader`), re-opened from the last applied sequence when it fails.

Each record is handed to ``on_record`` once, in stream order; :meth:`StreamFeed.wait_applied` returns
once a sequence was applied. Used for SCHEDULES (the table) and for the task ends on EVENTS (the
overlap policy). The reader asks for idle heartbeats (``ReadSpec.heartbeat_s``), so a nats-server
restart, which takes the reader's consumer and its pending pull request with it, is noticed within
three heartbeats; the feed then opens a new reader at ``applied + 1`` (retrying while the server is
away). A record that ``on_record`` cannot apply stops the feed for good (fail closed).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

import msgspec
import nats.errors
import structlog
from nats.aio.msg import Msg

from legion.broker import Broker
from legion.broker.progress import AppliedWaiters
from legion.broker.reader import ReadSpec, StreamReader
from legion.contracts.errors import LegionError, Unavailable

__all__ = ["Record", "StreamFeed"]

log = structlog.get_logger("legion.actors.scheduler.feed")

_RETRY_S = (0.2, 0.5, 1.0, 2.0)
_LOST = (LegionError, nats.errors.Error, OSError)  # what a server going away looks like to a reader


@dataclass(frozen=True, slots=True)
class Record:
    seq: int
    ts_ns: int
    subject: str
    headers: dict[str, str] | None
    data: bytes


def _ns(dt: datetime) -> int:
    return int(dt.timestamp()) * 1_000_000_000 + dt.microsecond * 1000


class StreamFeed:
    """``await feed.start()``; ``applied`` grows as records arrive; ``await feed.stop()``."""

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
        self.reopened = 0
        """How many times a failed reader was replaced (a server restart, a deleted consumer)."""
        self._start_ns = start_ns
        self._heartbeat_s = heartbeat_s
        self._reader: StreamReader | None = None
        self._task: asyncio.Task[None] | None = None
        self._waiters = AppliedWaiters()
        self.caught_up = asyncio.Event()
        """Set once everything the stream held (matching the filters) when reading started was applied."""
        self._error: BaseException | None = None

    async def start(self) -> None:
        """Open the first reader (its errors are the caller's), then follow in the background."""
        if self._start_ns is not None:
            self.applied = await self._seq_before(self._start_ns)
        reader = await self._open()
        if reader.pending == 0:
            self.caught_up.set()
        self._task = asyncio.create_task(self._follow(reader), name=f"feed-{self.stream}")

    async def _open(self) -> StreamReader:
        spec = ReadSpec(
            stream=self.stream,
            filters=self.filters,
            from_seq=self.applied + 1,
            follow=True,
            heartbeat_s=self._heartbeat_s,
        )
        reader = StreamReader(self.broker, spec)
        await reader.open()
        self._reader = reader
        return reader

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

    async def _follow(self, reader: StreamReader) -> None:
        while self._error is None:
            try:
                async for batch in reader.batches():
                    for msg in batch:
                        if not self._apply(msg):
                            return
            except _LOST as exc:  # the server went away, the consumer was deleted: read again
                log.warning("scheduler.reader_lost", stream=self.stream, applied=self.applied, error=repr(exc))
            await reader.close()
            reader = await self._reopen()

    async def _reopen(self) -> StreamReader:
        attempt = 0
        while True:
            await asyncio.sleep(_RETRY_S[min(attempt, len(_RETRY_S) - 1)])
            try:
                reader = await self._open()
            except _LOST as exc:
                attempt += 1
                log.info("scheduler.reader_retry", stream=self.stream, attempt=attempt, error=repr(exc))
                continue
            self.reopened += 1
            if reader.pending == 0:
                self.caught_up.set()
            log.info("scheduler.reader_reopened", stream=self.stream, from_seq=self.applied + 1)
            return reader

    def _apply(self, msg: Msg) -> bool:
        meta = msg.metadata
        seq = meta.sequence.stream
        if seq <= self.applied:
            return True
        record = Record(seq=seq, ts_ns=_ns(meta.timestamp), subject=msg.subject, headers=msg.headers, data=msg.data)
        try:
            self.on_record(record)
        except Exception as exc:  # a bug in the fold: stop here, never skip a record silently
            log.exception("scheduler.apply_failed", stream=self.stream, seq=seq)
            self._error = exc
            self._fail(Unavailable(f"the scheduler could not apply {self.stream} #{seq}: {exc!r}"))
            return False
        self.applied = seq
        if not meta.num_pending:
            self.caught_up.set()
        self._waiters.release(seq)
        return True

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        reader, self._reader = self._reader, None
        if reader is not None:
            await reader.close()
        self._fail(Unavailable(f"the {self.stream} reader stopped"))

    def check(self) -> None:
        if self._error is not None:
            raise Unavailable(f"the scheduler stopped applying {self.stream}: {self._error!r}; restart it")

    def _fail(self, exc: Unavailable) -> None:
        self._waiters.fail(exc)

    async def wait_applied(self, seq: int, timeout: float) -> None:
        """Return once every record up to ``seq`` was applied; Unavailable after ``timeout``."""
        self.check()
        if self.applied >= seq:
            return
        await self._waiters.wait(
            seq, timeout, late=lambda: f"the {self.stream} reader did not reach #{seq} within {timeout:g}s"
        )
