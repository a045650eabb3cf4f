"""``schedules:``: schedules the fleet declares, kept by the scheduler (docs/scheduler.md).

::

    schedules:
      morning-news:                  # the schedule id, a name token
        agent: alpha                 # an agent of this file
        cron: "0 7 * * mon-fri"      # or every: 30m (offset: 5m), or at: 2026-12-24T18:00
        tz: Europe/Berlin
        jitter: 2m
        overlap: skip                # skip | queue_one | allow
        catch_up: 10m
        task: Summarise the news of the night
        probe: {subject: legion.ext.rss.>}     # optional: fire only if something new arrived
        paused: false

Checked here when legion.yaml is read: the shape, exactly one of ``cron``/``every``/``at``, the
durations, the time zone, and (in ``FleetConfig``) that the agent exists. The cron expression itself
and the scheduler's limits (minimum interval, text size) are checked by the scheduler when it starts
(it owns the cron parser); a refusal stops it with the configuration exit code, so ``legion up`` fails
naming the schedule. Declared schedules are created ``by: legion.yaml`` (:data:`DECLARED_BY`): the file
owns them, and a sync deletes those it no longer declares.
"""

from __future__ import annotations

import uuid
from typing import Annotated, Any, Final, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import AfterValidator, Field, model_validator

from legion.contracts.errors import ConfigError
from legion.contracts.scheduler import (
    SchedulePolicy,
    ScheduleProbe,
    SchedulePut,
    ScheduleSpec,
    ScheduleTask,
    parse_duration,
)
from legion.runtime.config.base import Strict

__all__ = ["DECLARED_BY", "ProbeEntry", "ScheduleEntry", "declared_puts"]

DECLARED_BY: Final = "legion.yaml"
"""The ``by`` of schedules declared in legion.yaml: the file owns them (and only them)."""


def _duration(what: str) -> AfterValidator:
    def check(value: str) -> str:
        if value:
            try:
                parse_duration(value, what=what)
            except ConfigError as exc:  # pydantic reports ValueErrors with their key path
                raise ValueError(str(exc)) from None
        return value

    return AfterValidator(check)


def _zone(value: str) -> str:
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        raise ValueError(
            f"time zone {value!r} is unknown; use an IANA name such as 'UTC', 'Europe/Berlin' or 'America/New_York'"
        ) from None
    return value


class ProbeEntry(Strict):
    stream: str = "EVENTS"
    subject: str = Field(min_length=1)


class ScheduleEntry(Strict):
    agent: str
    cron: str = ""
    every: Annotated[str, _duration("every")] = ""
    offset: Annotated[str, _duration("offset")] = ""
    at: str = ""
    tz: Annotated[str, AfterValidator(_zone)] = "UTC"
    jitter: Annotated[str, _duration("jitter")] = Field(default="", description="each slot fires up to this later")
    overlap: Literal["skip", "queue_one", "allow"] = "skip"
    catch_up: Annotated[str, _duration("catch_up")] = Field(
        default="10m", description="how late after downtime a slot may still fire"
    )
    task: str = Field(min_length=1)
    input: dict[str, Any] = Field(default_factory=dict)
    max_iterations: int | None = Field(default=None, gt=0)
    probe: ProbeEntry | None = None
    paused: bool = False
    note: str = ""

    @model_validator(mode="after")
    def _one_when(self) -> ScheduleEntry:
        given = [k for k in ("cron", "every", "at") if getattr(self, k)]
        if len(given) != 1:
            raise ValueError(f"give exactly one of cron, every and at (got {', '.join(given) or 'none'})")
        if self.offset and not self.every:
            raise ValueError("offset applies to every only")
        return self

    def put(self, schedule_id: str, *, by: str = DECLARED_BY) -> SchedulePut:
        """This entry as the scheduler's put request, owned by legion.yaml unless ``by`` says who
        else makes it (``legion cron add`` builds its schedules from this model too)."""
        spec = ScheduleSpec(
            cron=self.cron,
            every=self.every,
            offset=self.offset,
            at=self.at,
            tz=self.tz,
            jitter_s=float(parse_duration(self.jitter, what="jitter")) if self.jitter else 0.0,
        )
        probe = ScheduleProbe(stream=self.probe.stream, subject=self.probe.subject) if self.probe else None
        policy = SchedulePolicy(
            overlap=self.overlap,
            catch_up_window_s=float(parse_duration(self.catch_up, what="catch_up")) if self.catch_up else 0.0,
            probe=probe,
        )
        return SchedulePut(
            agent=self.agent,
            schedule_id=schedule_id,
            spec=spec,
            policy=policy,
            task=ScheduleTask(text=self.task, input=self.input, max_iterations=self.max_iterations),
            paused=self.paused,
            note=self.note,
            by=by,
            request_id=uuid.uuid4().hex,
        )


def declared_puts(schedules: dict[str, ScheduleEntry]) -> list[SchedulePut]:
    """legion.yaml's ``schedules:`` as put requests, in the file's order."""
    return [entry.put(sid) for sid, entry in schedules.items()]
