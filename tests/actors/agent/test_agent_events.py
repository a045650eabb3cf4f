"""Events delivered to agents (legion.yaml ``subscribe``): each becomes a task; invalid external
events become IngestRejected and never stop the consumer; only the subscriber may fetch its durable."""

from __future__ import annotations

import asyncio
from pathlib import Path

import msgspec
import pytest

from legion.broker import EVENTS, ConsumeSpec, Delivery, PullConsumer, agent_events_durable
from legion.contracts import ConfigError, ExternalEvent, PermissionDenied, TaskCompleted, TaskStarted
from legion.contracts import subjects as subj
from legion.contracts.agent_tools import AgentEvent
from legion.contracts.ingest import IngestRejected
from legion.runtime.config import load_config
from legion.testing import FakeLlmServer, Reply, TestFleet, ToolCall
from legion.testing.fleet import agent_fleet


def _finish(summary: str) -> Reply:
    return Reply(tool_calls=[ToolCall(name="finish_task", arguments={"summary": summary})])


def _user_text(fake_llm: FakeLlmServer, index: int = 0) -> str:
    messages = fake_llm.requests[index].body["messages"]
    return next(str(m["content"]) for m in messages if m["role"] == "user")


@pytest.mark.nats
async def test_a_valid_external_event_becomes_a_task_of_the_subscribed_agent(
    legion_fleet: TestFleet, fake_llm: FakeLlmServer, tmp_path: Path
) -> None:
    source, creds = legion_fleet.add_ingest("github")
    fake_llm.script(_finish("noted the push"))
    async with agent_fleet(
        legion_fleet, fake_llm, tmp_path, subscribe={"worker": [subj.EXT.wildcard(source=source)]}
    ) as rig:
        ext = await legion_fleet.connect(creds, name="external")
        event = ExternalEvent(kind="push", data={"ref": "main", "note": "hid\u200bden"})
        ack = await ext.js_publish(subj.EXT.render(source=source, type="push"), event)

        done = await rig.probe.next(TaskCompleted, lambda e: e.task_id == f"event-{ack.seq}")
        assert done.summary == "noted the push" and done.agent == rig.agent.name
        assert rig.probe.of(TaskStarted, lambda e: e.task_id == f"event-{ack.seq}")
        text = _user_text(fake_llm)
        assert text.startswith("An event arrived: type push (external.event.v1), from the external system")
        assert source in text and '"ref": "main"' in text and '"note": "hidden"' in text, text
        assert "Decide whether and how to act on it." in text


@pytest.mark.nats
async def test_invalid_external_events_are_rejected_and_the_consumer_goes_on(
    legion_fleet: TestFleet, fake_llm: FakeLlmServer, tmp_path: Path
) -> None:
    source, creds = legion_fleet.add_ingest("hooks")
    fake_llm.script(_finish("handled the good one"))
    async with agent_fleet(
        legion_fleet, fake_llm, tmp_path, subscribe={"worker": [subj.EXT.wildcard(source=source)]}
    ) as rig:
        ext = await legion_fleet.connect(creds, name="external")
        subject = subj.EXT.render(source=source, type="ping")
        oversized = msgspec.json.encode(ExternalEvent(kind="big", data={"blob": "x" * 70_000}))
        bad = {
            b"not json {": "not valid JSON",
            b'{"hello": "world"}': "names no contract",
            b'{"type": "made.up.v1", "x": 1}': "unknown contract tag 'made.up.v1'",
            b'{"type": "external.event.v1", "data": {}}': "missing required field `kind`",
            oversized: "bytes",
        }
        seqs = {}
        for body, reason in bad.items():
            seqs[(await ext.js_publish(subject, body)).seq] = reason
        good = await ext.js_publish(subject, ExternalEvent(kind="ping"))

        done = await rig.probe.next(TaskCompleted, lambda e: e.task_id == f"event-{good.seq}")
        assert done.summary == "handled the good one"
        rejected = {r.sequence: r for r in rig.probe.of(IngestRejected)}
        assert sorted(rejected) == sorted(seqs), "one IngestRejected per invalid message"
        for seq, reason in seqs.items():
            assert reason in rejected[seq].reason, rejected[seq].reason
            assert rejected[seq].subject == subject
        assert rejected[list(seqs)[2]].message_type == "made.up.v1"
        started = {e.task_id for e in rig.probe.of(TaskStarted)}
        assert started == {f"event-{good.seq}"}, "no invalid message became a task"
        assert len(fake_llm.requests) == 1
        await rig.stop()  # the ack follows the recorded outcome; a stopped host has flushed its acks
        info = await legion_fleet.admin.js.consumer_info(EVENTS, agent_events_durable(rig.agent.name))
        assert (info.num_pending, info.num_ack_pending, info.num_redelivered) == (0, 0, 0), "each acked once"


@pytest.mark.nats
async def test_an_agent_receives_another_agents_published_event_as_a_task(
    legion_fleet: TestFleet, fake_llm: FakeLlmServer, tmp_path: Path
) -> None:
    alpha_name = legion_fleet.name("alpha")
    fake_llm.script(
        Reply(tool_calls=[ToolCall(name="publish_event", arguments={"type": "report.ready", "data": {"pages": 3}})]),
        _finish("published"),
        model="agent-0",
    )
    fake_llm.script(_finish("read the report"), model="agent-1")
    async with agent_fleet(
        legion_fleet,
        fake_llm,
        tmp_path,
        agents=("alpha", "beta"),
        own_models=True,
        subscribe={"beta": [f"legion.events.{alpha_name}.report.>"]},
    ) as rig:
        alpha, beta = rig.agents
        task_id = await rig.assign("Write the report and announce it.", agent=alpha)
        await rig.probe.next(TaskCompleted, lambda e: e.task_id == task_id)

        done = await rig.probe.next(TaskCompleted, lambda e: e.agent == beta.name)
        assert done.summary == "read the report" and done.task_id.startswith("event-")
        stored = await legion_fleet.admin.js.get_msg(EVENTS, int(done.task_id.removeprefix("event-")))
        assert stored.subject == subj.EVENTS.render(source=alpha.name, type="report.ready")
        assert rig.probe.of(AgentEvent, lambda e: e.event_type == "report.ready")
        beta_prompt = next(r for r in fake_llm.requests if r.model == "agent-1")
        text = next(str(m["content"]) for m in beta_prompt.body["messages"] if m["role"] == "user")
        assert f"type report.ready (agent.event.v1), from {alpha.name}" in text and '"pages": 3' in text
        # alpha's other events (task.started, agent.step, ...) match no filter of beta
        assert [e.task_id for e in rig.probe.of(TaskStarted, lambda e: e.agent == beta.name)] == [done.task_id]


@pytest.mark.nats
async def test_only_the_subscriber_can_fetch_its_events_durable(legion_fleet: TestFleet) -> None:
    fleet = legion_fleet
    source = fleet.name("src")
    owner = await fleet.add_agent("owner", subscribe=(subj.EXT.wildcard(source=source),))
    subscriber = await fleet.add_agent("subscriber", subscribe=(subj.EXT.wildcard(source=source),))
    plain = await fleet.add_agent("plain")
    spec = ConsumeSpec(stream=EVENTS, durable=agent_events_durable(owner.name), batch=4, expires_s=1.0)

    async def never(_d: Delivery) -> None:
        raise AssertionError("must never be called")

    for handle in (plain, subscriber):
        broker = await fleet.connect(handle.creds, name=handle.name)
        with pytest.raises(ExceptionGroup) as err:
            await asyncio.wait_for(PullConsumer(broker, spec, never).run(), 10)
        assert err.group_contains(PermissionDenied), handle.name

    got = asyncio.Event()

    async def handle(d: Delivery) -> None:
        assert isinstance(d.message, ExternalEvent) and d.message.kind == "ok"
        got.set()

    broker = await fleet.connect(owner.creds, name=owner.name)
    consumer = PullConsumer(broker, spec, handle)
    async with asyncio.TaskGroup() as tg:
        task = tg.create_task(consumer.run())
        await fleet.admin.js_publish(subj.EXT.render(source=source, type="t"), ExternalEvent(kind="ok"))
        try:
            await asyncio.wait_for(got.wait(), 10)
        finally:
            consumer.stop()
        await task


@pytest.mark.parametrize("pattern", ["legion.vault.>", "foo", "legion.events.a.>.b", "legion.events.A.x"])
def test_config_refuses_a_subscription_that_is_not_an_event_filter(tmp_path: Path, pattern: str) -> None:
    (tmp_path / "legion.yaml").write_text(f"agents:\n  a:\n    subscribe: ['{pattern}']\n", encoding="utf-8")
    with pytest.raises(ConfigError) as err:
        load_config(tmp_path)
    text = str(err.value)
    assert text.startswith(f"{tmp_path / 'legion.yaml'}: invalid configuration"), text
    assert f"agents.a.subscribe: {pattern!r} is not an event filter; use legion.events." in text, text
    assert "a final '>' for the rest" in text
