"""The schedule table: a pure fold over the SCHEDULES stream. No clock, no I/O.

Every input is a stream record (sequence, stream timestamp, subject, decoded event), so a table
rebuilt from the stream is identical to the live one. Times that matter for slots come from the
stream's timestamps (when a schedule was created, updated or resumed), never from a clock.

The fold never raises on data: a record with an unknown tag, an invalid body or a subject that does
not match its body is counted in ``ignored`` and skipped; a definition that cannot be compiled (an
unknown time zone, a bad cron field) keeps its row with ``invalid`` set, so it is listed and
reported but never stops the other schedules.

``finish(agent, task_id)`` is the one input that does not come from SCHEDULES: the end of a fired
task (``task.completed`` / ``task.failed`` on EVENTS), which frees a schedule for the overlap policy.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime

from legion.actors.scheduler.timing import NS, Timer, compile_spec
from legion.contracts import subjects as subj
from legion.contracts.errors import ConfigError
from legion.contracts.scheduler import (
    FLEET,
    ScheduleCreated,
    ScheduleDeleted,
    ScheduleFired,
    SchedulePaused,
    SchedulePolicy,
    ScheduleResumed,
    ScheduleSkipped,
    ScheduleSpec,
    ScheduleTask,
    ScheduleTriggered,
    ScheduleUpdated,
)

__all__ = ["ScheduleEvent", "ScheduleRow", "ScheduleTable", "op_of", "slot_key", "task_id_for"]

ScheduleEvent = (
    ScheduleCreated
    | ScheduleUpdated
    | SchedulePaused
    | ScheduleResumed
    | ScheduleDeleted
    | ScheduleFired
    | ScheduleSkipped
    | ScheduleTriggered
)

_OPS: dict[type[ScheduleEvent], str] = {
    ScheduleCreated: "created",
    ScheduleUpdated: "updated",
    SchedulePaused: "paused",
    ScheduleResumed: "resumed",
    ScheduleDeleted: "deleted",
    ScheduleFired: "fired",
    ScheduleSkipped: "skipped",
    ScheduleTriggered: "triggered",
}


_BY_OP: dict[str, type[ScheduleEvent]] = {op: cls for cls, op in _OPS.items()}


def op_of(event: ScheduleEvent) -> str:
    """The ``<op>`` token of the event's subject."""
    return _OPS[type(event)]


def slot_key(agent: str, schedule_id: str, slot_ns: int) -> str:
    """The slot's idempotency key: the Nats-Msg-Id of its task and of its fired event."""
    return f"sched:{agent}:{schedule_id}:{slot_ns}"


def task_id_for(schedule_id: str, slot_ns: int) -> str:
    """A readable, deterministic task id: ``sched-<schedule>-<slot UTC>``."""
    stamp = datetime.fromtimestamp(slot_ns // NS, tz=UTC).strftime("%Y%m%dT%H%M%SZ")
    return f"sched-{schedule_id}-{stamp}"


@dataclass(slots=True)
class ScheduleRow:
    agent: str
    schedule_id: str
    spec: ScheduleSpec
    policy: SchedulePolicy
    task: ScheduleTask
    trace: str
    note: str = ""
    created_by: str = ""
    paused: bool = False
    anchor_ns: int = 0
    """Slots strictly after this time are candidates (creation, last update or resume)."""
    last_slot_ns: int = 0
    """The latest slot fired or skipped."""
    fired: int = 0
    last_fired: ScheduleFired | None = None
    last_fired_ts_ns: int = 0
    running_task_id: str = ""
    running_since_ns: int = 0
    probe_seq: int = 0
    """With a probe: the probed stream's sequence its last firing saw."""
    seq: int = 0
    """The stream sequence of this schedule's latest event (appends are conditional on it)."""
    definition_seq: int = 0
    timer: Timer | None = None
    invalid: str = ""
    invalid_reported: bool = False

    @property
    def after_ns(self) -> int:
        """Slots after this time have not been handled yet."""
        return max(self.anchor_ns, self.last_slot_ns)

    def is_running(self, now_ns: int) -> bool:
        if not self.running_task_id:
            return False
        return now_ns < self.running_since_ns + int(self.policy.running_for_s * NS)


@dataclass(slots=True)
class ScheduleTable:
    rows: dict[tuple[str, str], ScheduleRow] = field(default_factory=dict)
    last_seq: int = 0
    ignored: int = 0
    fleet_paused: bool = False
    """Every schedule is paused (SchedulePaused of the reserved schedule ``scheduler/fleet``)."""
    seqs: dict[tuple[str, str], int] = field(default_factory=dict)
    """(agent, schedule id) -> the sequence of the latest record on that schedule's subjects, whether the
    fold used it or not: what a conditional append must expect."""
    by_task: dict[tuple[str, str], tuple[str, str]] = field(default_factory=dict)
    """(agent, running task id) -> (agent, schedule id), to free a schedule when its task ends."""

    def get(self, agent: str, schedule_id: str) -> ScheduleRow | None:
        return self.rows.get((agent, schedule_id))

    def of_agent(self, agent: str) -> list[ScheduleRow]:
        return sorted((r for (a, _), r in self.rows.items() if a == agent), key=lambda r: r.schedule_id)

    def seq_of(self, agent: str, schedule_id: str) -> int:
        return self.seqs.get((agent, schedule_id), 0)

    def count_of(self, agent: str) -> int:
        return sum(1 for a, _ in self.rows if a == agent)

    # -- the fold -----------------------------------------------------------------------------
    def apply(self, seq: int, ts_ns: int, subject: str, event: object, trace: str = "") -> None:
        """Apply one SCHEDULES record; anything that does not fit is counted in ``ignored``.

        ``trace``: the record's Legion-Trace header; a schedule created without a trace in its body
        carries the trace of the message that created it."""
        if seq <= self.last_seq:
            return
        self.last_seq = seq
        parts = subj.SCHEDULES.parse(subject)
        if parts is not None:
            self.seqs[(parts["agent"], parts["schedule"])] = seq
        expected = _BY_OP.get(parts["op"]) if parts is not None else None
        if parts is None or expected is None or not isinstance(event, expected):
            self.ignored += 1
            return
        if event.agent != parts["agent"] or event.schedule_id != parts["schedule"]:
            self.ignored += 1
            return
        key = (event.agent, event.schedule_id)
        if key == FLEET:
            self._fleet(event, ts_ns)
            return
        row = self.rows.get(key)
        if isinstance(event, ScheduleCreated):
            self._define(key, row=row, event=event, seq=seq, ts_ns=ts_ns, header_trace=trace)
            return
        if row is None:
            self.ignored += 1
            return
        row.seq = seq
        if isinstance(event, ScheduleUpdated):
            self._define(key, row=row, event=event, seq=seq, ts_ns=ts_ns, header_trace=trace)
        elif isinstance(event, ScheduleDeleted):
            self._free(row)
            del self.rows[key]
        else:
            self._change(row, event, ts_ns)

    def _fleet(self, event: ScheduleEvent, ts_ns: int) -> None:
        if isinstance(event, SchedulePaused):
            self.fleet_paused = True
        elif isinstance(event, ScheduleResumed):
            self.fleet_paused = False
            for row in self.rows.values():  # the paused time is not caught up
                row.anchor_ns = max(row.anchor_ns, ts_ns)
        else:
            self.ignored += 1

    def _change(self, row: ScheduleRow, event: ScheduleEvent, ts_ns: int) -> None:
        if isinstance(event, SchedulePaused):
            row.paused = True
        elif isinstance(event, ScheduleResumed):
            if row.paused:
                row.paused = False
                row.anchor_ns = max(row.anchor_ns, ts_ns)  # the paused time is not caught up
        elif isinstance(event, ScheduleFired):
            row.last_slot_ns = max(row.last_slot_ns, event.slot_ns)
            row.fired += 1
            row.last_fired = event
            row.last_fired_ts_ns = ts_ns
            row.probe_seq = max(row.probe_seq, event.probe_seq)
            self._run(row, event.task_id, ts_ns)
        elif isinstance(event, ScheduleTriggered):
            self._run(row, event.task_id, ts_ns)
        elif isinstance(event, ScheduleSkipped):
            if event.reason == "invalid":
                row.invalid_reported = True
            else:
                row.last_slot_ns = max(row.last_slot_ns, event.last_slot_ns)

    def finish(self, agent: str, task_id: str) -> ScheduleRow | None:
        """A fired task ended: its schedule is free again. Returns the freed row, if any."""
        key = self.by_task.pop((agent, task_id), None)
        row = self.rows.get(key) if key is not None else None
        if row is None or row.running_task_id != task_id:
            return None
        row.running_task_id = ""
        return row

    def _run(self, row: ScheduleRow, task_id: str, ts_ns: int) -> None:
        self._free(row)
        row.running_task_id = task_id
        row.running_since_ns = ts_ns
        self.by_task[(row.agent, task_id)] = (row.agent, row.schedule_id)

    def _free(self, row: ScheduleRow) -> None:
        if row.running_task_id:
            self.by_task.pop((row.agent, row.running_task_id), None)
            row.running_task_id = ""

    def _define(
        self,
        key: tuple[str, str],
        *,
        row: ScheduleRow | None,
        event: ScheduleCreated | ScheduleUpdated,
        seq: int,
        ts_ns: int,
        header_trace: str,
    ) -> None:
        if row is None:
            trace = (event.trace if isinstance(event, ScheduleCreated) else "") or header_trace
            row = ScheduleRow(
                agent=event.agent,
                schedule_id=event.schedule_id,
                spec=event.spec,
                policy=event.policy,
                task=event.task,
                trace=trace,
                anchor_ns=ts_ns,
            )
            self.rows[key] = row
        else:  # an update (or a repeated create): the slots already handled stay handled
            row.spec, row.policy, row.task = event.spec, event.policy, event.task
            row.anchor_ns = max(row.anchor_ns, ts_ns)
            if isinstance(event, ScheduleCreated) and event.trace:
                row.trace = event.trace
        if isinstance(event, ScheduleCreated):
            row.paused = event.paused
            row.created_by = event.created_by
        row.note = event.note
        row.seq = seq
        row.definition_seq = seq
        row.invalid_reported = False
        try:
            row.timer, row.invalid = compile_spec(event.spec), ""
        except ConfigError as exc:
            row.timer, row.invalid = None, str(exc)
