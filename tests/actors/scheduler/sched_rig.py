"""Schedulers on the shared test server with a manual clock, scoped to this test's agents and stream.

Each test gets its own SCHEDULES-like stream (``SCHED_<id>``, capturing only its agents' schedule
subjects) and scheduler names, so schedulers of other tests never see its schedules.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import Any

from legion.actors.scheduler import (
    ManualClock,
    Scheduler,
    SchedulerSpec,
    ensure_stream,
    scheduler_host_spec,
    scheduler_permissions,
)
from legion.actors.scheduler.stream import stream_subjects
from legion.actors.scheduler.table import op_of
from legion.broker import INBOX, Broker
from legion.contracts import AssignTask, decode
from legion.contracts import subjects as subj
from legion.contracts.scheduler import (
    ScheduleCreated,
    SchedulePolicy,
    ScheduleSpec,
    ScheduleTask,
)
from legion.runtime.host import ActorHost
from legion.testing import TestFleet, read_stream

MIN_NS = 60 * 1_000_000_000


@dataclass
class Running:
    scheduler: Scheduler
    host: ActorHost
    task: asyncio.Task[None]
    broker: Broker

    async def stop(self) -> None:
        self.host.stop()
        await self.task


@dataclass
class Rig:
    fleet: TestFleet
    agents: tuple[str, ...]
    clock: ManualClock = field(default_factory=lambda: ManualClock(time.time_ns()))
    running: list[Running] = field(default_factory=list)

    @property
    def stream(self) -> str:
        return f"SCHED_{self.fleet.id}"

    @property
    def service(self) -> str:
        return self.fleet.name("schedsvc")

    async def call(self, op: str, req: Any) -> Any:
        """A trusted request on legion.svc.<this test's scheduler service>.<op>, as the admin."""
        return await self.admin.request(subj.SERVICE.render(service=self.service, op=op), req, timeout=10)

    @property
    def admin(self) -> Broker:
        return self.fleet.admin

    async def start(self, base: str = "sched", **spec: Any) -> Running:
        name = self.fleet.name(base)
        perms = scheduler_permissions(name, agents=self.agents, service=self.service, stream=self.stream)
        creds = self.fleet.server.auth.issue_service(name, perms)
        broker = await self.fleet.connect(creds, name=name)
        sched = Scheduler(
            name,
            SchedulerSpec(clock=self.clock, stream=self.stream, agents=self.agents, service=self.service, **spec),
        )
        host = ActorHost(sched, broker, scheduler_host_spec(self.agents, service=self.service))
        task = asyncio.create_task(host.run())
        ready = asyncio.ensure_future(host.ready.wait())
        done, _ = await asyncio.wait({task, ready}, timeout=60, return_when=asyncio.FIRST_COMPLETED)
        if task in done:
            ready.cancel()
            task.result()
        assert ready in done, "the scheduler did not start within 60 s"
        run = Running(scheduler=sched, host=host, task=task, broker=broker)
        self.running.append(run)
        return run

    async def stop_all(self) -> None:
        for run in self.running:
            if not run.task.done():
                await run.stop()
        self.running.clear()

    async def ensure_stream(self) -> None:
        await ensure_stream(self.admin, self.stream, stream_subjects(self.agents))

    async def append(self, event: Any, *, msg_id: str | None = None, trace: str | None = None) -> int:
        """Write a schedule event straight into the stream, as a trusted writer (or a test) would."""
        subject = subj.SCHEDULES.render(agent=event.agent, schedule=event.schedule_id, op=op_of(event))
        ack = await self.admin.js_publish(subject, event, msg_id=msg_id, trace=trace)
        return ack.seq

    async def create(
        self,
        agent: str,
        sid: str,
        spec: ScheduleSpec | None = None,
        *,
        policy: SchedulePolicy | None = None,
        text: str = "do the thing",
        trace: str = "",
    ) -> int:
        event = ScheduleCreated(
            schedule_id=sid,
            agent=agent,
            spec=spec or ScheduleSpec(every="1m"),
            policy=policy or SchedulePolicy(overlap="allow"),
            task=ScheduleTask(text=text),
            trace=trace,
        )
        return await self.append(event)

    async def tick(self, seconds: float) -> None:
        """Move the clock and wait until every running scheduler has acted on the new time."""
        now = self.clock.advance(seconds)
        await self.settle(now)

    async def next_minute(self, after_s: float = 1.0) -> int:
        """Move the clock to ``after_s`` past the next minute boundary (a slot of every cron or ``every 1m``)."""
        now = self.clock.now_ns()
        boundary = (now // MIN_NS + 1) * MIN_NS
        self.clock.set(boundary + int(after_s * 1e9))
        await self.settle()
        return boundary

    async def settle(self, now: int | None = None) -> None:
        now = now if now is not None else self.clock.now_ns()
        for run in self.running:
            if not run.task.done():
                await run.scheduler.wait_ticked(now, timeout=60)

    async def inbox_count(self, agent: str) -> int:
        subject = subj.AGENT_INBOX.render(agent=agent)
        info = await self.admin.js_api(f"STREAM.INFO.{INBOX}", {"subjects_filter": subject})
        return int(info["state"].get("subjects", {}).get(subject, 0))

    async def last_task(self, agent: str) -> tuple[AssignTask, dict[str, str]]:
        subject = subj.AGENT_INBOX.render(agent=agent)
        msg = await self.admin.request_raw(
            f"{self.admin.js_api_prefix}.DIRECT.GET.{INBOX}", f'{{"last_by_subj":"{subject}"}}'.encode()
        )
        task = decode(msg.data, msg.headers)
        assert isinstance(task, AssignTask), task
        return task, dict(msg.headers or {})

    async def events(self, source: str, type_: str) -> list[Any]:
        msgs = await read_stream(self.admin, "EVENTS", subj.EVENTS.render(source=source, type=type_))
        return [decode(m.data, m.headers) for m in msgs]
