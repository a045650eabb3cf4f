"""Agents hand tasks to the agents they may message (legion.yaml ``can_message``), and the server,
not the tool, decides who may message whom."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import msgspec
import pytest

from legion.actors.agent.tools.agents import agent_tools, task_id_of
from legion.actors.agent.tools.base import ToolContext, ToolSet
from legion.broker import INBOX, agent_inbox_durable
from legion.contracts import AssignTask, PermissionDenied, TaskCompleted
from legion.contracts import subjects as subj
from legion.contracts.agent_events import SessionStep
from legion.testing import FakeLlmServer, Reply, TestFleet, ToolCall
from legion.testing.fleet import agent_fleet

pytestmark = pytest.mark.nats


def _tool_names(body: dict[str, Any]) -> set[str]:
    return {t["function"]["name"] for t in body.get("tools", [])}


def _ctx(agent: str, tmp_path: Path, call_key: str) -> ToolContext:
    return ToolContext(agent=agent, session="task.t1", call_key=call_key, workspace=tmp_path)


async def test_an_agent_hands_a_task_to_an_agent_it_may_message_which_completes_it(
    legion_fleet: TestFleet, fake_llm: FakeLlmServer, tmp_path: Path
) -> None:
    b_name, c_name = legion_fleet.name("b"), legion_fleet.name("c")
    fake_llm.script(
        Reply(
            tool_calls=[
                ToolCall(name="send_task", arguments={"agent": b_name, "text": "Write the report."}, id="to_b"),
                ToolCall(name="send_task", arguments={"agent": c_name, "text": "Write it too."}, id="to_c"),
            ]
        ),
        Reply(text="delegated"),
        model="agent-0",
    )
    fake_llm.script(Reply(text='{"report": "ready"}'), model="agent-1")
    async with agent_fleet(
        legion_fleet, fake_llm, tmp_path, agents=("a", "b", "c"), own_models=True, can_message={"a": ["b"]}
    ) as rig:
        a, b, _c = rig.agents
        task_id = await rig.assign("Get the report written by b.", agent=a)
        await rig.probe.next(TaskCompleted, lambda e: e.task_id == task_id and e.agent == a.name)

        results = {
            s.data["call_id"]: s.data
            for s in rig.probe.of(SessionStep, lambda s: s.agent == a.name and s.kind == "tool")
        }
        sent = json.loads(results["to_b"]["result"])
        assert results["to_b"]["ok"] and sent["sent_to"] == b.name
        denied = json.loads(results["to_c"]["result"])
        assert not results["to_c"]["ok"] and denied["error"] == "denied" and b.name in denied["message"]

        done = await rig.probe.next(TaskCompleted, lambda e: e.task_id == sent["task_id"])
        assert done.agent == b.name and done.output == {"report": "ready"}
        b_request = next(r.body for r in fake_llm.requests if r.model == "agent-1")
        assert "Write the report." in json.dumps(b_request["messages"])
        assert "send_task" in _tool_names(fake_llm.requests[0].body)
        assert "send_task" not in _tool_names(b_request)  # b may message nobody: no "agents" tools
        assert not [r for r in fake_llm.requests if r.model == "agent-2"]  # c never got work


async def test_a_repeated_send_task_call_is_stored_once(legion_fleet: TestFleet, tmp_path: Path) -> None:
    b = await legion_fleet.add_agent("b")
    a = await legion_fleet.add_agent("a", can_message=(b.name,))
    tools = ToolSet.of(agent_tools(await legion_fleet.connect(a.creds, name=a.name), a.name, [b.name]))
    key = f"{a.name}:task.t1:1:0"
    args = {"agent": b.name, "text": "Summarise the logs."}

    first = await tools.call("send_task", args, _ctx(a.name, tmp_path, key))
    again = await tools.call("send_task", args, _ctx(a.name, tmp_path, key))

    assert first.ok and again.ok
    assert json.loads(first.content) == {"task_id": task_id_of(key), "sent_to": b.name, "duplicate": False}
    assert json.loads(again.content) == {"task_id": task_id_of(key), "sent_to": b.name, "duplicate": True}
    assert (await legion_fleet.admin.js.consumer_info(INBOX, agent_inbox_durable(b.name))).num_pending == 1
    sub = await legion_fleet.admin.js.pull_subscribe_bind(agent_inbox_durable(b.name), stream=INBOX)
    msgs = await sub.fetch(1, timeout=5)
    task = msgspec.json.decode(msgs[0].data, type=AssignTask)
    assert task.task_id == task_id_of(key) and task.requested_by == a.name and task.text == "Summarise the logs."
    assert task_id_of(f"{a.name}:task.t1:1:1") != task.task_id  # another call is another task


async def test_sending_to_an_agent_not_in_can_message_is_denied_by_the_tool_and_the_server(
    legion_fleet: TestFleet, tmp_path: Path
) -> None:
    b = await legion_fleet.add_agent("b")
    c = await legion_fleet.add_agent("c")
    a = await legion_fleet.add_agent("a", can_message=(b.name,))
    broker = await legion_fleet.connect(a.creds, name=a.name)
    args = {"agent": c.name, "text": "Do it."}

    refused = await ToolSet.of(agent_tools(broker, a.name, [b.name])).call(
        "send_task", args, _ctx(a.name, tmp_path, "k1")
    )
    assert refused.error_code == "denied" and b.name in json.loads(refused.content)["message"]
    # a tool that believed it may message c: the server refuses the credential all the same
    lying = ToolSet.of(agent_tools(broker, a.name, [b.name, c.name]))
    by_server = await lying.call("send_task", args, _ctx(a.name, tmp_path, "k2"))
    assert by_server.error_code == "denied" and "server refused" in json.loads(by_server.content)["message"]
    # and with the raw credential
    with pytest.raises(PermissionDenied):
        await broker.js_publish(subj.AGENT_INBOX.render(agent=c.name), AssignTask(task_id="x", text="Do it."))
    assert (await legion_fleet.admin.js.consumer_info(INBOX, agent_inbox_durable(c.name))).num_pending == 0


async def test_system_status_names_the_agents_it_may_message(
    legion_fleet: TestFleet, fake_llm: FakeLlmServer, tmp_path: Path
) -> None:
    fake_llm.script(Reply(tool_calls=[ToolCall(name="get_system_status", arguments={})]), Reply(text="done"))
    async with agent_fleet(legion_fleet, fake_llm, tmp_path, agents=("a", "b"), can_message={"a": ["b"]}) as rig:
        task_id = await rig.assign("Who can you talk to?", agent=rig.agents[0])
        await rig.probe.next(TaskCompleted, lambda e: e.task_id == task_id)
        status = json.loads(fake_llm.requests[1].body["messages"][-1]["content"])
        assert status["may_message"] == [rig.agents[1].name]
