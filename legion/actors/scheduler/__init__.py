"""The scheduler: event-sourced schedules that send tasks to agents, each slot fired exactly once.

Public API::

    Scheduler(name, SchedulerSpec(limits=Limits(...), clock=SystemClock()))   # the actor
    scheduler_host_spec()      # HostSpec serving legion.scheduler.<agent>.<op> (queue "scheduler")
    scheduler_permissions()    # the NATS permissions its credential needs
    ScheduleTable / plan()     # the pure fold over SCHEDULES and the per-schedule decision
    compile_spec()             # a ScheduleSpec's slots (cron, every, at; IANA zones, DST)
    check_declared()           # legion.yaml ``schedules:`` against the scheduler's rules

The client of the trusted requests (put, control, list) and the ``schedules:`` sync are
``legion.runtime.clients.SchedulerClient`` / ``sync_declared``, the ``schedules:`` section is
``legion.runtime.config.ScheduleEntry``, and the kind is ``kind.py`` (``legion.kinds`` entry point).

Design and decisions: docs/scheduler.md.
"""

from __future__ import annotations

from legion.actors.scheduler.actor import Scheduler
from legion.actors.scheduler.clock import Clock, ManualClock, SystemClock
from legion.actors.scheduler.plan import Firing, Plan, Skip, plan
from legion.actors.scheduler.service import (
    QUEUE,
    check_declared,
    scheduler_factory,
    scheduler_host_spec,
    scheduler_permissions,
)
from legion.actors.scheduler.spec import SchedulerSpec
from legion.actors.scheduler.stream import SCHEDULES, ensure_stream
from legion.actors.scheduler.table import ScheduleRow, ScheduleTable, slot_key, task_id_for
from legion.actors.scheduler.timing import Timer, compile_spec, jitter_ns
from legion.actors.scheduler.validate import Limits, check_schedule, spec_from_text

__all__ = [
    "QUEUE",
    "SCHEDULES",
    "Clock",
    "Firing",
    "Limits",
    "ManualClock",
    "Plan",
    "ScheduleRow",
    "ScheduleTable",
    "Scheduler",
    "SchedulerSpec",
    "Skip",
    "SystemClock",
    "Timer",
    "check_declared",
    "check_schedule",
    "compile_spec",
    "ensure_stream",
    "jitter_ns",
    "plan",
    "scheduler_factory",
    "scheduler_host_spec",
    "scheduler_permissions",
    "slot_key",
    "spec_from_text",
    "task_id_for",
]
