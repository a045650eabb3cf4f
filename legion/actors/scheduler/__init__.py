"""The scheduler: event-sourced schedules that send tasks to agents, each slot fired exactly once.

Public API::

    Scheduler(name, SchedulerSpec(limits=Limits(...), clock=SystemClock()))   # the actor
    scheduler_host_spec()      # HostSpec serving legion.scheduler.<agent>.<op> (queue "scheduler")
    scheduler_permissions()    # the NATS permissions its credential needs
    ScheduleTable / plan()     # the pure fold over SCHEDULES and the per-schedule decision
    compile_spec()             # a ScheduleSpec's slots (cron, every, at; IANA zones, DST)
    SchedulerClient            # trusted requests: put, control (pause, resume, delete, run now), list
    declared_puts() / sync_declared()   # legion.yaml ``schedules:`` (not wired yet)

Design and decisions: docs/scheduler.md.
"""

from __future__ import annotations

from legion.actors.scheduler.actor import Scheduler
from legion.actors.scheduler.client import SchedulerClient
from legion.actors.scheduler.clock import Clock, ManualClock, SystemClock
from legion.actors.scheduler.declared import DECLARED_BY, ScheduleEntry, SyncReport, declared_puts, sync_declared
from legion.actors.scheduler.plan import Firing, Plan, Skip, plan
from legion.actors.scheduler.service import QUEUE, scheduler_factory, scheduler_host_spec, scheduler_permissions
from legion.actors.scheduler.spec import SchedulerSpec
from legion.actors.scheduler.stream import SCHEDULES, ensure_stream
from legion.actors.scheduler.table import ScheduleRow, ScheduleTable, slot_key, task_id_for
from legion.actors.scheduler.timing import Timer, compile_spec, jitter_ns
from legion.actors.scheduler.validate import Limits, check_schedule, spec_from_text

__all__ = [
    "DECLARED_BY",
    "QUEUE",
    "SCHEDULES",
    "Clock",
    "Firing",
    "Limits",
    "ManualClock",
    "Plan",
    "ScheduleEntry",
    "ScheduleRow",
    "ScheduleTable",
    "Scheduler",
    "SchedulerClient",
    "SchedulerSpec",
    "Skip",
    "SyncReport",
    "SystemClock",
    "Timer",
    "check_schedule",
    "compile_spec",
    "declared_puts",
    "ensure_stream",
    "jitter_ns",
    "plan",
    "scheduler_factory",
    "scheduler_host_spec",
    "scheduler_permissions",
    "slot_key",
    "spec_from_text",
    "sync_declared",
    "task_id_for",
]
