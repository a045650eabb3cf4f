"""An agent's events durable: provisioned with multiple filters, from "new", updated and deleted with
legion.yaml's ``subscribe``; raw consumers hand undecodable messages to one actor method."""

from __future__ import annotations

import asyncio

import nats.js.errors
import pytest
from nats.js.api import DeliverPolicy

from legion.broker import EVENTS, ConsumeSpec, Delivery, FleetLayout, PullConsumer, agent_events_durable, provision
from legion.contracts import ConfigError, ExternalEvent, UnknownEvent
from legion.contracts import subjects as subj
from legion.runtime.host.actor import Actor, Context
from legion.runtime.host.actor_host import ActorHost, HostSpec
from legion.testing import TestFleet

pytestmark = pytest.mark.nats


def _layout(agent: str, *filters: str) -> FleetLayout:
    subs = ((agent, filters),) if filters else ()
    return FleetLayout(agents=(agent,), streams=(), inbox_ack_wait_s=12.0, subscriptions=subs)


async def test_the_events_durable_follows_the_subscriptions(legion_fleet: TestFleet) -> None:
    fleet = legion_fleet
    agent = fleet.name("sub")
    gh, ci = subj.EXT.wildcard(source=fleet.name("gh")), subj.EXT.wildcard(source=fleet.name("ci"))
    durable = agent_events_durable(agent)
    await fleet.admin.js_publish(subj.EXT.render(source=fleet.name("gh"), type="old"), ExternalEvent(kind="old"))

    report = await provision(fleet.admin, _layout(agent, gh, ci))
    assert f"consumer EVENTS/{durable}" in report.created
    info = await fleet.admin.js.consumer_info(EVENTS, durable)
    assert sorted(info.config.filter_subjects or []) == sorted([gh, ci])
    assert info.config.deliver_policy == DeliverPolicy.NEW and info.config.ack_wait == 12.0
    assert info.num_pending == 0, "an agent subscribed later does not get the history"

    assert f"consumer EVENTS/{durable}" in (await provision(fleet.admin, _layout(agent, ci, gh))).unchanged
    narrower = subj.EXT.render(source=fleet.name("gh"), type="push")
    assert f"consumer EVENTS/{durable}" in (await provision(fleet.admin, _layout(agent, gh, narrower))).updated
    info = await fleet.admin.js.consumer_info(EVENTS, durable)
    assert (info.config.filter_subjects or [info.config.filter_subject]) == [gh], "the covered filter is dropped"

    assert f"consumer EVENTS/{durable}" in (await provision(fleet.admin, _layout(agent))).deleted
    with pytest.raises(nats.js.errors.NotFoundError):
        await fleet.admin.js.consumer_info(EVENTS, durable)


async def test_partly_overlapping_filters_are_refused_with_the_fix() -> None:
    layout = _layout("x", "legion.ext.*.push", "legion.ext.github.*")
    with pytest.raises(ConfigError, match="overlap"):
        layout.all_consumers()


async def test_a_raw_consumer_hands_an_undecodable_message_to_its_handler(legion_fleet: TestFleet) -> None:
    fleet = legion_fleet
    source = fleet.name("raw")
    agent = await fleet.add_agent("raw", subscribe=(subj.EXT.wildcard(source=source),))
    broker = await fleet.connect(agent.creds, name=agent.name)
    seen: asyncio.Queue[Delivery] = asyncio.Queue()

    async def handle(d: Delivery) -> None:
        seen.put_nowait(d)

    spec = ConsumeSpec(stream=EVENTS, durable=agent_events_durable(agent.name), expires_s=1.0, strict=True, raw=True)
    consumer = PullConsumer(broker, spec, handle)
    async with asyncio.TaskGroup() as tg:
        task = tg.create_task(consumer.run())
        await fleet.admin.js_publish(subj.EXT.render(source=source, type="x"), b"garbage")
        await fleet.admin.js_publish(subj.EXT.render(source=source, type="x"), ExternalEvent(kind="fine"))
        try:
            bad = await asyncio.wait_for(seen.get(), 10)
            good = await asyncio.wait_for(seen.get(), 10)
        finally:
            consumer.stop()
        await task
    assert isinstance(bad.message, UnknownEvent) and bad.message.data == b"garbage" and bad.decode_error
    assert isinstance(good.message, ExternalEvent) and good.decode_error == ""
    assert consumer.dead_lettered == 0 and consumer.processed == 2


class Raw(Actor):
    kind = "raw"

    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.got: asyncio.Queue[tuple[Delivery, Context]] = asyncio.Queue()

    async def on_delivery(self, delivery: Delivery, ctx: Context) -> None:
        self.got.put_nowait((delivery, ctx))


async def test_the_host_runs_raw_consumers_through_on_delivery(legion_fleet: TestFleet) -> None:
    fleet = legion_fleet
    source = fleet.name("hostraw")
    agent = await fleet.add_agent("hostraw", subscribe=(subj.EXT.wildcard(source=source),))
    broker = await fleet.connect(agent.creds, name=agent.name)
    spec = ConsumeSpec(stream=EVENTS, durable=agent_events_durable(agent.name), expires_s=1.0)
    with pytest.raises(ConfigError, match="on_delivery"):
        ActorHost(Actor(agent.name), broker, HostSpec(raw_consumers=(spec,), heartbeat_s=0, announce=False))

    actor = Raw(agent.name)
    host = ActorHost(actor, broker, HostSpec(raw_consumers=(spec,), heartbeat_s=0, announce=False, grace_s=1))
    run = asyncio.create_task(host.run())
    try:
        await asyncio.wait_for(host.ready.wait(), 10)
        await fleet.admin.js_publish(subj.EXT.render(source=source, type="y"), b"\xff not json", trace="t-raw")
        delivery, ctx = await asyncio.wait_for(actor.got.get(), 10)
        assert isinstance(delivery.message, UnknownEvent) and delivery.message.data == b"\xff not json"
        assert ctx.trace == "t-raw" and ctx.actor == agent.name
    finally:
        host.stop()
        await run
