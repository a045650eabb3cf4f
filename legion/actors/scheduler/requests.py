"""Agents' own schedule requests: ``set_cron``, ``list_cron`` and ``remove_cron`` (legion.scheduler.<agent>.<op>).

An agent reaches the scheduler only through the ``legion.scheduler.>`` service import, and its
credential may publish only ``legion.scheduler.<itself>.>``: the agent token of the subject is the
caller, enforced by the server. A request whose body names another agent is refused. Agents'
schedules run in UTC with the fleet's default policy; caps and the minimum interval are
:class:`~legion.actors.scheduler.validate.Limits`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from legion.actors.scheduler.plan import plan
from legion.actors.scheduler.table import ScheduleRow
from legion.actors.scheduler.timing import NS
from legion.actors.scheduler.validate import check_schedule, spec_from_text
from legion.contracts import subjects as subj
from legion.contracts.agent_tools import CronList, CronRemove, CronReply, CronSet
from legion.contracts.errors import ConcurrencyConflict, ConfigError
from legion.contracts.scheduler import (
    ScheduleCreated,
    ScheduleDeleted,
    SchedulePolicy,
    ScheduleTask,
    ScheduleUpdated,
)
from legion.runtime.host import Context

if TYPE_CHECKING:
    from legion.actors.scheduler.actor import Scheduler

__all__ = ["AgentRequests", "describe"]


def _iso(ns: int) -> str:
    return datetime.fromtimestamp(ns / NS, tz=UTC).isoformat(timespec="seconds") if ns else ""


def describe(row: ScheduleRow, now_ns: int) -> dict[str, Any]:
    """One row as an agent's tool sees it."""
    spec = row.spec
    schedule = spec.cron or (f"every {spec.every}" if spec.every else f"at {spec.at}")
    out: dict[str, Any] = {"name": row.schedule_id, "schedule": schedule, "tz": spec.tz, "text": row.task.text}
    out["paused"] = row.paused
    if row.invalid:
        out["error"] = row.invalid
    elif not row.paused:
        nxt = plan(row, now_ns).wake_ns
        out["next_run"] = _iso(nxt) if nxt else ""
    if row.last_fired is not None:
        out["last_run"] = _iso(row.last_fired.fire_ns)
        out["last_task_id"] = row.last_fired.task_id
    return out


class AgentRequests:
    def __init__(self, scheduler: Scheduler) -> None:
        self.scheduler = scheduler
        self._lane = asyncio.Lock()  # definitions from this instance one at a time: caps are exact here

    def _caller(self, claimed: str, ctx: Context) -> str:
        parts = subj.SCHEDULER.parse(ctx.msg.subject) if ctx.msg is not None else None
        if parts is None or parts["agent"] != claimed:
            raise ConfigError(
                f"request for agent {claimed!r} arrived on another agent's subject; an agent may only "
                "manage its own schedules"
            )
        return claimed

    def _reply(self, agent: str, request_id: str, message: str = "", *, ok: bool = True) -> CronReply:
        sched = self.scheduler
        now = sched.spec.clock.now_ns()
        jobs = [describe(r, now) for r in sched.table.of_agent(agent)]
        return CronReply(ok=ok, jobs=jobs, message=message, request_id=request_id)

    async def _retrying(self, attempt: Callable[[], Awaitable[None]]) -> None:
        """Run ``attempt`` (decide on the table, append); after losing a race to a firing or another
        writer, catch up and decide again, three times at most."""
        for tries in range(3):
            try:
                await attempt()
            except ConcurrencyConflict:
                if tries == 2:
                    raise
                await self.scheduler.catch_up()
            else:
                return

    async def set(self, req: CronSet, ctx: Context) -> CronReply:
        sched = self.scheduler
        by = f"agent:{req.agent}"
        msg_id = f"sched:{req.agent}:{req.name}:set:{req.request_id}"

        async def save() -> None:
            spec = spec_from_text(req.schedule, tz=req.tz)
            task = ScheduleTask(text=req.text)
            policy = SchedulePolicy()
            async with self._lane:
                row = sched.table.get(req.agent, req.name)
                check_schedule(
                    req.agent,
                    req.name,
                    spec,
                    policy,
                    task,
                    limits=sched.spec.limits,
                    now_ns=sched.spec.clock.now_ns(),
                    existing=sched.table.count_of(req.agent),
                    replaces=row is not None,
                )
                event: ScheduleCreated | ScheduleUpdated
                if row is None:
                    event = ScheduleCreated(
                        schedule_id=req.name,
                        agent=req.agent,
                        spec=spec,
                        policy=policy,
                        task=task,
                        created_by=by,
                        trace=ctx.trace,
                    )
                else:
                    event = ScheduleUpdated(
                        schedule_id=req.name, agent=req.agent, spec=spec, policy=policy, task=task, updated_by=by
                    )
                await sched.append(event, msg_id=msg_id, trace=ctx.trace)

        try:
            self._caller(req.agent, ctx)
            await self._retrying(save)
        except ConfigError as exc:
            return self._reply(req.agent, req.request_id, str(exc), ok=False)
        except ConcurrencyConflict:
            return self._reply(req.agent, req.request_id, "the schedule kept changing; try again", ok=False)
        return self._reply(req.agent, req.request_id, f"schedule {req.name!r} saved")

    async def list(self, req: CronList, ctx: Context) -> CronReply:
        try:
            agent = self._caller(req.agent, ctx)
        except ConfigError as exc:
            return CronReply(ok=False, message=str(exc), request_id=req.request_id)
        return self._reply(agent, req.request_id)

    async def remove(self, req: CronRemove, ctx: Context) -> CronReply:
        sched = self.scheduler
        missing = f"you have no schedule named {req.name!r}; list_cron shows your schedules"

        async def delete() -> None:
            async with self._lane:
                if sched.table.get(req.agent, req.name) is None:
                    raise ConfigError(missing)
                deleted = ScheduleDeleted(schedule_id=req.name, agent=req.agent, by=f"agent:{req.agent}")
                msg_id = f"sched:{req.agent}:{req.name}:remove:{req.request_id}"
                await sched.append(deleted, msg_id=msg_id, trace=ctx.trace)

        try:
            self._caller(req.agent, ctx)
            await self._retrying(delete)
        except ConfigError as exc:
            return self._reply(req.agent, req.request_id, str(exc), ok=False)
        except ConcurrencyConflict:
            return self._reply(req.agent, req.request_id, "the schedule kept changing; try again", ok=False)
        return self._reply(req.agent, req.request_id, f"schedule {req.name!r} removed")
