"""Schedules declared in legion.yaml (``schedules:``), read with pydantic and kept in sync by the launcher.

Not wired yet: with the config split on main, :class:`ScheduleEntry` becomes the ``schedules``
section (``runtime/config/schedules.py``) and the launcher calls :func:`sync_declared` after the
scheduler started. The shape::

    schedules:
      morning-news:                  # the schedule id, a name token
        agent: alpha
        cron: "0 7 * * mon-fri"      # or every: 30m (offset: 5m), or at: 2026-12-24T18:00
        tz: Europe/Berlin
        jitter: 2m
        overlap: skip                # skip | queue_one | allow
        catch_up: 10m
        task: Summarise the news of the night
        probe: {subject: legion.ext.rss.>}     # optional: fire only if something new arrived
        paused: false

Declared schedules are owned by the file: their ``by`` is ``legion.yaml``, a sync replaces those that
changed and deletes those no longer declared, and never touches schedules agents or operators made.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from legion.actors.scheduler.client import SchedulerClient
from legion.actors.scheduler.timing import parse_duration
from legion.broker import new_id
from legion.contracts.errors import ConfigError
from legion.contracts.names import validate_token
from legion.contracts.scheduler import (
    ScheduleInfo,
    SchedulePolicy,
    ScheduleProbe,
    SchedulePut,
    ScheduleSpec,
    ScheduleTask,
)

__all__ = ["DECLARED_BY", "ScheduleEntry", "SyncReport", "declared_puts", "sync_declared"]

DECLARED_BY = "legion.yaml"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ProbeEntry(_Strict):
    stream: str = "EVENTS"
    subject: str


class ScheduleEntry(_Strict):
    agent: str
    cron: str = ""
    every: str = ""
    offset: str = ""
    at: str = ""
    tz: str = "UTC"
    jitter: str = Field(default="", description="e.g. 2m; each slot fires up to this much later")
    overlap: Literal["skip", "queue_one", "allow"] = "skip"
    catch_up: str = Field(default="10m", description="how late after downtime a slot may still fire")
    task: str = Field(min_length=1)
    input: dict[str, Any] = Field(default_factory=dict)
    max_iterations: int | None = Field(default=None, gt=0)
    probe: ProbeEntry | None = None
    paused: bool = False
    note: str = ""


def _seconds(text: str, what: str) -> float:
    return float(parse_duration(text, what=what)) if text else 0.0


def declared_puts(raw: dict[str, Any] | None) -> list[SchedulePut]:
    """legion.yaml's ``schedules:`` as put requests; ConfigError naming the schedule and the field."""
    puts: list[SchedulePut] = []
    for sid, body in (raw or {}).items():
        where = f"schedules.{sid}"
        try:
            validate_token(sid, kind="schedule name")
            entry = ScheduleEntry.model_validate(body)
            validate_token(entry.agent, kind="agent name")
            spec = ScheduleSpec(
                cron=entry.cron,
                every=entry.every,
                offset=entry.offset,
                at=entry.at,
                tz=entry.tz,
                jitter_s=_seconds(entry.jitter, f"{where}.jitter"),
            )
            probe = ScheduleProbe(stream=entry.probe.stream, subject=entry.probe.subject) if entry.probe else None
            policy = SchedulePolicy(
                overlap=entry.overlap, catch_up_window_s=_seconds(entry.catch_up, f"{where}.catch_up"), probe=probe
            )
        except ValidationError as exc:
            raise ConfigError(f"{where}: {exc.errors()[0]['loc']}: {exc.errors()[0]['msg']}") from None
        except ConfigError as exc:
            raise ConfigError(f"{where}: {exc}") from None
        task = ScheduleTask(text=entry.task, input=entry.input, max_iterations=entry.max_iterations)
        puts.append(
            SchedulePut(
                agent=entry.agent,
                schedule_id=sid,
                spec=spec,
                policy=policy,
                task=task,
                paused=entry.paused,
                note=entry.note,
                by=DECLARED_BY,
                request_id=new_id(),
            )
        )
    return puts


@dataclass(slots=True)
class SyncReport:
    created: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    deleted: list[str] = field(default_factory=list)
    refused: list[str] = field(default_factory=list)


def _same(info: ScheduleInfo, put: SchedulePut) -> bool:
    return (info.spec, info.policy, info.task, info.note) == (put.spec, put.policy, put.task, put.note)


async def sync_declared(client: SchedulerClient, puts: list[SchedulePut], *, owned: set[str]) -> SyncReport:
    """Make the scheduler hold exactly the declared schedules among those the file owns.

    ``owned``: ``agent/schedule`` ids the file declared at the last sync (the launcher keeps them in
    its run state); those no longer declared are deleted. Others' schedules are never touched.
    """
    report = SyncReport()
    current = {f"{i.agent}/{i.schedule_id}": i for i in (await client.list()).schedules}
    for put in puts:
        name = f"{put.agent}/{put.schedule_id}"
        info = current.get(name)
        if info is not None and _same(info, put):
            report.unchanged.append(name)
        else:
            ack = await client.put(put)
            if not ack.ok:
                report.refused.append(f"{name}: {ack.message}")
                continue
            (report.updated if info is not None else report.created).append(name)
        if info is not None and info.paused != put.paused:  # a put creates paused or not; later, control
            action: Literal["pause", "resume"] = "pause" if put.paused else "resume"
            await client.control(action, put.agent, put.schedule_id, by=DECLARED_BY)
    declared = {f"{p.agent}/{p.schedule_id}" for p in puts}
    for name in sorted(owned - declared):
        if name in current:
            agent, sid = name.split("/", 1)
            await client.control("delete", agent, sid, reason="no longer in legion.yaml", by=DECLARED_BY)
            report.deleted.append(name)
    return report
