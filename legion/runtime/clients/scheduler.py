"""THE scheduler client: trusted requests on ``legion.svc.<scheduler>.<op>`` (put, control, list), for
the console (``legion cron``), the gateway and dashboard to come, and the sync of legion.yaml's
``schedules:`` (:func:`sync_declared`). Needs a LEGION credential; agents use their own
``legion.scheduler.<agent>.<op>`` requests instead.

:func:`sync_declared` works on any :class:`ScheduleAdmin`: this client over NATS, or the scheduler's
own in-process view (the scheduler syncs the file itself when it starts; docs/scheduler.md says why).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Final, Literal, Protocol

from legion.broker import Broker, new_id
from legion.contracts import subjects as subj
from legion.contracts.errors import LegionError, Unavailable
from legion.contracts.scheduler import (
    ScheduleAck,
    ScheduleAction,
    ScheduleControl,
    ScheduleInfo,
    ScheduleList,
    SchedulePut,
    ScheduleQuery,
)
from legion.contracts.service import ServiceError
from legion.runtime.config.schedules import DECLARED_BY

__all__ = ["DECLARED_BY", "SCHEDULER_SERVICE", "ScheduleAdmin", "SchedulerClient", "SyncReport", "sync_declared"]

SCHEDULER_SERVICE: Final = "scheduler"
"""The scheduler's service name: trusted callers request ``legion.svc.scheduler.<op>``."""


class ScheduleAdmin(Protocol):
    """What the trusted requests offer; :class:`SchedulerClient` over NATS is one."""

    async def put(self, req: SchedulePut) -> ScheduleAck: ...

    async def control(
        self, action: ScheduleAction, agent: str = "", schedule_id: str = "", *, reason: str = "", by: str = ""
    ) -> ScheduleAck: ...

    async def list(self, agent: str = "") -> ScheduleList: ...


@dataclass(frozen=True, slots=True)
class SchedulerClient:
    broker: Broker
    service: str = SCHEDULER_SERVICE
    timeout: float = 10.0

    async def _call(self, op: str, req: SchedulePut | ScheduleControl | ScheduleQuery) -> ScheduleAck | ScheduleList:
        subject = subj.SERVICE.render(service=self.service, op=op)
        reply = await self.broker.request(
            subject, req, reply_type=(ScheduleAck, ScheduleList, ServiceError), timeout=self.timeout
        )
        if isinstance(reply, ServiceError):
            raise LegionError(f"the scheduler refused {op}: {reply.message}")
        if not isinstance(reply, ScheduleAck | ScheduleList):
            raise Unavailable(f"the scheduler answered {op} with {type(reply).__name__}")
        return reply

    async def put(self, req: SchedulePut) -> ScheduleAck:
        """Create or replace; ``ok`` false with the reason if a rule refused it."""
        reply = await self._call("put", req)
        assert isinstance(reply, ScheduleAck)
        return reply

    async def control(
        self, action: ScheduleAction, agent: str = "", schedule_id: str = "", *, reason: str = "", by: str = ""
    ) -> ScheduleAck:
        """pause, resume, delete, trigger (run now) one schedule; pause_all, resume_all the fleet."""
        req = ScheduleControl(
            action=action, agent=agent, schedule_id=schedule_id, reason=reason, by=by, request_id=new_id()
        )
        reply = await self._call("control", req)
        assert isinstance(reply, ScheduleAck)
        return reply

    async def list(self, agent: str = "") -> ScheduleList:
        reply = await self._call("list", ScheduleQuery(agent=agent))
        assert isinstance(reply, ScheduleList)
        return reply


@dataclass(slots=True)
class SyncReport:
    created: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    deleted: list[str] = field(default_factory=list)
    refused: list[str] = field(default_factory=list)


def _same(info: ScheduleInfo, put: SchedulePut) -> bool:
    return (info.spec, info.policy, info.task, info.note) == (put.spec, put.policy, put.task, put.note)


async def sync_declared(admin: ScheduleAdmin, puts: list[SchedulePut], *, owned: set[str] | None = None) -> SyncReport:
    """Make the scheduler hold exactly the declared schedules among those the file owns.

    ``owned``: ``agent/schedule`` ids the file owns; by default every schedule created by
    ``legion.yaml`` (:data:`DECLARED_BY`). Those no longer declared are deleted; schedules agents or
    operators made are never touched (a declared id an agent already uses is replaced, though: the
    file wins for the ids it names).
    """
    report = SyncReport()
    current = {f"{i.agent}/{i.schedule_id}": i for i in (await admin.list()).schedules}
    if owned is None:
        owned = {name for name, info in current.items() if info.created_by == DECLARED_BY}
    for put in puts:
        name = f"{put.agent}/{put.schedule_id}"
        info = current.get(name)
        if info is not None and _same(info, put):
            report.unchanged.append(name)
        else:
            ack = await admin.put(put)
            if not ack.ok:
                report.refused.append(f"{name}: {ack.message}")
                continue
            (report.updated if info is not None else report.created).append(name)
        if info is not None and info.paused != put.paused:  # a put creates paused or not; later, control
            action: Literal["pause", "resume"] = "pause" if put.paused else "resume"
            await admin.control(action, put.agent, put.schedule_id, by=DECLARED_BY)
    declared = {f"{p.agent}/{p.schedule_id}" for p in puts}
    for name in sorted(owned - declared):
        if name in current:
            agent, sid = name.split("/", 1)
            await admin.control("delete", agent, sid, reason="no longer in legion.yaml", by=DECLARED_BY)
            report.deleted.append(name)
    return report
