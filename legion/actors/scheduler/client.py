"""The one client of the scheduler's trusted requests (``legion.svc.<service>.<op>``): for the CLI, the
launcher (legion.yaml ``schedules:``) and the dashboard. Needs a LEGION credential."""

from __future__ import annotations

from dataclasses import dataclass

from legion.broker import Broker, new_id
from legion.contracts import subjects as subj
from legion.contracts.errors import LegionError
from legion.contracts.scheduler import (
    ScheduleAck,
    ScheduleAction,
    ScheduleControl,
    ScheduleList,
    SchedulePut,
    ScheduleQuery,
)
from legion.contracts.service import ServiceError

__all__ = ["SchedulerClient"]


@dataclass(frozen=True, slots=True)
class SchedulerClient:
    broker: Broker
    service: str = "scheduler"
    timeout: float = 10.0

    async def _call(self, op: str, req: SchedulePut | ScheduleControl | ScheduleQuery) -> ScheduleAck | ScheduleList:
        subject = subj.SERVICE.render(service=self.service, op=op)
        reply = await self.broker.request(
            subject, req, reply_type=(ScheduleAck, ScheduleList, ServiceError), timeout=self.timeout
        )
        if isinstance(reply, ServiceError):
            raise LegionError(f"the scheduler refused {op}: {reply.message}")
        assert isinstance(reply, ScheduleAck | ScheduleList)
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
