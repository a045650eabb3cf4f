"""The scheduler actor: keeps the schedule table from SCHEDULES, fires due slots into agents' inboxes.

Firing a slot, in this order (each step idempotent under the slot's key = schedule + slot time):

1. append ``ScheduleFired`` to SCHEDULES, conditional on the schedule's last sequence and with
   ``Nats-Msg-Id`` = key: of two instances (or a firing racing a pause) only one append wins;
2. wait until the table applied it (so the slot is never planned again);
3. publish the ``AssignTask`` to ``legion.agent.<agent>.inbox`` with ``Nats-Msg-Id`` = key;
4. emit ``schedule.fired`` to EVENTS (same key) for observers.

A crash between 1 and 3 (kill -9 on the boundary) leaves a recorded firing whose task may be
missing: on start, and after losing a race to another instance, the scheduler publishes the task
of every firing younger than ``redispatch_s`` again; JetStream drops it as a duplicate if it had
landed (duplicate window 120 s), else it is delivered now. A crash after 3 repeats nothing. So a
slot's task reaches the inbox exactly once when the scheduler is back within ``redispatch_s``; after
a longer outage such a firing's task is lost rather than sent twice (docs/scheduler.md).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Iterable

import structlog

from legion.actors.scheduler.admin import LocalAdmin, TrustedRequests
from legion.actors.scheduler.feed import Record, StreamFeed
from legion.actors.scheduler.plan import Firing, Skip, plan
from legion.actors.scheduler.probe import probe
from legion.actors.scheduler.records import fired_event, invalid_event, skipped_event
from legion.actors.scheduler.requests import AgentRequests
from legion.actors.scheduler.spec import SchedulerSpec
from legion.actors.scheduler.stream import append, ensure_stream, stream_subjects
from legion.actors.scheduler.table import ScheduleEvent, ScheduleRow, ScheduleTable
from legion.actors.scheduler.timing import NS
from legion.broker import Broker, new_id
from legion.contracts import headers as h
from legion.contracts import subjects as subj
from legion.contracts.agent_events import TaskCompleted, TaskFailed
from legion.contracts.agent_tools import CronList, CronRemove, CronReply, CronSet
from legion.contracts.base import Event
from legion.contracts.codec import decode
from legion.contracts.commands import AssignTask
from legion.contracts.errors import ConcurrencyConflict, ContractError, LegionError, Unavailable
from legion.contracts.scheduler import (
    FLEET,
    ScheduleAck,
    ScheduleControl,
    ScheduleFired,
    ScheduleList,
    SchedulePut,
    ScheduleQuery,
    ScheduleTriggered,
)
from legion.runtime.clients import sync_declared
from legion.runtime.host import Actor, Context, handler

__all__ = ["Scheduler"]

log = structlog.get_logger("legion.actors.scheduler")

Key = tuple[str, str]


class Scheduler(Actor):
    """Event-sourced schedules; build with :class:`SchedulerSpec`, host with ``scheduler_host_spec()``."""

    kind = "scheduler"

    def __init__(self, name: str, spec: SchedulerSpec | None = None) -> None:
        super().__init__(name)
        self.spec = spec or SchedulerSpec()
        self.table = ScheduleTable()
        self.ticked_ns = 0
        """The clock time of the last complete pass over the due schedules."""
        self._broker: Broker | None = None
        self._reader: StreamFeed | None = None
        self._tasks_reader: StreamFeed | None = None
        self._next: dict[Key, int | None] = {}
        self._wake = asyncio.Event()
        self._ticked = asyncio.Condition()
        self._passes = 0
        self._ticker: asyncio.Task[None] | None = None
        self._requests = AgentRequests(self)
        self._trusted = TrustedRequests(self)

    # -- lifecycle ----------------------------------------------------------------------------
    async def on_start(self, ctx: Context) -> None:
        try:
            await self._start(ctx.broker)
        except BaseException:
            await self.on_stop()
            raise

    async def _start(self, broker: Broker) -> None:
        spec = self.spec
        self._broker = broker
        subjects = stream_subjects(spec.agents)
        last = await ensure_stream(broker, spec.stream, subjects)
        reader = self._reader = StreamFeed(broker, spec.stream, tuple(subjects), self._on_record)
        started = time.perf_counter()
        await reader.start()
        await reader.wait_applied(last, spec.catch_up_s)
        log.info(
            "scheduler.ready",
            actor=self.name,
            schedules=len(self.table.rows),
            seq=reader.applied,
            ignored=self.table.ignored,
            seconds=round(time.perf_counter() - started, 3),
        )
        if spec.watch_tasks:
            await self._watch_tasks(broker)
        await self._redispatch(self.table.rows.values())
        if spec.declared is not None:
            await self._sync_declared(list(spec.declared))
        self._ticker = asyncio.create_task(self._tick_loop(), name=f"scheduler-{self.name}")
        self._ticker.add_done_callback(self._ticker_done)

    async def _sync_declared(self, puts: list[SchedulePut]) -> None:
        """Hold exactly legion.yaml's schedules among those the file owns (created ``by: legion.yaml``).
        In process, before requests are served; a schedule refused here is logged, the others go on."""
        report = await sync_declared(LocalAdmin(self._trusted), puts)
        log.info(
            "scheduler.declared_synced",
            actor=self.name,
            created=report.created,
            updated=report.updated,
            unchanged=len(report.unchanged),
            deleted=report.deleted,
        )
        for refusal in report.refused:
            log.warning("scheduler.declared_refused", actor=self.name, schedule=refusal)

    def _ticker_done(self, task: asyncio.Task[None]) -> None:
        if not task.cancelled() and task.exception() is not None:
            # a bug: nothing fires any more; say so loudly (the host's health shows the actor alive)
            log.critical("scheduler.ticker_failed", actor=self.name, error=repr(task.exception()))

    async def on_stop(self) -> None:
        """Stop firing, then stop the readers. Safe to call twice."""
        ticker, self._ticker = self._ticker, None
        if ticker is not None:
            ticker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await ticker
        for reader in (self._tasks_reader, self._reader):
            if reader is not None:
                await reader.stop()
        self._tasks_reader = self._reader = None

    async def _watch_tasks(self, broker: Broker) -> None:
        """Follow task ends on EVENTS from the oldest firing that still counts as running (only those
        matter, and only under an overlap policy other than allow: a task that never ended is not a
        reason to read days of EVENTS)."""
        now = self.spec.clock.now_ns()
        running = [
            r.running_since_ns for r in self.table.rows.values() if r.policy.overlap != "allow" and r.is_running(now)
        ]
        start = min(running) if running else time.time_ns()
        self._tasks_reader = StreamFeed(
            broker,
            self.spec.events_stream,
            (subj.EVENTS.wildcard(type="task.completed"), subj.EVENTS.wildcard(type="task.failed")),
            self._on_task_event,
            start_ns=start,
        )
        await self._tasks_reader.start()
        async with asyncio.timeout(self.spec.catch_up_s):  # the first pass must know which tasks ended
            await self._tasks_reader.caught_up.wait()

    # -- inputs -------------------------------------------------------------------------------
    def _on_record(self, record: Record) -> None:
        try:
            event: object = decode(record.data, record.headers)
        except ContractError:
            event = None
        trace = (record.headers or {}).get(h.TRACE, "")
        self.table.apply(record.seq, record.ts_ns, record.subject, event, trace)
        parts = subj.SCHEDULES.parse(record.subject)
        if parts is not None:
            key = (parts["agent"], parts["schedule"])
            if key == FLEET:  # paused or resumed: every schedule looks again
                self._next.update(dict.fromkeys(self.table.rows, 0))
            elif key in self.table.rows:
                self._next[key] = 0
            else:
                self._next.pop(key, None)
            self._wake.set()

    def _on_task_event(self, record: Record) -> None:
        try:
            event = decode(record.data, record.headers)
        except ContractError:
            return
        if isinstance(event, TaskCompleted | TaskFailed):
            row = self.table.finish(event.agent, event.task_id)
            if row is not None:
                self._next[(row.agent, row.schedule_id)] = 0
                self._wake.set()

    # -- the loop -----------------------------------------------------------------------------
    async def _tick_loop(self) -> None:
        clock = self.spec.clock
        limit = asyncio.Semaphore(self.spec.concurrency)
        while True:
            self._wake.clear()
            now = clock.now_ns()
            due = [k for k, t in self._next.items() if t is not None and t <= now]
            if due:
                async with asyncio.TaskGroup() as tg:
                    for key in due:
                        await limit.acquire()
                        tg.create_task(self._guarded(key, now, limit))
            async with self._ticked:
                self.ticked_ns = now
                self._passes += 1
                self._ticked.notify_all()
            if self._wake.is_set():
                continue
            pending = [t for t in self._next.values() if t is not None]
            await clock.wait(min(pending) if pending else None, self._wake)

    async def _guarded(self, key: Key, now: int, limit: asyncio.Semaphore) -> None:
        try:
            await self._handle(key, now)
        except (LegionError, TimeoutError) as exc:
            # this schedule waits for the next pass; the others go on
            log.warning("scheduler.act_failed", agent=key[0], schedule=key[1], error=str(exc))
            self._next[key] = now + int(self.spec.retry_s * NS)
        except Exception:  # a bug on one schedule's data must not stop the others
            log.exception("scheduler.schedule_failed", agent=key[0], schedule=key[1])
            self._next[key] = now + int(self.spec.retry_s * NS)
        finally:
            limit.release()

    async def _handle(self, key: Key, now: int) -> None:
        row = self.table.rows.get(key)
        if row is None:
            self._next.pop(key, None)
            return
        if self.table.fleet_paused:
            self._next[key] = None
            return
        if row.invalid:
            self._next[key] = None
            if not row.invalid_reported:
                await self._report_invalid(row)
            return
        decision = plan(row, now)
        if not decision.acts:
            self._next[key] = decision.wake_ns
            return
        try:
            for skip in decision.skips:
                await self._skip(row, skip)
            if decision.fire is not None:
                await self._fire(row, decision.fire)
        except ConcurrencyConflict:
            await self.catch_up()
            await self._redispatch([row])  # the winner may have died before sending the task
        # plan again on the table that now holds what was appended (also after a duplicate append,
        # which the reader had applied before and so does not announce again)
        if key in self.table.rows:
            self._next[key] = 0

    async def catch_up(self) -> None:
        """Apply everything SCHEDULES holds now (after losing a conditional append)."""
        broker, reader = self._parts()
        info = await broker.js_api(f"STREAM.INFO.{self.spec.stream}")
        await reader.wait_applied(int(info["state"]["last_seq"]), self.spec.wait_s)

    # -- effects ------------------------------------------------------------------------------
    def _parts(self) -> tuple[Broker, StreamFeed]:
        if self._broker is None or self._reader is None:
            raise Unavailable("the scheduler is not started")
        self._reader.check()
        return self._broker, self._reader

    async def append(self, event: ScheduleEvent, *, msg_id: str, trace: str) -> None:
        """Append to SCHEDULES if nothing landed on the schedule since the table's view of it; return once
        the table applied it. ConcurrencyConflict if something did."""
        broker, reader = self._parts()
        expected = self.table.seq_of(event.agent, event.schedule_id)
        ack = await append(broker, event, expected_seq=expected, msg_id=msg_id, trace=trace)
        await reader.wait_applied(ack.seq, self.spec.wait_s)

    async def _skip(self, row: ScheduleRow, skip: Skip) -> None:
        event, msg_id = skipped_event(row, skip)
        trace = row.trace or new_id()
        await self.append(event, msg_id=msg_id, trace=trace)
        if skip.reason != "quiet":  # a quiet heartbeat is no news: recorded on SCHEDULES only
            await self._emit(event, msg_id, trace)
        log.info("scheduler.skipped", agent=row.agent, schedule=row.schedule_id, reason=skip.reason, count=skip.count)

    async def _report_invalid(self, row: ScheduleRow) -> None:
        event, msg_id = invalid_event(row)
        trace = row.trace or new_id()
        log.warning("scheduler.invalid_schedule", agent=row.agent, schedule=row.schedule_id, error=row.invalid)
        with contextlib.suppress(ConcurrencyConflict):
            await self.append(event, msg_id=msg_id, trace=trace)
            await self._emit(event, msg_id, trace)

    async def _fire(self, row: ScheduleRow, firing: Firing) -> None:
        """Fire (after the probe, if the schedule has one: nothing new skips the slot as quiet)."""
        seen = 0
        if row.policy.probe is not None:
            broker, _ = self._parts()
            found = await probe(broker, row.policy.probe, seen_seq=row.probe_seq, since_ns=row.anchor_ns)
            if found is None:
                await self._skip(row, Skip(first_ns=firing.slot_ns, last_ns=firing.slot_ns, count=1, reason="quiet"))
                return
            seen = found
        event = fired_event(row, firing, probe_seq=seen)
        await self.append(event, msg_id=firing.key, trace=row.trace or new_id())
        await self.send(row, event)

    async def send(self, row: ScheduleRow, event: ScheduleFired | ScheduleTriggered) -> None:
        """Send the task of a firing or run-now (idempotent: ``Nats-Msg-Id`` = its key) and emit the event.

        Only the send that stored the task emits: the EVENTS copy would be de-duplicated in the stream,
        but live subscribers would see it twice. That covers a re-send after a restart, a retried
        run-now, and two instances racing on one slot, where the loser's re-send may land before the
        winner's own send."""
        broker, _ = self._parts()
        trace = event.trace or row.trace or new_id()
        task = AssignTask(
            task_id=event.task_id,
            text=row.task.text,
            input=row.task.input,
            requested_by=f"{self.name}:{row.schedule_id}",
            max_iterations=row.task.max_iterations,
        )
        ack = await broker.js_publish(subj.AGENT_INBOX.render(agent=row.agent), task, trace=trace, msg_id=event.key)
        if ack.duplicate:
            return
        await self._emit(event, event.key, trace)
        log.info("scheduler.sent", agent=row.agent, schedule=row.schedule_id, task_id=event.task_id, trace=trace)

    async def _redispatch(self, rows: Iterable[ScheduleRow]) -> None:
        """Send again the tasks of firings recorded within ``redispatch_s`` (real time: the server's
        duplicate window is real time); JetStream drops those that had landed."""
        horizon = time.time_ns() - int(self.spec.redispatch_s * NS)
        for row in list(rows):
            if row.last_fired is not None and row.last_fired_ts_ns >= horizon:
                try:
                    await self.send(row, row.last_fired)
                except LegionError as exc:
                    log.warning(
                        "scheduler.redispatch_failed", agent=row.agent, schedule=row.schedule_id, error=str(exc)
                    )

    async def _emit(self, event: Event, msg_id: str, trace: str) -> None:
        broker, _ = self._parts()
        ctx = Context(broker=broker, actor=self.name, trace=trace, log=self.log)
        try:
            await ctx.emit(event, msg_id=msg_id)
        except LegionError as exc:  # the record on SCHEDULES is the truth; EVENTS is for observers
            log.warning("scheduler.emit_failed", event=event.contract_tag(), error=str(exc))

    # -- inspection ---------------------------------------------------------------------------
    async def wait_ticked(self, now_ns: int, timeout: float = 10.0) -> None:
        """Return after a pass over the due schedules that started after this call, at clock time >=
        ``now_ns``, and left nothing pending (no change arrived during it)."""
        async with asyncio.timeout(timeout), self._ticked:
            target = self._passes + 1
            self._wake.set()  # make the loop pass now even if nothing is due
            await self._ticked.wait_for(
                lambda: self._passes >= target and self.ticked_ns >= now_ns and not self._wake.is_set()
            )

    @property
    def reopened(self) -> int:
        """How many times the readers (SCHEDULES, task ends) were re-opened after losing the server."""
        return sum(feed.reopened for feed in (self._reader, self._tasks_reader) if feed is not None)

    async def wait_events_applied(self, seq: int, timeout: float = 10.0) -> None:
        """Return once the task-end reader has applied EVENTS up to ``seq``."""
        if self._tasks_reader is None:
            raise Unavailable("the scheduler does not follow task ends (watch_tasks=False)")
        await self._tasks_reader.wait_applied(seq, timeout)

    # -- agent requests on legion.scheduler.<agent>.<op> ------------------------------------------
    @handler
    async def set_cron(self, req: CronSet, ctx: Context) -> CronReply:
        """Create or replace one of the calling agent's schedules."""
        return await self._requests.set(req, ctx)

    @handler
    async def list_cron(self, req: CronList, ctx: Context) -> CronReply:
        return await self._requests.list(req, ctx)

    @handler
    async def remove_cron(self, req: CronRemove, ctx: Context) -> CronReply:
        return await self._requests.remove(req, ctx)

    # -- trusted requests on legion.svc.<service>.<op> ------------------------------------------
    @handler
    async def put(self, req: SchedulePut, ctx: Context) -> ScheduleAck:
        """Create or replace a schedule with its full spec, policy and task."""
        return await self._trusted.put(req, ctx)

    @handler
    async def control(self, req: ScheduleControl, ctx: Context) -> ScheduleAck:
        """Pause, resume, delete or run now one schedule; pause or resume the fleet."""
        return await self._trusted.control(req, ctx)

    @handler
    async def list_schedules(self, req: ScheduleQuery, ctx: Context) -> ScheduleList:
        return await self._trusted.list(req, ctx)
