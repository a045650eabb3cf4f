"""Crashes and refusals mid-task: a killed agent resumes from its record; budget and cancel end tasks clearly."""

from __future__ import annotations

import asyncio
from decimal import Decimal
from pathlib import Path

import pytest

from legion.contracts import Cancel, TaskCompleted, TaskFailed, decode
from legion.contracts import subjects as subj
from legion.testing import FakeLlmServer, Reply, TestFleet, ToolCall, read_stream
from legion.testing.fleet import agent_fleet

pytestmark = pytest.mark.nats


@pytest.mark.slow
async def test_kill_9_mid_task_resumes_without_repeating_model_calls_or_side_effects(
    legion_fleet: TestFleet, fake_llm: FakeLlmServer, tmp_path: Path
) -> None:
    fake_llm.script(
        Reply(tool_calls=[ToolCall(name="append_file", arguments={"path": "log.txt", "content": "once\n"})]),
        Reply(text="the agent is killed while this answer is on its way", latency=20),
        Reply(tool_calls=[ToolCall(name="finish_task", arguments={"summary": "resumed and finished"})]),
    )
    async with agent_fleet(legion_fleet, fake_llm, tmp_path, start=False, ack_wait_s=2) as rig:
        await rig.spawn()
        task_id = await rig.assign("Append to the log, then finish.")
        await fake_llm.wait_for_requests(2, timeout=30)  # step 1 is recorded; step 2 is in flight
        await rig.kill()
        await rig.spawn()  # the task is redelivered once its ack wait has passed

        done = await rig.probe.next(TaskCompleted, lambda e: e.task_id == task_id, timeout=60)
        assert done.summary == "resumed and finished"
        assert (rig.workspace() / "log.txt").read_text() == "once\n"  # the side effect ran once
        assert len(fake_llm.requests) == 3  # the finished first step was not asked again
        resumed = fake_llm.requests[2].body["messages"]
        assert resumed[-1]["role"] == "tool" and "log.txt" in resumed[-1]["content"]
        stored = await read_stream(
            legion_fleet.admin, "EVENTS", subj.EVENTS.render(source=rig.agent.name, type="task.completed")
        )
        assert [decode(m.data, m.headers).task_id for m in stored] == [task_id]  # type: ignore[union-attr]


async def test_budget_exhaustion_mid_task_ends_it_with_a_clear_reason(
    legion_fleet: TestFleet, fake_llm: FakeLlmServer, tmp_path: Path
) -> None:
    fake_llm.script(
        Reply(
            tool_calls=[ToolCall(name="write_file", arguments={"path": "a.txt", "content": "a"})],
            prompt_tokens=150,
            completion_tokens=5000,  # 0.01015 USD: more than the whole budget
        ),
    )
    fake_llm.always(Reply(text="must not be reached"))
    budget = Decimal("0.01")  # the first reservation (prompt with tool schemas + 100 tokens) fits, no second
    async with agent_fleet(
        legion_fleet, fake_llm, tmp_path, budget_usd=budget, agent_config={"max_tokens": 100}
    ) as rig:
        task_id = await rig.assign("Write a then b.")
        failed = await rig.probe.next(TaskFailed, lambda e: e.task_id == task_id)
        assert failed.reason.startswith("budget:")
        assert not failed.retryable
        assert len(fake_llm.requests) == 1
        assert (rig.workspace() / "a.txt").read_text() == "a"


async def test_cancel_stops_a_running_task_with_a_cancelled_failure(
    legion_fleet: TestFleet, fake_llm: FakeLlmServer, tmp_path: Path
) -> None:
    fake_llm.script(Reply(text="too late", latency=30))
    async with agent_fleet(legion_fleet, fake_llm, tmp_path) as rig:
        task_id = await rig.assign("Think for a long time.")
        await fake_llm.wait_for_requests(1, timeout=20)
        started = asyncio.get_running_loop().time()
        await rig.send(Cancel(task_id=task_id, reason="changed my mind"))
        failed = await rig.probe.next(TaskFailed, lambda e: e.task_id == task_id, timeout=20)
        assert failed.reason == "cancelled: changed my mind"
        assert asyncio.get_running_loop().time() - started < 20  # not after the model's 30 s answer
        assert not rig.probe.of(TaskCompleted, lambda e: e.task_id == task_id)


async def test_a_task_cancelled_before_it_starts_fails_when_it_arrives(
    legion_fleet: TestFleet, fake_llm: FakeLlmServer, tmp_path: Path
) -> None:
    fake_llm.script(Reply(text="first done", latency=1))
    fake_llm.always(Reply(text="must not run"))
    async with agent_fleet(legion_fleet, fake_llm, tmp_path) as rig:
        first = await rig.assign("First task.")
        await fake_llm.wait_for_requests(1, timeout=20)  # the agent works on `first`
        second = await rig.assign("Second task.")
        await rig.send(Cancel(task_id=second, reason="not needed"))
        await rig.probe.next(TaskCompleted, lambda e: e.task_id == first)
        failed = await rig.probe.next(TaskFailed, lambda e: e.task_id == second)
        assert failed.reason == "cancelled: not needed"
        assert len(fake_llm.requests) == 1
