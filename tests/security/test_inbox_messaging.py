"""Agent-to-agent messaging through LEGION's inbox export: with an agent's own credential, only the
inboxes of its ``can_message`` agents are reachable, and what it sends cannot claim another sender
or purge the receiver's queue (docs/security.md, "Agents messaging agents")."""

from __future__ import annotations

import pytest

from legion.broker import INBOX, JSApiError, agent_inbox_durable
from legion.contracts import AssignTask, ConcurrencyConflict, PermissionDenied
from legion.contracts import headers as h
from legion.contracts import subjects as subj
from legion.testing import TestFleet

pytestmark = [pytest.mark.nats, pytest.mark.security]


def _task(task_id: str = "t1") -> AssignTask:
    return AssignTask(task_id=task_id, text="do it", requested_by="someone-else")


async def test_an_agent_without_can_message_cannot_publish_any_inbox(legion_fleet: TestFleet) -> None:
    b = await legion_fleet.add_agent("b")
    lone = await legion_fleet.add_agent("lone")
    broker = await legion_fleet.connect(lone.creds, name=lone.name)
    for target in (b.name, lone.name, legion_fleet.name("nobody")):
        with pytest.raises(PermissionDenied):
            await broker.js_publish(subj.AGENT_INBOX.render(agent=target), _task())
    assert (await legion_fleet.admin.js.consumer_info(INBOX, agent_inbox_durable(b.name))).num_pending == 0


async def test_can_message_opens_exactly_the_listed_inboxes(legion_fleet: TestFleet) -> None:
    b = await legion_fleet.add_agent("b")
    c = await legion_fleet.add_agent("c")
    a = await legion_fleet.add_agent("a", can_message=(b.name,))
    broker = await legion_fleet.connect(a.creds, name=a.name)

    ack = await broker.js_publish(subj.AGENT_INBOX.render(agent=b.name), _task())
    assert ack.stream == INBOX
    for target in (c.name, a.name):  # another agent, and its own inbox (only the launcher/console write it)
        with pytest.raises(PermissionDenied):
            await broker.js_publish(subj.AGENT_INBOX.render(agent=target), _task())


async def test_a_sender_cannot_store_a_forged_request_info_header(legion_fleet: TestFleet) -> None:
    """The server overwrites a client's Nats-Request-Info at the import and JetStream does not store it:
    the receiver finds no sender stamp, forged or real (so ``requested_by`` stays a claim)."""
    b = await legion_fleet.add_agent("b")
    a = await legion_fleet.add_agent("a", can_message=(b.name,))
    broker = await legion_fleet.connect(a.creds, name=a.name)
    forged = '{"acc":"' + legion_fleet.server.auth.keys.legion.public_key + '","name_tag":"launcher"}'
    await broker.js_publish(subj.AGENT_INBOX.render(agent=b.name), _task(), headers={h.REQUEST_INFO: forged})

    sub = await legion_fleet.admin.js.pull_subscribe_bind(agent_inbox_durable(b.name), stream=INBOX)
    (msg,) = await sub.fetch(1, timeout=5)
    assert h.REQUEST_INFO not in (msg.headers or {})
    assert (msg.headers or {})[h.TYPE] == "task.assign.v1"


async def test_a_sender_cannot_purge_or_expire_the_receivers_inbox(legion_fleet: TestFleet) -> None:
    b = await legion_fleet.add_agent("b")
    a = await legion_fleet.add_agent("a", can_message=(b.name,))
    inbox = subj.AGENT_INBOX.render(agent=b.name)
    await legion_fleet.admin.js_publish(inbox, _task("queued"))
    broker = await legion_fleet.connect(a.creds, name=a.name)

    for headers in ({h.ROLLUP: "sub"}, {h.ROLLUP: "all"}, {"Nats-TTL": "1s"}):
        with pytest.raises(JSApiError):
            await broker.js_publish(inbox, _task("evil"), headers=headers)
    with pytest.raises(ConcurrencyConflict):  # expected-sequence headers only make its own publish fail
        await broker.js_publish(inbox, _task("evil"), headers={"Nats-Expected-Last-Subject-Sequence": "999"})

    assert (await legion_fleet.admin.js.consumer_info(INBOX, agent_inbox_durable(b.name))).num_pending == 1
    sub = await legion_fleet.admin.js.pull_subscribe_bind(agent_inbox_durable(b.name), stream=INBOX)
    msgs = await sub.fetch(1, timeout=5)
    assert b'"queued"' in msgs[0].data  # only the queued task is there
