"""The actor host: typed routes, service replies, consumer dispatch, heartbeats, shutdown."""

from __future__ import annotations

import asyncio

import pytest

from legion.broker import INBOX, ConsumeSpec, agent_inbox_durable, service_permissions
from legion.contracts import (
    AssignTask,
    Cancel,
    ConfigError,
    Heartbeat,
    LedgerAck,
    Release,
    Reserve,
    Reserved,
    ServiceError,
    decode,
)
from legion.contracts import subjects as subj
from legion.runtime.host.actor import Actor, Context, handler, routes_of
from legion.runtime.host.actor_host import ActorHost, HostSpec, ServiceSpec
from legion.testing import TestFleet


class Toy(Actor):
    kind = "toy"

    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.tasks: asyncio.Queue[str] = asyncio.Queue()
        self.stopped = False

    @handler
    async def reserve(self, req: Reserve, ctx: Context) -> Reserved:
        return Reserved(reservation_id=req.reservation_id, granted=req.agent != "broke", reason=ctx.trace)

    @handler
    async def release(self, req: Release, ctx: Context) -> LedgerAck:
        raise ValueError("boom")

    @handler
    async def task(self, msg: AssignTask, ctx: Context) -> None:
        self.tasks.put_nowait(msg.task_id)

    async def on_stop(self) -> None:
        self.stopped = True


def test_registration_reports_every_problem_at_once() -> None:
    class Bad(Actor):
        @handler
        async def no_type(self, msg, ctx: Context) -> None:  # type: ignore[no-untyped-def]
            ...

        @handler
        def not_async(self, msg: Cancel, ctx: Context) -> None: ...

        @handler
        async def returns_str(self, msg: AssignTask, ctx: Context) -> str:
            return ""

        @handler
        async def twice(self, msg: Reserve, ctx: Context) -> None: ...

        @handler
        async def twice_again(self, msg: Reserve, ctx: Context) -> None: ...

    with pytest.raises(ConfigError) as err:
        routes_of(Bad)
    text = str(err.value)
    for fragment in ("no_type", "not_async", "returns_str", "already handled"):
        assert fragment in text, text
    assert set(routes_of(Toy)) == {Reserve, Release, AssignTask}


@pytest.mark.nats
async def test_host_serves_requests_consumes_and_shuts_down(legion_fleet: TestFleet) -> None:
    fleet = legion_fleet
    name = fleet.name("toy")
    agent = await fleet.add_agent("worker")
    service = fleet.server.auth.issue_service(
        name, service_permissions(name, serves=[subj.SERVICE.wildcard(service=name)], publishes=["$JS.ACK.>"])
    )
    broker = await fleet.connect(service, name=name)
    toy = Toy(name)
    spec = HostSpec(
        consumers=(
            ConsumeSpec(stream=INBOX, durable=agent_inbox_durable(agent.name), dead_letter_source=name, expires_s=1.0),
        ),
        services=(ServiceSpec(subject=subj.SERVICE.wildcard(service=name), queue=name),),
        heartbeat_s=0.2,
    )
    host = ActorHost(toy, broker, spec)
    beats: asyncio.Queue[Heartbeat] = asyncio.Queue()

    async def on_beat(msg: object) -> None:
        beats.put_nowait(decode(msg.data, msg.headers, type=Heartbeat))  # type: ignore[attr-defined]

    await fleet.admin.subscribe(subj.HEALTH.render(actor=name), on_beat)
    async with asyncio.TaskGroup() as tg:
        run = tg.create_task(host.run())
        await asyncio.wait_for(host.ready.wait(), 10)
        ok = await fleet.admin.request(
            subj.SERVICE.render(service=name, op="reserve"),
            Reserve(reservation_id="r1", agent="a", estimate_usd=1),  # type: ignore[arg-type]
            trace="trace-1",
        )
        assert ok == Reserved(reservation_id="r1", granted=True, reason="trace-1"), "the trace travels"
        failed = await fleet.admin.request(subj.SERVICE.render(service=name, op="x"), Release(reservation_id="r1"))
        assert isinstance(failed, ServiceError)
        assert failed.code == "internal"
        unsupported = await fleet.admin.request(subj.SERVICE.render(service=name, op="x"), Cancel(task_id="t"))
        assert isinstance(unsupported, ServiceError)
        assert "no handler for 'task.cancel.v1'" in unsupported.message
        await fleet.admin.js_publish(subj.AGENT_INBOX.render(agent=agent.name), AssignTask(task_id="t1", text="x"))
        assert await asyncio.wait_for(toy.tasks.get(), 10) == "t1"
        first = await asyncio.wait_for(beats.get(), 10)
        second = await asyncio.wait_for(beats.get(), 10)
        assert second.seq > first.seq
        host.stop()
        host.stop()
        await run
    assert toy.stopped


class Gated(Actor):
    """Holds every reservation of agent ``held`` until ``gate`` opens."""

    kind = "toy"

    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.gate = asyncio.Event()
        self.held = 0

    @handler
    async def reserve(self, req: Reserve, ctx: Context) -> Reserved:
        if req.agent == "held":
            self.held += 1
            await self.gate.wait()
        return Reserved(reservation_id=req.reservation_id, granted=True)


@pytest.mark.nats
async def test_an_unbounded_service_hands_every_request_to_the_actor_at_once(legion_fleet: TestFleet) -> None:
    """concurrency=None: requests behind held ones are not queued by the host (the actor admits them)."""
    fleet = legion_fleet
    name = fleet.name("gated")
    service = fleet.server.auth.issue_service(
        name, service_permissions(name, serves=[subj.SERVICE.wildcard(service=name)])
    )
    actor = Gated(name)
    spec = HostSpec(
        services=(ServiceSpec(subject=subj.SERVICE.wildcard(service=name), queue=name, concurrency=None),),
        heartbeat_s=0,
        announce=False,
    )
    host = ActorHost(actor, await fleet.connect(service, name=name), spec)
    subject = subj.SERVICE.render(service=name, op="reserve")

    def ask(agent: str, n: int) -> Reserve:
        return Reserve(reservation_id=f"{agent}-{n}", agent=agent, estimate_usd=1)  # type: ignore[arg-type]

    async with asyncio.TaskGroup() as tg:
        run = tg.create_task(host.run())
        await asyncio.wait_for(host.ready.wait(), 10)
        held = [tg.create_task(fleet.admin.request(subject, ask("held", n), timeout=20)) for n in range(100)]
        free = await fleet.admin.request(subject, ask("free", 0), timeout=10)
        assert isinstance(free, Reserved)
        assert not any(t.done() for t in held), "the free request was answered while all held ones wait"
        actor.gate.set()
        assert all(isinstance(r, Reserved) for r in await asyncio.gather(*held))
        host.stop()
        await run
