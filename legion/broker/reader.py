"""THE ordered stream reader: what ``legion tail``, ``legion bb watch``, the test kit's
``read_stream`` (and the dashboard's event stream to come) read a stream with.

One ephemeral pull consumer (``AckPolicy.NONE``, in memory, removed by the server when idle), its
deliveries read in one subscription callback, pull requests of ``batch`` messages. It is positioned
at a sequence, a time, the last N messages matching its filters, the start, or only new messages.
The end of the stream is known from each delivery's ``num_pending`` (``msg.metadata``, never a
timer); with ``follow`` it keeps waiting for new messages. Hand-written over nats-py's ``fetch()``
because a tail of a million events must not pay a request round trip per batch twice over, and
because ``num_pending`` is what says "caught up" (measured in bench/tail_bench.py: ~65k events/s).

A reader that must outlive a nats-server restart (the scheduler's) sets ``heartbeat_s``: its waiting
pull requests ask for idle heartbeats, and a silence of three heartbeats raises ``Unavailable``
(the consumer and the pull request died with the server; open a new reader from the last sequence).
Without it a follow waits for its pull request to expire, which a restarted server never answers.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final

import msgspec
from nats.aio.msg import Msg

from legion.broker.client import Broker
from legion.contracts.errors import ConfigError, Unavailable

__all__ = ["ReadSpec", "StreamReader", "read_all"]

_IDLE_NS: Final = 30 * 1_000_000_000  # the server removes the consumer after 30 s without a pull
_FOLLOW_EXPIRES_NS: Final = 30 * 1_000_000_000
_json = msgspec.json.Encoder()


@dataclass(frozen=True, slots=True)
class ReadSpec:
    """Where to start (at most one of ``from_seq``, ``since``, ``last``, ``new_only``; none: the start)."""

    stream: str
    filters: tuple[str, ...] = ()
    from_seq: int | None = None
    since: datetime | None = None
    last: int | None = None  # the last N messages that match the filters
    new_only: bool = False  # only what is stored from now on (implies following)
    follow: bool = False
    batch: int = 500
    heartbeat_s: float | None = None  # ask for idle heartbeats; Unavailable after three missed ones


class StreamReader:
    """``async with StreamReader(broker, spec) as reader: async for batch in reader.batches(): ...``"""

    def __init__(self, broker: Broker, spec: ReadSpec) -> None:
        starts = [spec.from_seq is not None, spec.since is not None, spec.last is not None, spec.new_only]
        if sum(starts) > 1:
            raise ConfigError("give one start: a sequence, a time, the last N, or new messages only")
        if spec.heartbeat_s is not None and not 0 < spec.heartbeat_s <= _FOLLOW_EXPIRES_NS / 3e9:
            raise ConfigError(f"heartbeat {spec.heartbeat_s}s is invalid: give 0 < heartbeat <= 10s")
        if spec.from_seq is not None and spec.from_seq < 1:
            raise ConfigError(f"start sequence {spec.from_seq} is invalid: stream sequences start at 1")
        self.broker = broker
        self.spec = spec
        self.name = ""
        self.pending = 0  # messages the consumer had to deliver when it was created
        self.skip = 0  # first deliveries to drop (positioning for `last`)
        self._inbox = broker.nc.new_inbox()
        self._buf: list[Msg] = []
        self._wake = asyncio.Event()
        self._sub: Any = None

    # -- the consumer -----------------------------------------------------------------------------
    def _config(self, start: dict[str, Any]) -> dict[str, Any]:
        config: dict[str, Any] = {
            "ack_policy": "none",
            "inactive_threshold": _IDLE_NS,
            "mem_storage": True,
            "num_replicas": 1,
            **start,
        }
        filters = list(self.spec.filters)
        if len(filters) == 1:
            config["filter_subject"] = filters[0]
        elif filters:
            config["filter_subjects"] = filters
        return config

    async def _create(self, start: dict[str, Any]) -> None:
        stream = self.spec.stream
        body = {"stream_name": stream, "config": self._config(start)}
        info = await self.broker.js_api(f"CONSUMER.CREATE.{stream}", body)
        self.name = str(info["name"])
        self.pending = int(info.get("num_pending", 0))

    async def _delete(self) -> None:
        name, self.name = self.name, ""
        if name:
            with contextlib.suppress(Exception):
                await self.broker.js_api(f"CONSUMER.DELETE.{self.spec.stream}.{name}", timeout=2)

    async def open(self) -> None:
        spec = self.spec
        if spec.from_seq is not None:
            await self._create({"deliver_policy": "by_start_sequence", "opt_start_seq": spec.from_seq})
        elif spec.since is not None:
            when = spec.since.astimezone(UTC).isoformat().replace("+00:00", "Z")
            await self._create({"deliver_policy": "by_start_time", "opt_start_time": when})
        elif spec.new_only:
            await self._create({"deliver_policy": "new"})
        elif spec.last is not None:
            await self._open_last(spec.last)
        else:
            await self._create({"deliver_policy": "all"})

    async def _open_last(self, n: int) -> None:
        """Widen a window back from the end until it holds N matching messages (or the whole stream)."""
        info = await self.broker.js_api(f"STREAM.INFO.{self.spec.stream}")
        last_seq = int(info["state"]["last_seq"])
        window = max(n, 1)
        while True:
            first = max(1, last_seq - window + 1)
            await self._create({"deliver_policy": "by_start_sequence", "opt_start_seq": first})
            if self.pending >= n or first == 1:
                self.skip = max(0, self.pending - n)
                return
            await self._delete()
            window *= 8

    async def close(self) -> None:
        if self._sub is not None:
            with contextlib.suppress(Exception):
                await self._sub.unsubscribe()
            self._sub = None
        await self._delete()

    async def __aenter__(self) -> StreamReader:
        try:
            await self.open()
        except BaseException:
            await self.close()
            raise
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # -- reading ----------------------------------------------------------------------------------
    async def _on_msg(self, msg: Msg) -> None:
        self._buf.append(msg)
        self._wake.set()

    async def _pull(self, batch: int, *, wait: bool) -> None:
        if self._sub is None:
            self._sub = await self.broker.nc.subscribe(self._inbox, cb=self._on_msg, pending_msgs_limit=-1)
        body: dict[str, Any] = {"batch": batch}
        if wait:
            body["expires"] = _FOLLOW_EXPIRES_NS
            if self.spec.heartbeat_s is not None:
                body["idle_heartbeat"] = int(self.spec.heartbeat_s * 1e9)
        else:
            body["no_wait"] = True
        api = f"{self.broker.js_api_prefix}.CONSUMER.MSG.NEXT.{self.spec.stream}.{self.name}"
        await self.broker.nc.publish(api, _json.encode(body), reply=self._inbox)

    async def _take(self) -> list[Msg]:
        if self.spec.heartbeat_s is None:
            await self._wake.wait()
        else:
            silence = 3 * self.spec.heartbeat_s
            try:
                async with asyncio.timeout(silence):
                    await self._wake.wait()
            except TimeoutError:
                raise Unavailable(f"no message or heartbeat for {silence:g}s (server gone?); read again") from None
        self._wake.clear()
        out, self._buf = self._buf, []
        return out

    def _sort(self, msgs: list[Msg]) -> tuple[list[Msg], bool, int, bool]:
        """(stored messages to hand out, the pull request is over, messages received, caught up)."""
        out: list[Msg] = []
        over, received, caught_up = False, 0, False
        for msg in msgs:
            if not msg.reply:  # a status message
                hdrs = msg.headers or {}
                if hdrs.get("Status") == "409" and "deleted" in hdrs.get("Description", "").lower():
                    raise Unavailable("the reader's consumer was deleted by the server; read again")
                over = over or hdrs.get("Status") != "100"  # 100: idle heartbeat
                continue
            received += 1
            if self.skip:
                self.skip -= 1
            else:
                out.append(msg)
            caught_up = caught_up or msg.metadata.num_pending == 0
        return out, over, received, caught_up

    async def batches(self) -> AsyncIterator[list[Msg]]:
        """Stored messages in stream order, a batch at a time, until the end of the stream (forever
        with ``follow`` or ``new_only``). A pull request is over when it delivered its batch or the
        server sent a status (404 no messages, 408 expired, 409); then the next one is sent."""
        follow = self.spec.follow or self.spec.new_only
        caught_up = self.pending == 0
        if caught_up and not follow:
            return
        requested, received = self.spec.batch, 0
        await self._pull(requested, wait=caught_up)
        while True:
            out, over, got, end = self._sort(await self._take())
            received += got
            caught_up = caught_up or end
            if out:
                yield out
            if caught_up and not follow:
                return
            if over or received >= requested:
                if not caught_up and received == 0:  # fewer messages than counted (retention removed some)
                    if not follow:
                        return
                    caught_up = True
                requested, received = self.spec.batch, 0
                await self._pull(requested, wait=caught_up)


async def read_all(broker: Broker, spec: ReadSpec) -> list[Msg]:
    """Every message the spec selects, up to the end of the stream (``follow`` is ignored)."""
    out: list[Msg] = []
    bounded = dataclasses.replace(spec, follow=False, new_only=False)
    async with StreamReader(broker, bounded) as reader:
        async for batch in reader.batches():
            out.extend(batch)
    return out
