"""A nats-server restart under a running scheduler: its readers and services come back by themselves."""

from __future__ import annotations

import asyncio

import pytest

from legion.contracts import RequestTimeout, TaskCompleted, Unavailable
from legion.contracts import subjects as subj
from legion.contracts.scheduler import ScheduleAck, SchedulePolicy, SchedulePut, ScheduleSpec, ScheduleTask
from legion.testing import NatsTestServer, TestFleet
from tests.actors.scheduler.sched_rig import Rig

pytestmark = [pytest.mark.nats, pytest.mark.slow]


def put(agent: str, sid: str) -> SchedulePut:
    return SchedulePut(
        agent=agent,
        schedule_id=sid,
        spec=ScheduleSpec(every="1m"),
        policy=SchedulePolicy(overlap="allow"),
        task=ScheduleTask(text="t"),
        request_id=sid,
    )


RETRY_S = 0.2  # between two requests while the client reconnects (bounded by the 30 s deadline)


async def call_until_served(rig: Rig, req: SchedulePut) -> ScheduleAck:
    """The first requests after a restart may find no responder yet (the client is reconnecting)."""
    async with asyncio.timeout(30):
        while True:
            try:
                ack = await rig.call("put", req)
            except (Unavailable, RequestTimeout):  # reconnecting: no responder yet, or the request was lost
                await asyncio.sleep(RETRY_S)
                continue
            assert isinstance(ack, ScheduleAck)
            return ack


async def test_the_scheduler_keeps_its_table_and_fires_after_a_server_restart() -> None:
    async with NatsTestServer() as server:
        admin = await server.admin()
        fleet = TestFleet(server=server, admin=admin)
        rig = Rig(fleet, agents=None)  # type: ignore[arg-type]
        try:
            await rig.ensure_stream()
            run = await rig.start()
            assert (await rig.call("put", put("alpha", "before"))).ok
            await rig.next_minute()
            assert await rig.inbox_count("alpha") == 1
            await server.server.restart()
            ack = await call_until_served(rig, put("alpha", "after"))
            assert ack.ok, ack
            assert run.scheduler.table.get("alpha", "after") is not None, "the reader applied the new record"
            await rig.settle()
            before = await rig.inbox_count("alpha")
            await rig.next_minute()
            assert await rig.inbox_count("alpha") == before + 2
            # the task-end reader came back too (the overlap policy depends on it)
            task, _ = await rig.last_task("alpha")
            done = TaskCompleted(task_id=task.task_id, agent="alpha")
            ack = await admin.js_publish(subj.EVENTS.render(source="alpha", type="task.completed"), done)
            await run.scheduler.wait_events_applied(ack.seq, timeout=30)
            assert run.scheduler.reopened >= 2, "both readers noticed the restart and were opened again"
        finally:
            await rig.stop_all()
            await fleet.close()
            await admin.close()
