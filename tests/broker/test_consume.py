"""The pull-consumer loop against a real server, with an agent's own credentials."""

from __future__ import annotations

import asyncio
import json

import pytest

from legion.broker import INBOX, Broker, ConsumeSpec, Delivery, PullConsumer, agent_inbox_durable
from legion.contracts import AssignTask, DeadLettered, PermissionDenied, Unavailable, decode
from legion.contracts import subjects as subj
from legion.testing import AgentHandle, TestFleet

pytestmark = pytest.mark.nats


async def _agent(fleet: TestFleet) -> tuple[AgentHandle, Broker]:
    agent = await fleet.add_agent("worker")
    return agent, await fleet.connect(agent.creds, name=agent.name)


def _spec(agent: AgentHandle, **kw: object) -> ConsumeSpec:
    defaults: dict[str, object] = {
        "stream": INBOX,
        "durable": agent_inbox_durable(agent.name),
        "batch": 8,
        "expires_s": 1.0,  # stop() waits for outstanding pulls to expire: keep the tests quick
        "max_deliver": 3,
        "backoff_s": (0.05,),
        "dead_letter_source": agent.name,
        "strict": True,
    }
    return ConsumeSpec(**{**defaults, **kw})  # type: ignore[arg-type]


async def _send(fleet: TestFleet, agent: AgentHandle, *task_ids: str) -> None:
    for task_id in task_ids:
        await fleet.admin.js_publish(subj.AGENT_INBOX.render(agent=agent.name), AssignTask(task_id=task_id, text="go"))


async def _run_until(consumer: PullConsumer, done: asyncio.Event, timeout: float = 10) -> None:
    async with asyncio.TaskGroup() as tg:
        task = tg.create_task(consumer.run())
        try:
            await asyncio.wait_for(done.wait(), timeout)
        finally:
            consumer.stop()
        await task


async def _pending(fleet: TestFleet, agent: AgentHandle) -> tuple[int, int]:
    info = await fleet.admin.js.consumer_info(INBOX, agent_inbox_durable(agent.name))
    return info.num_pending, info.num_ack_pending


async def test_messages_are_handled_in_order_and_acked(legion_fleet: TestFleet) -> None:
    agent, broker = await _agent(legion_fleet)
    await _send(legion_fleet, agent, *(f"t{i}" for i in range(20)))
    seen: list[str] = []
    done = asyncio.Event()

    async def handle(d: Delivery) -> None:
        assert isinstance(d.message, AssignTask)
        seen.append(d.message.task_id)
        if len(seen) == 20:
            done.set()

    consumer = PullConsumer(broker, _spec(agent), handle)
    await _run_until(consumer, done)
    assert seen == [f"t{i}" for i in range(20)]
    assert consumer.processed == 20
    assert await _pending(legion_fleet, agent) == (0, 0), "every message was acked and left the work queue"


async def test_a_failing_handler_is_retried_then_succeeds(legion_fleet: TestFleet) -> None:
    agent, broker = await _agent(legion_fleet)
    await _send(legion_fleet, agent, "flaky")
    attempts: list[int] = []
    done = asyncio.Event()

    async def handle(d: Delivery) -> None:
        attempts.append(d.deliveries)
        if d.deliveries < 2:
            raise ConnectionError("provider hiccup")
        done.set()

    consumer = PullConsumer(broker, _spec(agent), handle)
    await _run_until(consumer, done)
    assert attempts == [1, 2]
    assert consumer.dead_lettered == 0
    assert await _pending(legion_fleet, agent) == (0, 0)


async def test_poison_message_is_dead_lettered_and_the_consumer_goes_on(legion_fleet: TestFleet) -> None:
    fleet = legion_fleet
    agent, broker = await _agent(fleet)
    dead: list[DeadLettered] = []
    done = asyncio.Event()

    async def on_event(msg: object) -> None:
        dead.append(decode(msg.data, msg.headers, type=DeadLettered))  # type: ignore[attr-defined]
        done.set()

    await fleet.admin.subscribe(subj.EVENTS.render(source=agent.name, type="deadletter"), on_event)
    await _send(fleet, agent, "poison", "fine")
    handled: list[tuple[str, int]] = []

    async def handle(d: Delivery) -> None:
        assert isinstance(d.message, AssignTask)
        handled.append((d.message.task_id, d.deliveries))
        if d.message.task_id == "poison":
            raise ValueError("cannot parse this task")

    consumer = PullConsumer(broker, _spec(agent), handle)
    await _run_until(consumer, done)
    [event] = dead
    assert event.deliveries == 3
    assert event.subject == subj.AGENT_INBOX.render(agent=agent.name)
    assert "cannot parse this task" in event.error
    assert event.message_type == "task.assign.v1"
    assert [d for t, d in handled if t == "poison"] == [1, 2, 3], "bounded: max_deliver deliveries, no more"
    assert ("fine", 1) in handled
    assert await _pending(fleet, agent) == (0, 0)


async def test_undecodable_message_is_dead_lettered_at_once(legion_fleet: TestFleet) -> None:
    fleet = legion_fleet
    agent, broker = await _agent(fleet)
    subject = subj.AGENT_INBOX.render(agent=agent.name)
    await fleet.admin.js_publish(subject, b'{"text": 1}', headers={"Legion-Type": "task.assign.v1"})
    await _send(fleet, agent, "after")
    handled: list[str] = []
    done = asyncio.Event()

    async def handle(d: Delivery) -> None:
        handled.append(getattr(d.message, "task_id", "?"))
        done.set()

    consumer = PullConsumer(broker, _spec(agent), handle)
    await _run_until(consumer, done)
    assert handled == ["after"]
    assert consumer.dead_lettered == 1
    stored = await fleet.admin.js.get_last_msg("EVENTS", subj.EVENTS.render(source=agent.name, type="deadletter"))
    assert "invalid 'task.assign.v1' message" in json.loads(stored.data)["error"]


async def test_stop_finishes_in_flight_work_before_returning(legion_fleet: TestFleet) -> None:
    agent, broker = await _agent(legion_fleet)
    await _send(legion_fleet, agent, "slow")
    started, release = asyncio.Event(), asyncio.Event()
    finished: list[str] = []

    async def handle(d: Delivery) -> None:
        started.set()
        await release.wait()
        finished.append("slow")

    consumer = PullConsumer(broker, _spec(agent), handle)
    async with asyncio.TaskGroup() as tg:
        task = tg.create_task(consumer.run())
        await asyncio.wait_for(started.wait(), 10)
        consumer.stop()
        consumer.stop()  # safe twice
        release.set()
        await task
    assert finished == ["slow"]
    assert await _pending(legion_fleet, agent) == (0, 0), "the in-flight message was acked, not abandoned"


@pytest.mark.slow
async def test_long_work_is_kept_alive_and_not_redelivered(legion_fleet: TestFleet) -> None:
    """ack_wait is 1 s; the handler works 2.5 s; +WPI every 0.3 s keeps the message ours."""
    fleet = legion_fleet
    agent, broker = await _agent(fleet)
    durable = agent_inbox_durable(agent.name)
    info = await fleet.admin.js.consumer_info(INBOX, durable)
    config = info.config
    config.ack_wait = 1.0
    await fleet.admin.js.add_consumer(INBOX, config)
    await _send(fleet, agent, "long")
    deliveries: list[int] = []
    done = asyncio.Event()
    work_s = 2.5

    async def handle(d: Delivery) -> None:
        deliveries.append(d.deliveries)
        await asyncio.sleep(work_s)  # simulated long work, longer than ack_wait
        done.set()

    consumer = PullConsumer(broker, _spec(agent, in_progress_every_s=0.3, concurrency=2), handle)
    await _run_until(consumer, done)
    assert deliveries == [1]
    assert await _pending(fleet, agent) == (0, 0)


async def test_consuming_another_agents_inbox_is_refused(legion_fleet: TestFleet) -> None:
    fleet = legion_fleet
    _agent_a, broker = await _agent(fleet)
    other = await fleet.add_agent("other")
    await _send(fleet, other, "not-yours")

    async def handle(d: Delivery) -> None:
        raise AssertionError("must never be called")

    consumer = PullConsumer(broker, _spec(other), handle)
    with pytest.raises(ExceptionGroup) as err:
        await asyncio.wait_for(consumer.run(), 10)
    assert err.group_contains(PermissionDenied)
    assert await _pending(fleet, other) == (1, 0)


async def test_forbidden_request_fails_at_once_not_after_the_timeout(legion_fleet: TestFleet) -> None:
    """request timeout is 60 s and the test's own limit 10 s: only an immediate refusal passes."""
    fleet = legion_fleet
    _agent_a, broker = await _agent(fleet)
    subject = subj.VAULT_LLM.render(agent=fleet.name("someone-else"))
    with pytest.raises(PermissionDenied) as err:
        await asyncio.wait_for(broker.request_raw(subject, b"{}", timeout=60), 10)
    assert err.value.subject == subject
    assert "permission denied: publish" in str(err.value)


async def test_request_without_responder_is_unavailable_at_once(legion_fleet: TestFleet) -> None:
    """Through the service import, "no responders" is reported by the server at once."""
    agent, broker = await _agent(legion_fleet)
    with pytest.raises(Unavailable, match="no responders"):
        await asyncio.wait_for(broker.request_raw(subj.VAULT_LLM.render(agent=agent.name), b"{}", timeout=60), 10)


async def test_prefetched_messages_are_kept_alive_not_handled_twice(legion_fleet: TestFleet) -> None:
    """ack_wait 1 s, 6 messages prefetched at once, one handler taking 0.4 s each: the queued ones
    must not be redelivered while they wait (each is handled exactly once)."""
    fleet = legion_fleet
    agent, broker = await _agent(fleet)
    durable = agent_inbox_durable(agent.name)
    config = (await fleet.admin.js.consumer_info(INBOX, durable)).config
    config.ack_wait = 1.0
    await fleet.admin.js.add_consumer(INBOX, config)
    await _send(fleet, agent, *(f"t{i}" for i in range(6)))
    handled: list[tuple[str, int]] = []
    done = asyncio.Event()
    work_s = 0.4

    async def handle(d: Delivery) -> None:
        assert isinstance(d.message, AssignTask)
        handled.append((d.message.task_id, d.deliveries))
        await asyncio.sleep(work_s)  # simulated slow work; six of them exceed ack_wait
        if len(handled) == 6:
            done.set()

    consumer = PullConsumer(broker, _spec(agent, in_progress_every_s=0.3), handle)
    await _run_until(consumer, done, timeout=20)
    assert sorted(handled) == [(f"t{i}", 1) for i in range(6)]
    assert await _pending(fleet, agent) == (0, 0)


async def test_a_restarted_consumer_gets_unhandled_messages_at_once(legion_fleet: TestFleet) -> None:
    """Stopping nak's what was prefetched but never started, so the next run gets it right away
    (not after ack_wait, here 60 s: only a prompt hand-back passes within the test's deadline)."""
    fleet = legion_fleet
    agent, broker = await _agent(fleet)
    durable = agent_inbox_durable(agent.name)
    config = (await fleet.admin.js.consumer_info(INBOX, durable)).config
    config.ack_wait = 60.0
    await fleet.admin.js.add_consumer(INBOX, config)
    await _send(fleet, agent, "a", "b", "c")
    started, release = asyncio.Event(), asyncio.Event()
    first_run: list[str] = []

    async def slow(d: Delivery) -> None:
        first_run.append(getattr(d.message, "task_id", "?"))
        started.set()
        await release.wait()

    consumer = PullConsumer(broker, _spec(agent), slow)
    async with asyncio.TaskGroup() as tg:
        task = tg.create_task(consumer.run())
        await asyncio.wait_for(started.wait(), 10)
        consumer.stop()
        release.set()
        await task
    assert first_run == ["a"], "queued messages were not started after stop"
    second_run: list[str] = []
    done = asyncio.Event()

    async def fast(d: Delivery) -> None:
        second_run.append(getattr(d.message, "task_id", "?"))
        if len(second_run) == 2:
            done.set()

    await _run_until(PullConsumer(broker, _spec(agent), fast), done, timeout=15)
    assert sorted(second_run) == ["b", "c"]
