"""Trusted requests on ``legion.svc.<service>.<op>``: put, control (pause, resume, delete, run now, fleet
pause) and list. For the CLI, the launcher (legion.yaml ``schedules:``) and operators.

Only LEGION users reach ``legion.svc.>``; the host routes by contract type, so each handler also
checks that the request came in on that subject and not on an agent's ``legion.scheduler.<agent>.*``.
"""

from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING

from legion.actors.scheduler.plan import plan
from legion.actors.scheduler.table import ScheduleRow, slot_key
from legion.actors.scheduler.validate import check_schedule
from legion.broker import new_id
from legion.contracts import subjects as subj
from legion.contracts.errors import ConcurrencyConflict, ConfigError
from legion.contracts.scheduler import (
    FLEET,
    ScheduleAck,
    ScheduleAction,
    ScheduleControl,
    ScheduleCreated,
    ScheduleDeleted,
    ScheduleInfo,
    ScheduleList,
    SchedulePaused,
    SchedulePut,
    ScheduleQuery,
    ScheduleResumed,
    ScheduleTriggered,
    ScheduleUpdated,
)
from legion.runtime.host import Context

if TYPE_CHECKING:
    from legion.actors.scheduler.actor import Scheduler

__all__ = ["LocalAdmin", "TrustedRequests", "info_of"]


def info_of(row: ScheduleRow, now_ns: int) -> ScheduleInfo:
    nxt = None if (row.invalid or row.paused) else plan(row, now_ns).wake_ns
    return ScheduleInfo(
        agent=row.agent,
        schedule_id=row.schedule_id,
        spec=row.spec,
        policy=row.policy,
        task=row.task,
        paused=row.paused,
        note=row.note,
        invalid=row.invalid,
        next_fire_ns=nxt,
        last_slot_ns=row.last_slot_ns,
        last_task_id=row.last_fired.task_id if row.last_fired else "",
        running_task_id=row.running_task_id,
        created_by=row.created_by,
    )


def _trusted(ctx: Context) -> None:
    if ctx.msg is None or subj.SERVICE.parse(ctx.msg.subject) is None:
        raise ConfigError("schedule administration is served on legion.svc.<scheduler>.<op> only")


class TrustedRequests:
    def __init__(self, scheduler: Scheduler) -> None:
        self.scheduler = scheduler

    def _ack(self, req: SchedulePut | ScheduleControl, message: str = "", *, ok: bool = True) -> ScheduleAck:
        sched = self.scheduler
        row = sched.table.get(req.agent, req.schedule_id)
        info = info_of(row, sched.spec.clock.now_ns()) if row is not None else None
        return ScheduleAck(ok=ok, message=message, request_id=req.request_id, schedule=info)

    async def put(self, req: SchedulePut, ctx: Context) -> ScheduleAck:
        _trusted(ctx)
        return await self.apply_put(req, ctx.trace)

    async def apply_put(self, req: SchedulePut, trace: str) -> ScheduleAck:
        sched = self.scheduler
        row = sched.table.get(req.agent, req.schedule_id)
        try:
            check_schedule(
                req.agent,
                req.schedule_id,
                req.spec,
                req.policy,
                req.task,
                limits=sched.spec.limits,
                now_ns=sched.spec.clock.now_ns(),
                existing=sched.table.count_of(req.agent),
                replaces=row is not None,
            )
            msg_id = f"sched:{req.agent}:{req.schedule_id}:put:{req.request_id}"
            if row is None:
                created = ScheduleCreated(
                    schedule_id=req.schedule_id,
                    agent=req.agent,
                    spec=req.spec,
                    policy=req.policy,
                    task=req.task,
                    paused=req.paused,
                    note=req.note,
                    created_by=req.by,
                    trace=trace,
                )
                await sched.append(created, msg_id=msg_id, trace=trace)
            else:
                updated = ScheduleUpdated(
                    schedule_id=req.schedule_id,
                    agent=req.agent,
                    spec=req.spec,
                    policy=req.policy,
                    task=req.task,
                    note=req.note,
                    updated_by=req.by,
                )
                await sched.append(updated, msg_id=msg_id, trace=trace)
        except ConfigError as exc:
            return self._ack(req, str(exc), ok=False)
        except ConcurrencyConflict:
            return self._ack(req, "the schedule changed at the same time; read it and try again", ok=False)
        return self._ack(req, "saved")

    async def control(self, req: ScheduleControl, ctx: Context) -> ScheduleAck:
        _trusted(ctx)
        return await self.apply_control(req, ctx.trace)

    async def apply_control(self, req: ScheduleControl, trace: str) -> ScheduleAck:
        sched = self.scheduler
        msg_id = f"sched:{req.agent}:{req.schedule_id}:{req.action}:{req.request_id}"
        try:
            if req.action in ("pause_all", "resume_all"):
                agent, sid = FLEET
                cls = SchedulePaused if req.action == "pause_all" else ScheduleResumed
                fleet = cls(schedule_id=sid, agent=agent, by=req.by)
                await sched.append(fleet, msg_id=f"sched:fleet:{req.action}:{req.request_id}", trace=trace)
                return ScheduleAck(ok=True, message=f"{req.action}: done", request_id=req.request_id)
            row = sched.table.get(req.agent, req.schedule_id)
            if row is None:
                return self._ack(req, f"there is no schedule {req.agent}/{req.schedule_id}", ok=False)
            if req.action == "trigger":
                task_id = await self._trigger(row, req, trace)
                ack = self._ack(req, f"task {task_id} sent")
                return ScheduleAck(
                    ok=True, message=ack.message, request_id=req.request_id, schedule=ack.schedule, task_id=task_id
                )
            event: SchedulePaused | ScheduleResumed | ScheduleDeleted
            if req.action == "pause":
                event = SchedulePaused(schedule_id=row.schedule_id, agent=row.agent, reason=req.reason, by=req.by)
            elif req.action == "resume":
                event = ScheduleResumed(schedule_id=row.schedule_id, agent=row.agent, by=req.by)
            else:
                event = ScheduleDeleted(schedule_id=row.schedule_id, agent=row.agent, reason=req.reason, by=req.by)
            await sched.append(event, msg_id=msg_id, trace=trace)
        except ConcurrencyConflict:
            return self._ack(req, "the schedule changed at the same time; read it and try again", ok=False)
        return self._ack(req, f"{req.action}: done")

    async def _trigger(self, row: ScheduleRow, req: ScheduleControl, trace: str) -> str:
        """Run now: record ScheduleTriggered, then send the task; a retried request sends nothing twice."""
        sched = self.scheduler
        digest = hashlib.blake2b(req.request_id.encode(), digest_size=4).hexdigest()
        task_id = f"sched-{row.schedule_id}-now-{digest}"
        key = slot_key(row.agent, row.schedule_id, 0) + f":trigger:{req.request_id}"
        event = ScheduleTriggered(
            schedule_id=row.schedule_id, agent=row.agent, task_id=task_id, key=key, by=req.by, trace=row.trace
        )
        await sched.append(event, msg_id=key, trace=trace)
        await sched.send(row, event)
        return task_id

    async def list(self, req: ScheduleQuery, ctx: Context) -> ScheduleList:
        _trusted(ctx)
        return self.apply_list(req)

    def apply_list(self, req: ScheduleQuery) -> ScheduleList:
        sched = self.scheduler
        now = sched.spec.clock.now_ns()
        rows = (
            sched.table.of_agent(req.agent)
            if req.agent
            else sorted(sched.table.rows.values(), key=lambda r: (r.agent, r.schedule_id))
        )
        return ScheduleList(schedules=[info_of(r, now) for r in rows], fleet_paused=sched.table.fleet_paused)


class LocalAdmin:
    """The trusted requests in process (a :class:`~legion.runtime.clients.ScheduleAdmin`): how the
    scheduler syncs legion.yaml's ``schedules:`` at start, before it serves requests."""

    def __init__(self, requests: TrustedRequests) -> None:
        self.requests = requests

    async def put(self, req: SchedulePut) -> ScheduleAck:
        return await self.requests.apply_put(req, new_id())

    async def control(
        self, action: ScheduleAction, agent: str = "", schedule_id: str = "", *, reason: str = "", by: str = ""
    ) -> ScheduleAck:
        req = ScheduleControl(
            action=action, agent=agent, schedule_id=schedule_id, reason=reason, by=by, request_id=new_id()
        )
        return await self.requests.apply_control(req, new_id())

    async def list(self, agent: str = "") -> ScheduleList:
        return self.requests.apply_list(ScheduleQuery(agent=agent))
