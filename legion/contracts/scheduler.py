"""Scheduler contracts: what a schedule is, the events that change it, and what each slot became.

The vocabulary follows Temporal's schedules (``temporalio/client/_schedule.py``): a schedule has a
*spec* (when: one cron expression, an interval or a one-shot time, a time zone, jitter), a
*policy* (what happens to overlapping and missed slots) and an *action* (here the task sent to the
agent's inbox). Each nominal time the spec produces is a *slot*; a slot is fired once or skipped
once, never both, never twice.

Every change is an event on the SCHEDULES stream, on ``legion.schedules.<agent>.<schedule>.<op>``
(:data:`legion.contracts.subjects.SCHEDULES`); the scheduler's table is a fold over them:

- :class:`ScheduleCreated` / :class:`ScheduleUpdated` (the whole definition, replaced),
  :class:`SchedulePaused`, :class:`ScheduleResumed`, :class:`ScheduleDeleted`;
- :class:`ScheduleFired` (the slot, when it fired, the task id it became) and
  :class:`ScheduleSkipped` (a run of slots that did not fire, with the reason), and
  :class:`ScheduleTriggered` (a run-now). They are also emitted to EVENTS
  (``legion.events.<scheduler>.schedule.fired|skipped|triggered``) for observers.

Trusted callers (CLI, launcher) use ``legion.svc.scheduler.<op>``: :class:`SchedulePut` (``put``),
:class:`ScheduleControl` (``control``: pause, resume, delete, trigger, pause_all, resume_all),
answered by :class:`ScheduleAck`, and :class:`ScheduleQuery` (``list``) by :class:`ScheduleList`.

Times on the wire are integers: nanoseconds since the Unix epoch, UTC (``*_ns``), so a replay
compares them exactly. ``at`` is the one human-written time: ISO 8601, read in ``tz`` if it has no
offset.
"""

from __future__ import annotations

import re
from typing import Any, Final, Literal

import msgspec

from legion.contracts.base import Event, Reply, Request
from legion.contracts.errors import ConfigError

__all__ = [
    "FLEET",
    "OVERLAP_POLICIES",
    "SKIP_REASONS",
    "OverlapPolicy",
    "ScheduleAck",
    "ScheduleAction",
    "ScheduleControl",
    "ScheduleCreated",
    "ScheduleDeleted",
    "ScheduleFired",
    "ScheduleInfo",
    "ScheduleList",
    "SchedulePaused",
    "SchedulePolicy",
    "ScheduleProbe",
    "SchedulePut",
    "ScheduleQuery",
    "ScheduleResumed",
    "ScheduleSkipped",
    "ScheduleSpec",
    "ScheduleTask",
    "ScheduleTriggered",
    "ScheduleUpdated",
    "SkipReason",
    "parse_duration",
]

FLEET: tuple[str, str] = ("scheduler", "fleet")
"""(agent, schedule_id) of the fleet-wide pause: SchedulePaused / ScheduleResumed on
``legion.schedules.scheduler.fleet.<op>`` pause and resume every schedule (``scheduler`` is a reserved
name, never an agent)."""

OverlapPolicy = Literal["skip", "queue_one", "allow"]
"""What a slot does while the task of the previous firing still runs (Temporal's ScheduleOverlapPolicy):

- ``skip``: it is skipped (``schedule.skipped`` with reason ``overlap``) (Temporal SKIP);
- ``queue_one``: the latest such slot waits and fires when the running task ends, if it is still
  inside the catch-up window; older waiting slots are skipped as ``superseded`` (Temporal BUFFER_ONE);
- ``allow``: it fires anyway (Temporal ALLOW_ALL).
"""
OVERLAP_POLICIES: tuple[OverlapPolicy, ...] = ("skip", "queue_one", "allow")

SkipReason = Literal["missed", "superseded", "overlap", "invalid", "quiet"]
"""Why slots did not fire:

- ``missed``: the slot's fire time is older than the catch-up window (the scheduler was down);
- ``superseded``: a later slot was also due (after downtime only the latest slot inside the window fires);
- ``overlap``: the previous firing's task still ran and the overlap policy is ``skip``;
- ``invalid``: the stored definition cannot be evaluated (e.g. a time zone this host does not know);
- ``quiet``: the schedule's probe found nothing new, so the slot did not wake the agent (a heartbeat
  that costs no model call when there is nothing to do).
"""
SKIP_REASONS: tuple[SkipReason, ...] = ("missed", "superseded", "overlap", "invalid", "quiet")
"""A paused schedule's slots are not skipped one by one: they are never produced (see ScheduleResumed)."""


class ScheduleSpec(msgspec.Struct, frozen=True, kw_only=True):
    """When a schedule's slots are. Exactly one of ``cron``, ``every`` and ``at`` is set.

    - ``cron``: five fields (``30 2 * * *``, ``0 9 * * mon-fri``) or an alias (``@hourly``, ``@daily``,
      ``@midnight``, ``@weekly``, ``@monthly``, ``@yearly``, ``@annually``), read in ``tz``.
    - ``every``: an interval such as ``30m``, ``1h30m``, ``90s``, ``1d``: real elapsed time, slots at
      ``epoch + offset + k * every`` (Temporal's ScheduleIntervalSpec), so they do not depend on when the
      schedule was created or the scheduler started.
    - ``at``: one slot, an ISO 8601 time (``2026-12-24T18:00``; without an offset it is read in ``tz``).
    """

    cron: str = ""
    every: str = ""
    offset: str = ""
    """Only with ``every``: shifts the slots (``every: 1d, offset: 9h`` = 09:00 UTC daily)."""
    at: str = ""
    tz: str = "UTC"
    """IANA time zone name for ``cron`` and an ``at`` without offset (``Europe/Berlin``)."""
    jitter_s: float = 0.0
    """Each slot fires up to this many seconds late, by an amount derived from the schedule id and the
    slot, so every scheduler instance and every restart picks the same fire time."""


class ScheduleProbe(msgspec.Struct, frozen=True, kw_only=True):
    """A cheap check before a due slot fires, run by the scheduler without any model call: the slot fires
    only if ``stream`` stored a message matching ``subject`` (wildcards allowed) since the last firing
    (since the schedule was created, before its first). E.g. ``subject: legion.ext.github.>`` wakes
    the agent at most every 15 minutes and only when GitHub sent something; ``stream: KV_bb_proj,
    subject: $KV.bb_proj.todo`` only when a blackboard key changed."""

    stream: str = "EVENTS"
    subject: str


class SchedulePolicy(msgspec.Struct, frozen=True, kw_only=True):
    """What happens to overlapping and missed slots (Temporal's SchedulePolicy)."""

    overlap: OverlapPolicy = "skip"
    catch_up_window_s: float = 600.0
    """After downtime, a slot whose fire time is at most this old still fires (only the latest such
    slot of a schedule); older slots are recorded as skipped with reason ``missed``."""
    running_for_s: float = 3600.0
    """How long a fired task counts as running for the overlap policy when no ``task.completed`` or
    ``task.failed`` event of it arrives."""
    probe: ScheduleProbe | None = None
    """Fire a due slot only if the probe finds something new; otherwise skip it as ``quiet``."""


class ScheduleTask(msgspec.Struct, frozen=True, kw_only=True):
    """What a slot becomes: an AssignTask to the agent's inbox with these fields."""

    text: str
    input: dict[str, Any] = msgspec.field(default_factory=dict)
    max_iterations: int | None = None


class ScheduleCreated(Event, frozen=True, kw_only=True, tag="schedule.created.v1"):
    """A new schedule. Its slots are those after the stream time of this event, so a schedule never
    fires for times before it existed."""

    schedule_id: str
    agent: str
    spec: ScheduleSpec
    policy: SchedulePolicy = msgspec.field(default_factory=SchedulePolicy)
    task: ScheduleTask
    paused: bool = False
    note: str = ""
    created_by: str = ""
    trace: str = ""
    """The trace every firing of this schedule carries (the creating request's trace)."""


class ScheduleUpdated(Event, frozen=True, kw_only=True, tag="schedule.updated.v1"):
    """The whole definition replaced. Slots already fired or skipped stay so; the next slot is the first
    one of the new spec after the later of the last handled slot and this event."""

    schedule_id: str
    agent: str
    spec: ScheduleSpec
    policy: SchedulePolicy = msgspec.field(default_factory=SchedulePolicy)
    task: ScheduleTask
    note: str = ""
    updated_by: str = ""


class SchedulePaused(Event, frozen=True, kw_only=True, tag="schedule.paused.v1"):
    """No slot fires while paused; the slots of the paused time are not caught up on resume."""

    schedule_id: str
    agent: str
    reason: str = ""
    by: str = ""


class ScheduleResumed(Event, frozen=True, kw_only=True, tag="schedule.resumed.v1"):
    """Slots after this event fire again (the paused time is not caught up)."""

    schedule_id: str
    agent: str
    by: str = ""


class ScheduleDeleted(Event, frozen=True, kw_only=True, tag="schedule.deleted.v1"):
    schedule_id: str
    agent: str
    reason: str = ""
    by: str = ""


class ScheduleFired(Event, frozen=True, kw_only=True, tag="schedule.fired.v1"):
    """A slot fired: ``task_id`` was sent to ``agent``'s inbox with ``Nats-Msg-Id`` = ``key``."""

    schedule_id: str
    agent: str
    slot_ns: int
    """The nominal time of the slot (before jitter)."""
    fire_ns: int
    """When the slot was due: ``slot_ns`` + its jitter."""
    task_id: str
    key: str
    """The slot's idempotency key (schedule + slot): the Nats-Msg-Id of the task and of this event."""
    late_s: float = 0.0
    """How long after ``fire_ns`` it actually fired (catch-up after downtime, a queued overlap)."""
    trace: str = ""
    probe_seq: int = 0
    """With a probe: the probed stream's last sequence when it fired; the next probe looks after it."""


class ScheduleSkipped(Event, frozen=True, kw_only=True, tag="schedule.skipped.v1"):
    """``count`` slots from ``slot_ns`` to ``last_slot_ns`` (nominal times) did not fire, for ``reason``."""

    schedule_id: str
    agent: str
    slot_ns: int
    last_slot_ns: int
    count: int = 1
    reason: SkipReason
    detail: str = ""
    running_task_id: str = ""
    """With reason ``overlap``: the task that was still running."""
    trace: str = ""


class ScheduleTriggered(Event, frozen=True, kw_only=True, tag="schedule.triggered.v1"):
    """A run-now: the schedule's task was sent outside its slots (``key`` = the request's), recorded on
    its own subject so it never stands for a slot; the task counts as running for the overlap policy."""

    schedule_id: str
    agent: str
    task_id: str
    key: str
    by: str = ""
    trace: str = ""


# -- trusted requests on legion.svc.scheduler.<op> (the CLI, the launcher, operators) ---------------

ScheduleAction = Literal["pause", "resume", "delete", "trigger", "pause_all", "resume_all"]
"""``pause_all`` / ``resume_all`` pause every schedule of the fleet (agent and schedule_id empty)."""


class ScheduleInfo(msgspec.Struct, frozen=True, kw_only=True):
    """One schedule as the scheduler sees it now."""

    agent: str
    schedule_id: str
    spec: ScheduleSpec
    policy: SchedulePolicy
    task: ScheduleTask
    paused: bool = False
    note: str = ""
    invalid: str = ""
    next_fire_ns: int | None = None
    last_slot_ns: int = 0
    last_task_id: str = ""
    running_task_id: str = ""
    created_by: str = ""  # who created it: an agent's name, legion.yaml, an operator


class SchedulePut(Request, frozen=True, kw_only=True, tag="schedule.put.v1"):
    """Create or replace a schedule (``op`` = ``put``), with the full spec, policy and task."""

    agent: str
    schedule_id: str
    spec: ScheduleSpec
    policy: SchedulePolicy = msgspec.field(default_factory=SchedulePolicy)
    task: ScheduleTask
    paused: bool = False
    note: str = ""
    by: str = ""
    request_id: str


class ScheduleControl(Request, frozen=True, kw_only=True, tag="schedule.control.v1"):
    """Pause, resume, delete or run now one schedule, or pause/resume the fleet (``op`` = ``control``)."""

    action: ScheduleAction
    agent: str = ""
    schedule_id: str = ""
    reason: str = ""
    by: str = ""
    request_id: str


class ScheduleQuery(Request, frozen=True, kw_only=True, tag="schedule.query.v1"):
    """The schedules of ``agent`` (all agents when empty) (``op`` = ``list``)."""

    agent: str = ""


class ScheduleAck(Reply, frozen=True, kw_only=True, tag="schedule.ack.v1"):
    ok: bool
    message: str = ""
    request_id: str = ""
    schedule: ScheduleInfo | None = None
    task_id: str = ""
    """With action ``trigger``: the task that was sent."""


class ScheduleList(Reply, frozen=True, kw_only=True, tag="schedule.list.v1"):
    schedules: list[ScheduleInfo] = msgspec.field(default_factory=list)
    fleet_paused: bool = False


# -- durations as written in a spec (every 30m) and in legion.yaml (jitter: 2m) --------------------
_DURATION: Final = re.compile(r"(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?")
_UNITS: Final = (86_400, 3_600, 60, 1)


def parse_duration(text: str, *, what: str = "interval") -> int:
    """``1h30m`` -> seconds. Units d, h, m, s in that order; the total must be > 0."""
    value = text.strip().lower().replace(" ", "")
    m = _DURATION.fullmatch(value)
    if not value or m is None:
        raise ConfigError(
            f"{what} {text!r} is not a duration; write it as a number with a unit, d h m or s, "
            "largest first (e.g. '30m', '1h30m', '90s', '1d')"
        )
    seconds = sum(int(g) * unit for g, unit in zip(m.groups(), _UNITS, strict=True) if g)
    if seconds <= 0:
        raise ConfigError(f"{what} {text!r} is zero; give a positive duration such as '30m'")
    return seconds
