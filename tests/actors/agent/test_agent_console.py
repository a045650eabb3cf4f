"""``legion task`` and ``legion chat`` logic against a real agent (the CLI wraps these)."""

from __future__ import annotations

from pathlib import Path

import pytest

from legion.cli.console.agents import TaskSpec, open_chat, run_task
from legion.contracts.agent_events import SessionStep
from legion.contracts.errors import ConfigError
from legion.testing import FakeLlmServer, Reply, TestFleet, ToolCall
from legion.testing.fleet import agent_fleet

pytestmark = pytest.mark.nats


async def test_run_task_waits_for_the_outcome_and_reports_each_step(
    legion_fleet: TestFleet, fake_llm: FakeLlmServer, tmp_path: Path
) -> None:
    fake_llm.script(
        Reply(tool_calls=[ToolCall(name="write_file", arguments={"path": "out.txt", "content": "x"})]),
        Reply(text='{"written": "out.txt"}'),
    )
    async with agent_fleet(legion_fleet, fake_llm, tmp_path) as rig:
        steps: list[SessionStep] = []
        spec = TaskSpec(fleet_dir=rig.dir, agent=rig.agent.name, text="write out.txt", wait=True, timeout_s=60)
        result = await run_task(spec, steps.append)
        assert result.status == "completed" and result.output == {"written": "out.txt"}
        assert [s.kind for s in steps if s.kind in ("llm", "tool")] == ["llm", "tool", "llm"]


async def test_run_task_names_the_agents_when_the_agent_is_unknown(
    legion_fleet: TestFleet, fake_llm: FakeLlmServer, tmp_path: Path
) -> None:
    async with agent_fleet(legion_fleet, fake_llm, tmp_path, start=False) as rig:
        with pytest.raises(ConfigError, match=rf"no agent 'nobody'.*agents: {rig.agent.name}"):
            await run_task(TaskSpec(fleet_dir=rig.dir, agent="nobody", text="x"))


async def test_chat_client_streams_a_turn(legion_fleet: TestFleet, fake_llm: FakeLlmServer, tmp_path: Path) -> None:
    fake_llm.script(Reply(text="streamed answer"))
    async with agent_fleet(legion_fleet, fake_llm, tmp_path) as rig, open_chat(rig.dir, rig.agent.name) as chat:
        deltas: list[str] = []
        reply = await chat.send("hello", deltas.append, timeout_s=60)
        assert reply.text == "streamed answer" and "".join(deltas) == "streamed answer"
