"""With an agent's own credentials, forbidden operations are refused and the refusal is observed,
while the same agent's legitimate operations in the same test succeed (DESIGN.md section 3)."""

from __future__ import annotations

import asyncio
import json

import msgspec
import pytest

from legion.broker import INBOX, Broker, agent_inbox_durable, bucket_name
from legion.contracts import AssignTask, PermissionDenied, TaskStarted
from legion.contracts import subjects as subj
from legion.testing import AgentHandle, TestFleet

pytestmark = [pytest.mark.nats, pytest.mark.security]


async def _two_agents(fleet: TestFleet) -> tuple[AgentHandle, Broker, AgentHandle]:
    alpha = await fleet.add_agent("alpha", projects=(fleet.name("p1"),))
    beta = await fleet.add_agent("beta", projects=(fleet.name("p2"),))
    return alpha, await fleet.connect(alpha.creds, name="alpha"), beta


async def _put_admin(fleet: TestFleet, project: str, key: str, value: bytes) -> int:
    kv = await fleet.admin.js.key_value(bucket_name(project))
    return await kv.put(key, value)


async def _assert_receives_nothing(broker: Broker, subject: str) -> None:
    """A subscription the server refused delivers nothing, even when traffic flows on it."""
    got: list[bytes] = []

    async def cb(msg: object) -> None:
        got.append(getattr(msg, "data", b""))

    with pytest.raises(PermissionDenied) as err:
        await broker.subscribe(subject, cb)
    assert err.value.subject == subject
    assert got == []


# -- legitimate operations (the baseline that proves the refusals are about permissions) ------------


async def test_agent_can_do_its_own_work(legion_fleet: TestFleet) -> None:
    fleet = legion_fleet
    alpha, a, _beta = await _two_agents(fleet)
    p1 = alpha.projects[0]
    # its own events
    ack = await a.js_publish(
        subj.EVENTS.render(source=alpha.name, type="task.started"), TaskStarted(task_id="t", agent=alpha.name)
    )
    assert ack.stream == "EVENTS"
    # its own blackboard: put, get (direct), history via direct gets by sequence (agents create no
    # consumers, so nats-py's kv.history/watch/keys are not available to them: test_agent_consumers.py)
    b1 = bucket_name(p1)
    kv = await a.js.key_value(b1)
    rev = await kv.put("task.1", b"open")
    assert (await kv.get("task.1")).value == b"open"
    claimed = await kv.update("task.1", b"claimed", last=rev)
    assert claimed > rev
    history = []
    for seq in (1, rev + 1):
        body = json.dumps({"seq": seq, "next_by_subj": f"$KV.{b1}.task.1"}).encode()
        history.append((await a.request_raw(f"JSL.API.DIRECT.GET.KV_{b1}", body)).data)
    assert history == [b"open", b"claimed"]
    # its own inbox: a task put there by the admin is fetched and acked
    await fleet.admin.js_publish(subj.AGENT_INBOX.render(agent=alpha.name), AssignTask(task_id="t1", text="hi"))
    sub = await a.js.pull_subscribe_bind(agent_inbox_durable(alpha.name), stream=INBOX)
    msgs = await sub.fetch(1, timeout=5)
    assert json.loads(msgs[0].data)["task_id"] == "t1"
    await msgs[0].ack_sync()


# -- publish / subscribe on others' subjects -------------------------------------------------------


@pytest.mark.parametrize(
    "subject_of",
    [
        lambda b: subj.AGENT_INBOX.render(agent=b),
        lambda b: subj.VAULT_LLM.render(agent=b),
        lambda b: subj.STREAM.render(agent=b, session="s1"),
        lambda b: subj.CONTROL.render(actor=b, command="stop"),
        lambda b: subj.LEDGER.render(agent=b, op="commit"),
        lambda b: f"_INBOX.{b}.x",
    ],
    ids=["inbox", "vault", "token-stream", "control", "ledger", "their-inbox-prefix"],
)
async def test_publish_to_another_agents_subjects_is_refused(legion_fleet: TestFleet, subject_of: object) -> None:
    alpha, a, beta = await _two_agents(legion_fleet)
    subject = subject_of(beta.name)  # type: ignore[operator]
    with pytest.raises(PermissionDenied) as err:
        await a.publish(subject, b"{}", confirm=True)
    assert err.value.subject == subject
    # and the same connection still does legitimate work
    await a.js_publish(subj.EVENTS.render(source=alpha.name, type="ping"), b"{}")


@pytest.mark.parametrize(
    "subject_of",
    [
        lambda b: ">",
        lambda b: "$SYS.>",
        lambda b: "_INBOX.>",
        lambda b: f"_INBOX.{b}.>",
        lambda b: subj.EVENTS.wildcard(source=b),
        lambda b: subj.AGENT_INBOX.render(agent=b),
        lambda b: subj.STREAM.wildcard(agent=b),
        lambda b: "legion.>",
        lambda b: "$JS.API.>",
        lambda b: "_R_.>",
    ],
    ids=[
        "all",
        "sys",
        "all-inboxes",
        "their-inbox-prefix",
        "their-events",
        "their-inbox",
        "their-tokens",
        "legion",
        "js-api",
        "service-replies",
    ],
)
async def test_subscribe_outside_own_inbox_is_refused(legion_fleet: TestFleet, subject_of: object) -> None:
    _alpha, a, beta = await _two_agents(legion_fleet)
    await _assert_receives_nothing(a, subject_of(beta.name))  # type: ignore[operator]


async def test_refused_subscription_receives_nothing_while_traffic_flows(legion_fleet: TestFleet) -> None:
    """Beta publishes its own events while alpha tries to listen; alpha gets nothing."""
    fleet = legion_fleet
    _alpha, a, beta = await _two_agents(fleet)
    b = await fleet.connect(beta.creds, name="beta")
    got: list[bytes] = []

    async def cb(msg: object) -> None:
        got.append(getattr(msg, "data", b""))

    with pytest.raises(PermissionDenied):
        await a.subscribe(subj.EVENTS.wildcard(source=beta.name), cb)
    seen_by_admin: asyncio.Queue[bytes] = asyncio.Queue()

    async def admin_cb(msg: object) -> None:
        seen_by_admin.put_nowait(getattr(msg, "data", b""))

    await fleet.admin.subscribe(subj.EVENTS.wildcard(source=beta.name), admin_cb)
    await b.js_publish(subj.EVENTS.render(source=beta.name, type="secret"), b'{"s":1}')
    assert await asyncio.wait_for(seen_by_admin.get(), 5) == b'{"s":1}'
    await a.nc.flush()
    assert got == []


# -- forging, JetStream admin operations ----------------------------------------------------------------


async def test_forging_another_agents_events_is_refused_and_stores_nothing(legion_fleet: TestFleet) -> None:
    fleet = legion_fleet
    _alpha, a, beta = await _two_agents(fleet)
    subject = subj.EVENTS.render(source=beta.name, type="task.completed")
    before = (await fleet.admin.js.stream_info("EVENTS")).state.last_seq
    with pytest.raises(PermissionDenied) as err:
        await a.js_publish(subject, b"{}")
    assert err.value.subject == subject
    with pytest.raises(PermissionDenied):
        await a.js_publish(subj.EXT.render(source=beta.name, type="x"), b"{}")
    after = (await fleet.admin.js.stream_info("EVENTS", subjects_filter=subject)).state
    assert after.subjects is None or subject not in after.subjects
    assert after.last_seq >= before


@pytest.mark.parametrize(
    ("api", "body"),
    [
        (f"CONSUMER.CREATE.{INBOX}", {"stream_name": INBOX, "config": {"ack_policy": "explicit"}}),
        (f"CONSUMER.DURABLE.CREATE.{INBOX}.sneaky", {"stream_name": INBOX, "config": {"durable_name": "sneaky"}}),
        ("STREAM.CREATE.MINE", {"name": "MINE", "subjects": ["mine.>"]}),
        ("STREAM.DELETE.EVENTS", None),
        ("STREAM.PURGE.EVENTS", None),
        ("STREAM.LIST", None),
        ("STREAM.NAMES", None),
        ("CONSUMER.LIST.INBOX", None),
        ("STREAM.MSG.GET.EVENTS", {"seq": 1}),
        ("DIRECT.GET.EVENTS", {"seq": 1}),
        ("STREAM.INFO.EVENTS", None),
        ("INFO", None),
    ],
    ids=lambda v: v if isinstance(v, str) else "",
)
async def test_jetstream_admin_api_is_refused(legion_fleet: TestFleet, api: str, body: object) -> None:
    _alpha, a, _beta = await _two_agents(legion_fleet)
    payload = msgspec.json.encode(body) if body is not None else b""
    for prefix in ("JSL.API", "$JS.API"):
        with pytest.raises(PermissionDenied):
            await a.request_raw(f"{prefix}.{api}", payload, timeout=5)
    assert "EVENTS" in (await legion_fleet.admin.js.stream_info("EVENTS")).config.name


async def test_deleting_own_inbox_consumer_is_refused(legion_fleet: TestFleet) -> None:
    fleet = legion_fleet
    alpha, a, _beta = await _two_agents(fleet)
    durable = agent_inbox_durable(alpha.name)
    with pytest.raises(PermissionDenied):
        await a.request_raw(f"JSL.API.CONSUMER.DELETE.{INBOX}.{durable}", b"", timeout=5)
    info = await fleet.admin.js.consumer_info(INBOX, durable)
    assert info.config.filter_subject == subj.AGENT_INBOX.render(agent=alpha.name)


async def test_widening_own_inbox_filter_is_refused(legion_fleet: TestFleet) -> None:
    """Re-creating the inbox durable with a wider filter would read every agent's work."""
    fleet = legion_fleet
    alpha, a, _beta = await _two_agents(fleet)
    durable = agent_inbox_durable(alpha.name)
    body = {
        "stream_name": INBOX,
        "config": {"durable_name": durable, "filter_subject": subj.INBOX_ALL, "ack_policy": "explicit"},
    }
    for api in (f"CONSUMER.CREATE.{INBOX}.{durable}", f"CONSUMER.CREATE.{INBOX}.{durable}.{subj.INBOX_ALL}"):
        with pytest.raises(PermissionDenied):
            await a.request_raw(f"JSL.API.{api}", msgspec.json.encode(body), timeout=5)
    info = await fleet.admin.js.consumer_info(INBOX, durable)
    assert info.config.filter_subject == subj.AGENT_INBOX.render(agent=alpha.name)


async def test_reading_another_agents_inbox_consumer_is_refused(legion_fleet: TestFleet) -> None:
    fleet = legion_fleet
    _alpha, a, beta = await _two_agents(fleet)
    await fleet.admin.js_publish(
        subj.AGENT_INBOX.render(agent=beta.name), AssignTask(task_id="secret", text="beta only")
    )
    durable = agent_inbox_durable(beta.name)
    with pytest.raises(PermissionDenied):
        await a.request_raw(f"JSL.API.CONSUMER.MSG.NEXT.{INBOX}.{durable}", b'{"batch":1,"no_wait":true}', timeout=5)
    info = await fleet.admin.js.consumer_info(INBOX, durable)
    assert info.num_pending == 1 and info.delivered.consumer_seq == 0


# -- another project's blackboard -------------------------------------------------------------------


async def test_another_projects_blackboard_is_unreadable(legion_fleet: TestFleet) -> None:
    fleet = legion_fleet
    _alpha, a, beta = await _two_agents(fleet)
    p2 = beta.projects[0]
    await _put_admin(fleet, p2, "plan", b"top secret")
    stream = f"KV_{bucket_name(p2)}"
    attempts = [
        (f"JSL.API.DIRECT.GET.{stream}.$KV.{bucket_name(p2)}.plan", b""),
        (f"JSL.API.DIRECT.GET.{stream}", b'{"last_by_subj":"$KV.' + bucket_name(p2).encode() + b'.plan"}'),
        (f"JSL.API.STREAM.INFO.{stream}", b""),
        (
            f"JSL.API.CONSUMER.CREATE.{stream}",
            b'{"stream_name":"' + stream.encode() + b'","config":{"ack_policy":"none","deliver_subject":"_INBOX.x"}}',
        ),
        (f"JSL.API.STREAM.MSG.GET.{stream}", b'{"seq":1}'),
    ]
    for subject, body in attempts:
        with pytest.raises(PermissionDenied):
            await a.request_raw(subject, body, timeout=5)


async def test_another_projects_keys_cannot_be_written_or_deleted(legion_fleet: TestFleet) -> None:
    fleet = legion_fleet
    _alpha, a, beta = await _two_agents(fleet)
    p2 = beta.projects[0]
    rev = await _put_admin(fleet, p2, "plan", b"v1")
    b2 = bucket_name(p2)
    for headers in (
        {},
        {"KV-Operation": "DEL"},
        {"KV-Operation": "PURGE", "Nats-Rollup": "sub"},
        {"Nats-Rollup": "all"},
    ):
        with pytest.raises(PermissionDenied):
            await a.request_raw(f"$KV.{b2}.plan", b"overwritten", headers=headers, timeout=5)
    kv = await fleet.admin.js.key_value(b2)
    entry = await kv.get("plan")
    assert (entry.value, entry.revision) == (b"v1", rev)


# -- reply-subject injection -------------------------------------------------------------------------


async def test_reply_subject_injection_changes_nothing(legion_fleet: TestFleet) -> None:
    """Alpha makes legitimate requests but names beta's event subject or beta's KV key as the reply
    subject. Through the service import the server rewrites the reply to a private _R_ subject, so
    the PubAck / KV reply never lands there."""
    fleet = legion_fleet
    alpha, a, beta = await _two_agents(fleet)
    p1, p2 = alpha.projects[0], beta.projects[0]
    rev = await _put_admin(fleet, p2, "plan", b"v1")
    beta_event = subj.EVENTS.render(source=beta.name, type="task.completed")
    beta_key = f"$KV.{bucket_name(p2)}.plan"
    before = (await fleet.admin.js.stream_info("EVENTS")).state.last_seq
    own_event = subj.EVENTS.render(source=alpha.name, type="ping")
    targets = (beta_event, beta_key)
    for target in targets:
        await a.nc.publish(own_event, b"{}", reply=target)
        await a.nc.publish(f"$KV.{bucket_name(p1)}.mine", b"x", reply=target)
        await a.nc.publish(f"JSL.API.DIRECT.GET.KV_{bucket_name(p1)}.$KV.{bucket_name(p1)}.mine", b"", reply=target)
    # a round trip through the same stream proves the injected requests were processed before we look
    marker = await a.js_publish(own_event, b'{"marker":true}')
    state = await fleet.admin.js.stream_info("EVENTS", subjects_filter=beta_event)
    assert not (state.state.subjects or {}).get(beta_event), "an injected reply was stored as beta's event"
    assert marker.seq > before
    kv = await fleet.admin.js.key_value(bucket_name(p2))
    entry = await kv.get("plan")
    assert (entry.value, entry.revision) == (b"v1", rev)
