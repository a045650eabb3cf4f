"""The ledger actor: reserve, commit, release and costs, served on ``legion.svc.ledger.*``.

Exactness under concurrency. Every decision is taken in one asyncio lane on the state folded up to
stream sequence S, and its event is appended with ``Nats-Expected-Last-Sequence: S``: JetStream
stores it only if nothing else landed after S. If something did (another ledger instance, the vault
publishing a Commit straight into LEDGER while the ledger was down), the append fails, the feed
applies the new messages, and the decision is taken again. A refusal stores nothing, so it is
confirmed instead with a direct get of "the next message after S" (none: the state was current).

The state only changes through the feed, which applies every LEDGER message in order, whoever wrote
it, so the ledger's own appends and foreign ones take the same path and replay gives the same state.
The SQLite projection follows the feed in batches, each written with its last sequence.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import sqlite3
import time
from collections.abc import Iterator, Mapping

import msgspec
import structlog

from legion.actors.ledger.feed import FeedSpec, StreamFeed
from legion.actors.ledger.model import Changes, Snapshot
from legion.actors.ledger.spec import LedgerSpec, ReplayStats
from legion.actors.ledger.state import MAX_TTL_S, LedgerState
from legion.actors.ledger.store import LedgerStore
from legion.actors.ledger.wire import (
    EXPECTED_LAST_SEQUENCE,
    OP_ALERT,
    OP_COMMIT,
    OP_RELEASE,
    OP_RESERVE,
    PERIOD_KEY,
    StreamRecord,
    entry_of,
    ledger_subject,
    release_msg_id,
    reserve_msg_id,
)
from legion.broker import Broker, PubAck, new_id
from legion.contracts import subjects as subj
from legion.contracts.base import Message
from legion.contracts.errors import ConcurrencyConflict, ConfigError, LegionError, NotFound, Unavailable
from legion.contracts.ledger import Commit, CostsQuery, CostsReport, LedgerAck, Release, Reserve, Reserved
from legion.contracts.names import validate_token
from legion.runtime.host.actor import Actor, Context, handler

__all__ = ["Ledger"]

log = structlog.get_logger("legion.actors.ledger")

_STATUS = "Status"
_SEQUENCE = "Nats-Sequence"


def _invalid_names(agent: str, project: str) -> str:
    try:
        validate_token(agent, kind="agent name")
        if project:
            validate_token(project, kind="project name")
    except ConfigError as exc:
        return str(exc)
    return ""


class Ledger(Actor):
    """Event-sourced budgets and usage. Build with :class:`LedgerSpec`; host as a service actor."""

    kind = "ledger"

    def __init__(self, name: str, spec: LedgerSpec) -> None:
        super().__init__(name)
        self.spec = spec
        self.replay: ReplayStats | None = None
        self._lane = asyncio.Lock()
        self._flush_lock = asyncio.Lock()
        self._dirty = asyncio.Event()
        self._broker: Broker | None = None
        self._state: LedgerState | None = None
        self._store: LedgerStore | None = None
        self._feed: StreamFeed | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._unwritten: Changes | None = None
        self._flush_task: asyncio.Task[None] | None = None
        self._stopping = False
        self._stopped = asyncio.Event()

    # -- lifecycle ------------------------------------------------------------------------------
    async def on_start(self, ctx: Context) -> None:
        try:
            await self._start(ctx.broker)
        except BaseException:
            await self.on_stop()
            raise

    async def _start(self, broker: Broker) -> None:
        spec = self.spec
        self._broker = broker
        store = self._store = await LedgerStore.open(spec.db_path)
        snap = await store.load()
        try:
            info = await broker.js_api(f"STREAM.INFO.{spec.stream}")
        except NotFound:
            raise Unavailable(f"stream {spec.stream} does not exist; provision the fleet (legion up)") from None
        last = int(info.get("state", {}).get("last_seq", 0))
        if snap.last_seq > last:
            log.warning("ledger.stream_recreated", projection_seq=snap.last_seq, stream_seq=last)
            await store.reset()
            snap = Snapshot()
        self._state = LedgerState(spec.budgets, snap)
        started = time.perf_counter()
        feed = self._feed = StreamFeed(
            broker,
            FeedSpec(stream=spec.stream, filter_subject=subj.LEDGER_ALL, heartbeat_s=spec.heartbeat_s),
            self._on_record,
            after_seq=snap.last_seq,
        )
        self._flush_task = asyncio.create_task(self._flusher(), name="ledger-flush")
        self._tasks.append(self._flush_task)
        await feed.start()
        async with asyncio.timeout(spec.catch_up_s):
            await feed.caught_up.wait()
        await self._flush()
        self.replay = ReplayStats(from_seq=snap.last_seq, to_seq=feed.applied, seconds=time.perf_counter() - started)
        log.info(
            "ledger.ready", actor=self.name, seq=feed.applied, replayed=self.replay.events, rate=round(self.replay.rate)
        )
        self._tasks.append(asyncio.create_task(self._sweeper(), name="ledger-sweep"))

    async def on_stop(self) -> None:
        """Stop the background tasks and the feed, write what is left, close SQLite. Safe to call twice."""
        self._stopping = True
        self._stopped.set()
        self._dirty.set()  # the flusher finishes its batch and exits; the sweeper is cancelled
        tasks, self._tasks = self._tasks, []
        for task in tasks:
            if task is not self._flush_task:
                task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        feed, self._feed = self._feed, None
        if feed is not None:
            await feed.stop()
        store = self._store
        if store is not None:
            try:
                await self._flush()
            except sqlite3.Error:
                log.exception("ledger.final_flush_failed", actor=self.name)
            self._store = None
            await store.close()

    # -- the feed and the projection ------------------------------------------------------------
    def _on_record(self, record: StreamRecord) -> None:
        assert self._state is not None
        entry = entry_of(record)
        if entry.skipped:
            log.debug("ledger.skipped", seq=entry.seq, why=entry.skipped)
        self._state.apply(entry)
        self._dirty.set()

    async def _flush(self) -> None:
        """Write every change applied so far, each batch in one transaction with its sequence."""
        async with self._flush_lock:
            state, store = self._state, self._store
            if state is None or store is None:
                return
            while True:
                if self._unwritten is None:
                    if not state.has_changes:
                        return
                    self._unwritten = state.take_changes()
                # a cancelled caller must not cut a transaction short: the write runs to its end
                write = asyncio.ensure_future(store.write(self._unwritten))
                try:
                    await asyncio.shield(write)
                finally:
                    if not write.done():
                        await asyncio.wait({write})
                    if not write.cancelled() and write.exception() is None:
                        self._unwritten = None  # on failure the same batch is retried next time

    async def _flusher(self) -> None:
        while not self._stopping:
            await self._dirty.wait()
            self._dirty.clear()
            try:
                await self._flush()
            except sqlite3.Error:
                log.exception("ledger.flush_failed", actor=self.name)
                self._dirty.set()
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(1.0):
                        await self._stopped.wait()

    async def _sweeper(self) -> None:
        while True:
            await asyncio.sleep(self.spec.sweep_s)
            async with self._lane:
                await self._settle(new_id())

    # -- appending ------------------------------------------------------------------------------
    def _parts(self) -> tuple[LedgerState, StreamFeed, Broker]:
        if self._state is None or self._feed is None or self._broker is None:
            raise Unavailable("the ledger is not started")
        self._feed.check()
        return self._state, self._feed, self._broker

    def _conflicts(self) -> Iterator[int]:
        yield from range(self.spec.max_conflicts)
        raise Unavailable(f"the ledger lost {self.spec.max_conflicts} appends in a row to other writers; retry")

    async def _append(
        self,
        expected: int,
        subject: str,
        event: Message,
        *,
        msg_id: str,
        trace: str,
        headers: Mapping[str, str] | None = None,
    ) -> PubAck | None:
        """Append if the stream is still at ``expected`` and wait until the feed applied it; None on conflict."""
        _, feed, broker = self._parts()
        hdrs = {EXPECTED_LAST_SEQUENCE: str(expected), **(headers or {})}
        try:
            ack = await broker.js_publish(subject, event, trace=trace, msg_id=msg_id, headers=hdrs)
        except ConcurrencyConflict:
            await feed.wait_applied(expected + 1, self.spec.wait_s)  # catch up, then decide again
            return None
        await feed.wait_applied(ack.seq, self.spec.wait_s)
        return ack

    async def _is_current(self, seq: int) -> bool:
        """True if the stream holds nothing after ``seq``; otherwise catch up and return False."""
        _, feed, broker = self._parts()
        body = msgspec.json.encode({"seq": seq + 1, "next_by_subj": subj.LEDGER_ALL})
        msg = await broker.request_raw(
            f"{broker.js_api_prefix}.DIRECT.GET.{self.spec.stream}", body, timeout=self.spec.wait_s
        )
        headers = msg.headers or {}
        status = headers.get(_STATUS)
        if status == "404":
            return True
        if status is not None:
            raise Unavailable(f"direct get on {self.spec.stream} failed: {status} {headers.get('Description', '')}")
        await feed.wait_applied(int(headers.get(_SEQUENCE, seq + 1)), self.spec.wait_s)
        return False

    async def _expire(self, trace: str) -> None:
        """In the lane: record a Release(reason="expired") for each reservation past its TTL."""
        state, _, _ = self._parts()
        conflicts = self._conflicts()
        while (res := state.next_expired(self.spec.clock())) is not None:
            release = Release(reservation_id=res.reservation_id, reason="expired")
            subject = ledger_subject(res.agent, OP_RELEASE)
            msg_id = release_msg_id(res.reservation_id, res.seq)
            if await self._append(state.last_seq, subject, release, msg_id=msg_id, trace=trace) is None:
                next(conflicts)

    async def _raise_alerts(self, trace: str) -> None:
        """In the lane: emit each pending BudgetExceeded to EVENTS, then record it on LEDGER.

        EVENTS first: a crash in between emits it again (de-duplicated by its msg id within the
        window) rather than never. Once recorded on LEDGER, a rebuilt projection knows it was raised.
        """
        state, _, broker = self._parts()
        conflicts = self._conflicts()
        emitter = Context(broker=broker, actor=self.name, trace=trace, log=self.log)
        while alerts := state.pending_alerts():
            alert = alerts[0]
            expected = state.last_seq
            await emitter.emit(alert.event(), msg_id=alert.msg_id)
            subject = ledger_subject(alert.agent, OP_ALERT)
            headers = {PERIOD_KEY: alert.key}
            ack = await self._append(
                expected, subject, alert.event(), msg_id=alert.msg_id, trace=trace, headers=headers
            )
            if ack is None:
                next(conflicts)
                continue
            log.info(
                "ledger.budget_alert", scope=alert.scope, name=alert.name, period=alert.key, alert_level=alert.level
            )

    async def _settle(self, trace: str) -> None:
        """Expire and raise alerts; failures are logged, the next sweep tries again."""
        try:
            await self._expire(trace)
            await self._raise_alerts(trace)
        except LegionError as exc:
            log.warning("ledger.settle_failed", actor=self.name, error=str(exc))

    # -- handlers -------------------------------------------------------------------------------
    @handler
    async def reserve(self, req: Reserve, ctx: Context) -> Reserved:
        """Hold budget for a call; granted only if it fits every budget of the agent and its project."""
        rid = req.reservation_id
        invalid = _invalid_names(req.agent, req.project)
        if not invalid and not (math.isfinite(req.ttl_s) and req.ttl_s > 0):
            invalid = f"ttl_s {req.ttl_s} must be a number of seconds > 0 (at most {MAX_TTL_S:g})"
        if invalid:
            return Reserved(reservation_id=rid, granted=False, reason=invalid)
        state, _, _ = self._parts()
        async with self._lane:
            await self._expire(ctx.trace)
            for _ in self._conflicts():
                expected = state.last_seq
                decision = state.decide_reserve(req, self.spec.clock())
                if decision.duplicate:
                    break
                if not decision.granted:
                    if await self._is_current(expected):
                        break
                    continue
                subject = ledger_subject(req.agent, OP_RESERVE)
                ack = await self._append(expected, subject, req, msg_id=reserve_msg_id(rid), trace=ctx.trace)
                if ack is None:
                    continue
                if ack.duplicate and state.reservation(rid) is None:
                    reason = f"reservation id {rid!r} was used before; give each call a new id"
                    return Reserved(reservation_id=rid, granted=False, reason=reason)
                break
        return Reserved(
            reservation_id=rid,
            granted=decision.granted,
            reason=decision.reason,
            remaining_usd=decision.remaining_usd,
        )

    @handler
    async def commit(self, req: Commit, ctx: Context) -> LedgerAck:
        """Record the actual cost and free the reservation; usage is recorded even without one."""
        rid = req.reservation_id
        invalid = _invalid_names(req.agent, req.project)
        if not invalid and not (req.actual_usd.is_finite() and req.actual_usd >= 0):
            invalid = f"actual_usd {req.actual_usd} must be a finite amount >= 0"
        if invalid:
            return LedgerAck(reservation_id=rid, ok=False, reason=invalid)
        state, _, _ = self._parts()
        reason = ""
        async with self._lane:
            for _ in self._conflicts():
                expected = state.last_seq
                if rid and state.committed_recently(rid, self.spec.clock()):
                    reason = "already committed"
                    break
                known = bool(rid) and state.reservation(rid) is not None
                subject = ledger_subject(req.agent, OP_COMMIT)
                if await self._append(expected, subject, req, msg_id=rid or new_id(), trace=ctx.trace) is not None:
                    reason = "" if known else "no open reservation (unknown, released or expired); usage recorded"
                    break
            await self._settle(ctx.trace)
        return LedgerAck(reservation_id=rid, ok=True, reason=reason)

    @handler
    async def release(self, req: Release, ctx: Context) -> LedgerAck:
        """Free a reservation without spending."""
        rid = req.reservation_id
        state, _, _ = self._parts()
        async with self._lane:
            for _ in self._conflicts():
                expected = state.last_seq
                res = state.reservation(rid)
                if res is None:
                    if await self._is_current(expected):
                        reason = "no open reservation (unknown, committed, released or expired)"
                        return LedgerAck(reservation_id=rid, ok=False, reason=reason)
                    continue
                subject = ledger_subject(res.agent, OP_RELEASE)
                msg_id = release_msg_id(rid, res.seq)
                if await self._append(expected, subject, req, msg_id=msg_id, trace=ctx.trace) is not None:
                    break
        return LedgerAck(reservation_id=rid, ok=True)

    @handler
    async def costs(self, req: CostsQuery, ctx: Context) -> CostsReport:
        """Spend per agent, project and model, by day or month, from the SQLite projection."""
        self._parts()
        await self._flush()
        assert self._store is not None
        return await self._store.costs(req)

    # -- inspection -----------------------------------------------------------------------------
    async def wait_applied(self, seq: int, timeout: float = 10.0) -> None:
        """Return once this ledger has applied the LEDGER stream up to ``seq`` (Unavailable after ``timeout``)."""
        _, feed, _ = self._parts()
        await feed.wait_applied(seq, timeout)

    @property
    def state(self) -> LedgerState:
        """The live state (read-only use: tests and diagnostics)."""
        return self._parts()[0]
