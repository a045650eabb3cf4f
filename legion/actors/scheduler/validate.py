"""Checks a schedule must pass before it is recorded: the spec compiles, per-agent caps, policy bounds.

Every error is a :class:`ConfigError` whose message names the value, the rule and the fix. The stored
stream is not trusted to have passed these checks (it may hold schedules written under other
limits, or by hand): the table copes with anything (see table.py); these checks only guard new
definitions.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from legion.actors.scheduler.probe import check_probe
from legion.actors.scheduler.timing import NS, Timer, compile_spec
from legion.contracts.errors import ConfigError
from legion.contracts.names import validate_token
from legion.contracts.scheduler import OVERLAP_POLICIES, SchedulePolicy, ScheduleSpec, ScheduleTask

__all__ = ["MAX_WINDOW_SLOTS", "Limits", "check_schedule", "spec_from_text"]

MAX_WINDOW_SLOTS = 1000
"""Slots a catch-up window may hold: planning walks them one by one (about 15 us each for cron)."""


@dataclass(frozen=True, slots=True)
class Limits:
    """Per-agent caps on what an agent (or legion.yaml) may schedule."""

    max_schedules: int = 50
    """Schedules one agent may have."""
    min_interval_s: float = 60.0
    """The shortest distance between two slots of one schedule."""
    max_text: int = 8000
    """Characters of a scheduled task's text."""
    max_catch_up_s: float = 7 * 86_400.0


def spec_from_text(schedule: str, *, tz: str = "UTC") -> ScheduleSpec:
    """What an agent's ``set_cron`` writes: ``every 30m``, ``at 2026-12-24T18:00``, ``@hourly`` or cron fields."""
    text = " ".join(schedule.split())
    lowered = text.lower()
    if lowered.startswith("every "):
        return ScheduleSpec(every=text[6:], tz=tz)
    if lowered.startswith("at "):
        return ScheduleSpec(at=text[3:], tz=tz)
    return ScheduleSpec(cron=text, tz=tz)


def _check_policy(policy: SchedulePolicy, limits: Limits) -> None:
    if policy.overlap not in OVERLAP_POLICIES:
        raise ConfigError(f"overlap {policy.overlap!r} is unknown; use one of {', '.join(OVERLAP_POLICIES)}")
    window = policy.catch_up_window_s
    if not (math.isfinite(window) and 1 <= window <= limits.max_catch_up_s):
        raise ConfigError(
            f"catch_up_window_s {window!r} must be between 1 and {limits.max_catch_up_s:g} seconds "
            "(how late after downtime a slot may still fire)"
        )
    if not (math.isfinite(policy.running_for_s) and policy.running_for_s > 0):
        raise ConfigError(f"running_for_s {policy.running_for_s!r} must be a number of seconds > 0")
    if policy.probe is not None:
        check_probe(policy.probe)


def check_schedule(
    agent: str,
    schedule_id: str,
    spec: ScheduleSpec,
    policy: SchedulePolicy,
    task: ScheduleTask,
    *,
    limits: Limits,
    now_ns: int,
    existing: int,
    replaces: bool,
) -> Timer:
    """The compiled timer of a new or replaced schedule; ConfigError if any rule is broken.

    ``existing``: how many schedules ``agent`` has now; ``replaces``: ``schedule_id`` is one of them.
    """
    validate_token(agent, kind="agent name")
    validate_token(schedule_id, kind="schedule name")
    if not replaces and existing >= limits.max_schedules:
        raise ConfigError(
            f"agent {agent!r} already has {existing} schedules, the most allowed is {limits.max_schedules}; "
            "remove one first (remove_cron) or replace an existing one by reusing its name"
        )
    timer = compile_spec(spec)
    _check_policy(policy, limits)
    if not task.text.strip():
        raise ConfigError("the scheduled task's text is empty; say what the agent should do at each slot")
    if len(task.text) > limits.max_text:
        raise ConfigError(f"the scheduled task's text has {len(task.text)} characters, at most {limits.max_text}")
    if timer.kind == "at":
        if timer.at_ns <= now_ns:
            raise ConfigError(f"at {spec.at!r} is in the past; give a future time")
        return timer
    gap = timer.min_gap_s(now_ns)
    if gap is None:
        raise ConfigError(f"cron expression {spec.cron!r} never fires (no two slots in the next 50 years)")
    if gap < limits.min_interval_s:
        what = f"every {spec.every!r}" if timer.kind == "every" else f"cron {spec.cron!r}"
        raise ConfigError(
            f"{what} fires every {gap:g} s, more often than the minimum interval of {limits.min_interval_s:g} s "
            f"for agent {agent!r}; schedule it less often"
        )
    if timer.jitter_ns and timer.jitter_ns >= int(gap * NS):
        raise ConfigError(f"jitter_s {spec.jitter_s:g} must be shorter than the time between slots ({gap:g} s)")
    in_window = policy.catch_up_window_s / gap
    if in_window > MAX_WINDOW_SLOTS:
        raise ConfigError(
            f"catch_up_window_s {policy.catch_up_window_s:g} holds about {in_window:.0f} slots of this schedule, "
            f"at most {MAX_WINDOW_SLOTS}: after downtime only the latest fires anyway; shorten the window"
        )
    return timer
