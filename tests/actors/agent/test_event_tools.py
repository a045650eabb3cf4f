"""publish_event, notify_user, get_system_status and the cron tools, as a real agent on a real server.

The fake scheduler is a LEGION-account admin subscription on ``legion.scheduler.<agent>.<op>``: the
agent reaches it only through the AGENTS account's service import of ``legion.scheduler.>``.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from nats.aio.msg import Msg

from legion.actors.agent.tools.base import ToolSet
from legion.actors.agent.tools.events import event_tools
from legion.actors.agent.tools.system import system_tools
from legion.broker import EVENTS, Broker
from legion.contracts import AgentEvent, CronList, CronRemove, CronReply, CronSet, UserNotified, decode, encode
from legion.contracts import headers as h
from legion.contracts import subjects as subj
from legion.testing import AgentHandle, TestFleet, read_stream
from tests.actors.agent.tool_kit import ctx, err, ok

pytestmark = [pytest.mark.nats]


async def _agent(
    fleet: TestFleet, base: str = "alpha", *, budget: Any = None, projects: tuple[str, ...] = ()
) -> tuple[AgentHandle, Broker, ToolSet]:
    handle = await fleet.add_agent(base, projects=projects)
    broker = await fleet.connect(handle.creds, name=base)
    tools = ToolSet()
    for tool in [
        *event_tools(broker, handle.name),
        *system_tools(
            broker, handle.name, projects=list(projects), tool_names=lambda: sorted(tools.tools), budget=budget
        ),
    ]:
        tools.add(tool)
    return handle, broker, tools


async def test_publish_event_lands_in_events_under_the_agents_own_source(legion_fleet: TestFleet) -> None:
    alpha, _b, tools = await _agent(legion_fleet)
    result = ok(await tools.call("publish_event", {"type": "report.ready", "data": {"pages": 3}}, ctx(alpha.name)))
    subject = subj.EVENTS.render(source=alpha.name, type="report.ready")
    assert result["subject"] == subject
    stored = await read_stream(legion_fleet.admin, EVENTS, subject)
    assert [m.metadata.sequence.stream for m in stored] == [result["stream_seq"]]
    event = decode(stored[0].data, stored[0].headers, strict=True)
    assert event == AgentEvent(agent=alpha.name, event_type="report.ready", data={"pages": 3})


async def test_the_same_call_key_twice_stores_one_event(legion_fleet: TestFleet) -> None:
    alpha, _b, tools = await _agent(legion_fleet)
    same = ctx(alpha.name)
    one = ok(await tools.call("publish_event", {"type": "build.done", "data": {}}, same))
    two = ok(await tools.call("publish_event", {"type": "build.done", "data": {}}, same))
    assert (two["stream_seq"], two["duplicate"]) == (one["stream_seq"], True)
    stored = await read_stream(legion_fleet.admin, EVENTS, subj.EVENTS.render(source=alpha.name, type="build.done"))
    assert len(stored) == 1
    assert stored[0].headers is not None and stored[0].headers[h.MSG_ID] == same.call_key


@pytest.mark.parametrize("bad", ["Report", "a..b", "a.*", "a.>", "", "a b", "task.completed", "user.notify"])
async def test_invalid_or_reserved_event_types_are_refused(legion_fleet: TestFleet, bad: str) -> None:
    alpha, _b, tools = await _agent(legion_fleet)
    err(await tools.call("publish_event", {"type": bad, "data": {}}, ctx(alpha.name)), "invalid_args")


async def test_notify_user_emits_user_notified(legion_fleet: TestFleet) -> None:
    alpha, _b, tools = await _agent(legion_fleet)
    call = ctx(alpha.name)
    result = ok(await tools.call("notify_user", {"text": "deploy finished", "level": "warning"}, call))
    stored = await read_stream(legion_fleet.admin, EVENTS, subj.EVENTS.render(source=alpha.name, type="user.notify"))
    assert [m.metadata.sequence.stream for m in stored] == [result["stream_seq"]]
    assert stored[0].headers is not None and stored[0].headers[h.MSG_ID] == call.call_key
    notified = decode(stored[0].data, stored[0].headers, strict=True)
    assert notified == UserNotified(agent=alpha.name, text="deploy finished", level="warning", session="s1")
    err(await tools.call("notify_user", {"text": "x", "level": "loud"}, ctx(alpha.name)), "invalid_args")


async def test_system_status_reports_identity_tools_budget_and_permissions(legion_fleet: TestFleet) -> None:
    p = legion_fleet.name("p")

    async def budget() -> dict[str, Any]:
        return {"day_usd": "1.50", "spent_usd": "0.25"}

    alpha, _b, tools = await _agent(legion_fleet, budget=budget, projects=(p,))
    status = ok(await tools.call("get_system_status", {}, ctx(alpha.name)))
    assert status["agent"] == alpha.name and status["projects"] == [p]
    assert {"publish_event", "notify_user", "set_cron", "get_system_status"} <= set(status["tools"])
    assert status["budget"] == {"day_usd": "1.50", "spent_usd": "0.25"}
    assert status["may_message"] == []
    assert status["permissions"] == {
        "publish": [f"legion.events.{alpha.name}.>"],
        "blackboards": [f"bb_{p}"],
        "receives_events": [],
    }
    beta, _bb, no_budget = await _agent(legion_fleet, "beta")
    assert ok(await no_budget.call("get_system_status", {}, ctx(beta.name)))["budget"] == "unknown"


class FakeScheduler:
    """Answers set/list/remove for one agent from a LEGION-account subscription, keeping jobs in a dict."""

    def __init__(self, admin: Broker, agent: str) -> None:
        self.admin = admin
        self.agent = agent
        self.jobs: dict[str, dict[str, Any]] = {}
        self.requests: list[tuple[str, object, dict[str, str]]] = []

    async def start(self) -> None:
        await self.admin.subscribe(subj.SCHEDULER.wildcard(agent=self.agent), self._on_request)

    async def _on_request(self, msg: Msg) -> None:
        op = msg.subject.rsplit(".", 1)[-1]
        req = decode(msg.data, msg.headers, strict=True)
        self.requests.append((op, req, dict(msg.headers or {})))
        if isinstance(req, CronSet):
            if not req.schedule.startswith("every "):
                reply = CronReply(
                    ok=False, message=f"cannot parse schedule {req.schedule!r}", request_id=req.request_id
                )
                await self._reply(msg, reply)
                return
            self.jobs[req.name] = {"name": req.name, "schedule": req.schedule, "text": req.text}
        elif isinstance(req, CronRemove):
            self.jobs.pop(req.name, None)
        assert isinstance(req, CronSet | CronList | CronRemove)
        await self._reply(msg, CronReply(ok=True, jobs=list(self.jobs.values()), request_id=req.request_id))

    async def _reply(self, msg: Msg, reply: CronReply) -> None:
        data, hdrs = encode(reply)
        await self.admin.nc.publish(msg.reply, data, headers=hdrs)


async def test_cron_tools_talk_to_the_scheduler_through_the_service_import(legion_fleet: TestFleet) -> None:
    alpha, _b, tools = await _agent(legion_fleet)
    scheduler = FakeScheduler(legion_fleet.admin, alpha.name)
    await scheduler.start()
    call = ctx(alpha.name)
    job = {"name": "digest", "schedule": "every 10m", "text": "summarise the inbox"}
    assert ok(await tools.call("set_cron", job, call))["jobs"] == [job]
    assert ok(await tools.call("list_cron", {}, ctx(alpha.name)))["jobs"] == [job]
    assert ok(await tools.call("remove_cron", {"name": "digest"}, ctx(alpha.name)))["jobs"] == []
    assert [op for op, _, _ in scheduler.requests] == ["set", "list", "remove"]
    first = scheduler.requests[0][1]
    assert isinstance(first, CronSet) and first.agent == alpha.name and first.request_id == call.call_key
    # the server stamps who called (share: true on the import), whatever the agent sent
    info = json.loads(scheduler.requests[0][2][h.REQUEST_INFO])
    assert info["acc"] == legion_fleet.server.auth.keys.agents.public_key
    bad = {"name": "x", "schedule": "at some point", "text": "t"}
    assert "cannot parse" in err(await tools.call("set_cron", bad, ctx(alpha.name)), "failed")
    err(await tools.call("set_cron", {**bad, "name": "Bad Name"}, ctx(alpha.name)), "invalid_args")


async def test_cron_tools_without_a_scheduler_are_unavailable(legion_fleet: TestFleet) -> None:
    alpha, _b, tools = await _agent(legion_fleet)
    async with asyncio.timeout(15):
        message = err(await tools.call("list_cron", {}, ctx(alpha.name)), "unavailable")
    assert "scheduler is not running" in message
