"""The console side of ``legion cron``: list, add, remove, pause, resume and run now the fleet's
schedules through the scheduler's trusted requests (:class:`legion.runtime.clients.SchedulerClient`,
with the admin credential). Returns data; the commands render it.

A schedule added here is built with legion.yaml's model (:class:`legion.runtime.config.ScheduleEntry`,
same keys, same checks) and created ``by: cli``: a later sync of legion.yaml never deletes it.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, Literal, TypeVar

import msgspec
from pydantic import ValidationError

from legion.cli.console.connect import FleetNotRunning, admin
from legion.cli.console.hints import hint
from legion.contracts.errors import ConfigError, LegionError, RequestTimeout, Unavailable
from legion.contracts.names import validate_token
from legion.contracts.scheduler import ScheduleAck, ScheduleInfo, ScheduleList
from legion.runtime.clients import SchedulerClient
from legion.runtime.config import ScheduleEntry

__all__ = ["CLI_BY", "CronAdd", "CronControl", "add_schedule", "control_schedule", "info_dict", "list_schedules"]

CLI_BY: Final = "cli"
"""The ``by`` of schedules made with ``legion cron``."""

_R = TypeVar("_R")

CronControl = Literal["delete", "pause", "resume", "trigger", "pause_all", "resume_all"]


@dataclass(frozen=True, slots=True)
class CronAdd:
    """``legion cron add``: one of ``cron``, ``every`` (with ``offset``) or ``at``, and the task."""

    fleet_dir: Path
    agent: str
    name: str
    task: str
    cron: str = ""
    every: str = ""
    offset: str = ""
    at: str = ""
    tz: str = "UTC"
    jitter: str = ""
    overlap: Literal["skip", "queue_one", "allow"] = "skip"
    catch_up: str = "10m"
    paused: bool = False
    note: str = ""
    input: dict[str, Any] = field(default_factory=dict)


def _entry(spec: CronAdd) -> ScheduleEntry:
    validate_token(spec.name, kind="schedule name")
    body = {
        "agent": spec.agent,
        "cron": spec.cron,
        "every": spec.every,
        "offset": spec.offset,
        "at": spec.at,
        "tz": spec.tz,
        "jitter": spec.jitter,
        "overlap": spec.overlap,
        "catch_up": spec.catch_up,
        "task": spec.task,
        "input": spec.input,
        "paused": spec.paused,
        "note": spec.note,
    }
    try:
        return ScheduleEntry.model_validate(body)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or 'schedule'}: {e['msg'].removeprefix('Value error, ')}"
            for e in exc.errors()
        )
        raise ConfigError(f"schedule {spec.name!r}: {problems}") from None


async def _call(fleet_dir: Path, work: Callable[[SchedulerClient], Awaitable[_R]]) -> _R:
    """Run ``work(client)`` on the running fleet's scheduler; FleetNotRunning if it does not answer."""
    async with admin(fleet_dir, "legion-cron") as broker:
        try:
            result = await work(SchedulerClient(broker, timeout=5.0))
        except (RequestTimeout, Unavailable) as exc:
            raise FleetNotRunning(
                f"the scheduler of the fleet in {fleet_dir} does not answer ({exc}); "
                f"check it with `{hint('ps', fleet_dir)}` and `{hint('logs scheduler', fleet_dir)}`"
            ) from None
        return result


async def list_schedules(fleet_dir: Path, agent: str = "") -> ScheduleList:
    """The schedules (of one agent, or all) with their next fire time, and whether the fleet is paused."""
    if agent:
        validate_token(agent, kind="agent name")
    return await _call(fleet_dir, lambda client: client.list(agent))


async def add_schedule(spec: CronAdd) -> ScheduleAck:
    """Create or replace AGENT/NAME. ``ok`` false with the scheduler's reason if a rule refused it."""
    put = _entry(spec).put(spec.name, by=CLI_BY)
    return await _call(spec.fleet_dir, lambda client: client.put(put))


async def control_schedule(fleet_dir: Path, action: CronControl, agent: str = "", name: str = "") -> ScheduleAck:
    """Delete, pause, resume or run now AGENT/NAME; pause_all / resume_all the whole fleet."""
    if action not in ("pause_all", "resume_all"):
        validate_token(agent, kind="agent name")
        validate_token(name, kind="schedule name")

    async def work(client: SchedulerClient) -> ScheduleAck:
        try:
            return await client.control(action, agent, name, reason=f"legion cron {action}", by=CLI_BY)
        except (RequestTimeout, Unavailable):
            raise
        except LegionError as exc:  # the scheduler answered with an error
            return ScheduleAck(ok=False, message=str(exc), request_id="")

    return await _call(fleet_dir, work)


def info_dict(info: ScheduleInfo) -> dict[str, Any]:
    """One schedule as JSON-ready data (``legion cron ls --json``)."""
    out: dict[str, Any] = msgspec.to_builtins(info)
    return out
