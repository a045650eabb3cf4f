"""Agents create no consumers, on any stream, in any form (docs/security.md, "Agents create no consumers").

The hole this closes: the server does not restrict a push consumer's ``deliver_subject``, so an agent
allowed to create a consumer on its own bucket could have its KV values, with a forged ``Legion-Type``
header, delivered to any LEGION subscriber (the ledger's ``legion.svc.ledger.release``, another
agent's ``_INBOX``...). Each test makes the attempt with the agent's own credential, checks the
refusal, that a LEGION-account subscriber on the target received nothing and that no consumer exists,
and that the same agent's legitimate blackboard work in the same test succeeds.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
from typing import Any

import msgspec
import pytest
from nats.aio.msg import Msg

from legion.broker import INBOX, Broker, agent_inbox_durable, agent_permissions, agent_state_bucket, bucket_name
from legion.contracts import PermissionDenied, Unavailable
from legion.contracts import headers as hdr
from legion.contracts import subjects as subj
from legion.testing import AgentHandle, TestFleet

pytestmark = [pytest.mark.nats, pytest.mark.security]

_FORGED_TYPE = "ledger.release.v1"


async def _alpha(fleet: TestFleet) -> tuple[AgentHandle, Broker, AgentHandle]:
    alpha = await fleet.add_agent("alpha", projects=(fleet.name("p1"),))
    beta = await fleet.add_agent("beta", projects=(fleet.name("p2"),))
    return alpha, await fleet.connect(alpha.creds, name="alpha"), beta


async def _own_work_succeeds(a: Broker, bucket: str) -> int:
    """A KV put (with the forged header an attacker would plant) and a direct get on the agent's own bucket."""
    ack = await a.js_publish(f"$KV.{bucket}.tasks.t1", b'{"reservation":"r1"}', headers={hdr.TYPE: _FORGED_TYPE})
    got = await a.request_raw(f"{a.js_api_prefix}.DIRECT.GET.KV_{bucket}.$KV.{bucket}.tasks.t1", b"")
    assert got.data == b'{"reservation":"r1"}' and (got.headers or {}).get("Nats-Sequence") == str(ack.seq)
    return ack.seq


class _Listener:
    """A LEGION-account (admin) subscriber on the subject an attacker aims at."""

    def __init__(self) -> None:
        self.got: list[Msg] = []
        self.marker = asyncio.Event()

    async def cb(self, msg: Msg) -> None:
        if msg.data == b"marker":
            self.marker.set()
        else:
            self.got.append(msg)


async def _listen(fleet: TestFleet, subject: str) -> _Listener:
    listener = _Listener()
    await fleet.admin.subscribe(subject, listener.cb)
    return listener


def _create_requests(stream: str, deliver: str | None, filt: str) -> list[tuple[str, bytes]]:
    """Every CONSUMER.CREATE form, push (``deliver``) or pull, under both JetStream prefixes."""
    config: dict[str, Any] = {"ack_policy": "none" if deliver else "explicit", "filter_subject": filt}
    if deliver:
        config |= {"deliver_subject": deliver, "deliver_policy": "all"}
    ephemeral = msgspec.json.encode({"stream_name": stream, "config": config})
    durable = msgspec.json.encode({"stream_name": stream, "config": {**config, "durable_name": "sneaky"}})
    out: list[tuple[str, bytes]] = []
    for prefix in ("JSL.API", "$JS.API"):
        out += [
            (f"{prefix}.CONSUMER.CREATE.{stream}", ephemeral),
            (f"{prefix}.CONSUMER.CREATE.{stream}.sneaky", durable),
            (f"{prefix}.CONSUMER.CREATE.{stream}.sneaky.{filt}", durable),
            (f"{prefix}.CONSUMER.DURABLE.CREATE.{stream}.sneaky", durable),
        ]
    return out


def _target(kind: str, beta: str) -> str:
    return {
        "ledger-release": subj.SERVICE.render(service="ledger", op="release"),
        "launcher-events": subj.EVENTS.render(source="launcher", type="actor.started"),
        "their-token-stream": subj.STREAM.render(agent=beta, session="s1"),
        "their-inbox": f"_INBOX.{beta}.x",
    }[kind]


@pytest.mark.parametrize("target", ["ledger-release", "launcher-events", "their-token-stream", "their-inbox"])
@pytest.mark.parametrize("bucket_kind", ["project", "state"])
async def test_a_push_consumer_on_its_own_bucket_is_refused_and_delivers_nothing(
    legion_fleet: TestFleet, bucket_kind: str, target: str
) -> None:
    fleet = legion_fleet
    alpha, a, beta = await _alpha(fleet)
    bucket = bucket_name(alpha.projects[0]) if bucket_kind == "project" else agent_state_bucket(alpha.name)
    stream = f"KV_{bucket}"
    deliver = _target(target, beta.name)
    listener = await _listen(fleet, deliver)
    await _own_work_succeeds(a, bucket)  # the value an attacker would deliver is in place
    for subject, body in _create_requests(stream, deliver, f"$KV.{bucket}.>"):
        with pytest.raises(PermissionDenied) as err:
            await a.request_raw(subject, body, timeout=5)
        assert err.value.subject.lower() == subject.lower()  # nats-py lower-cases the -ERR line
    await _own_work_succeeds(a, bucket)  # and the same connection still does its own work
    names = await fleet.admin.js_api(f"CONSUMER.NAMES.{stream}", {})
    assert not names.get("consumers"), names
    await fleet.admin.publish(deliver, b"marker")
    await asyncio.wait_for(listener.marker.wait(), 5)
    assert listener.got == [], [(m.subject, m.headers) for m in listener.got]


@pytest.mark.parametrize("bucket_kind", ["project", "state"])
async def test_a_pull_consumer_on_its_own_bucket_is_refused(legion_fleet: TestFleet, bucket_kind: str) -> None:
    fleet = legion_fleet
    alpha, a, _beta = await _alpha(fleet)
    bucket = bucket_name(alpha.projects[0]) if bucket_kind == "project" else agent_state_bucket(alpha.name)
    stream = f"KV_{bucket}"
    for subject, body in _create_requests(stream, None, f"$KV.{bucket}.>"):
        with pytest.raises(PermissionDenied):
            await a.request_raw(subject, body, timeout=5)
    await _own_work_succeeds(a, bucket)
    names = await fleet.admin.js_api(f"CONSUMER.NAMES.{stream}", {})
    assert not names.get("consumers"), names


@pytest.mark.parametrize("deliver", [True, False], ids=["push", "pull"])
async def test_a_consumer_on_inbox_is_refused_and_delivers_nothing(legion_fleet: TestFleet, deliver: bool) -> None:
    """A consumer on its own inbox subject, or on every inbox, aimed at another agent's _INBOX."""
    fleet = legion_fleet
    alpha, a, beta = await _alpha(fleet)
    target = f"_INBOX.{beta.name}.x"
    listener = await _listen(fleet, target)
    before = await fleet.admin.js_api(f"CONSUMER.NAMES.{INBOX}", {})
    for filt in (subj.AGENT_INBOX.render(agent=alpha.name), subj.INBOX_ALL):
        for subject, body in _create_requests(INBOX, target if deliver else None, filt):
            with pytest.raises(PermissionDenied):
                await a.request_raw(subject, body, timeout=5)
    await _own_work_succeeds(a, bucket_name(alpha.projects[0]))
    after = await fleet.admin.js_api(f"CONSUMER.NAMES.{INBOX}", {})
    assert sorted(after.get("consumers") or []) == sorted(before.get("consumers") or [])
    assert agent_inbox_durable(alpha.name) in (after.get("consumers") or [])
    await fleet.admin.publish(target, b"marker")
    await asyncio.wait_for(listener.marker.wait(), 5)
    assert listener.got == []


async def test_nats_py_kv_watch_fails_for_an_agent(legion_fleet: TestFleet) -> None:
    """What the hole used: nats-py's KV watch creates a push consumer. It no longer works for an agent."""
    fleet = legion_fleet
    alpha, a, _beta = await _alpha(fleet)
    bucket = bucket_name(alpha.projects[0])
    await _own_work_succeeds(a, bucket)
    kv = await a.js.key_value(bucket)  # STREAM.INFO: allowed
    with pytest.raises(TimeoutError):  # nats-py reports the refused CONSUMER.CREATE only as a timeout
        await asyncio.wait_for(kv.watch(">"), 3)
    names = await fleet.admin.js_api(f"CONSUMER.NAMES.KV_{bucket}", {})
    assert not names.get("consumers"), names


async def test_the_agents_account_imports_no_consumer_create(legion_fleet: TestFleet) -> None:
    """Defence in depth: even a user of AGENTS allowed to publish anything finds no CONSUMER.CREATE
    service (no responders), because LEGION no longer exports it; DIRECT.GET still answers."""
    fleet = legion_fleet
    name, project = fleet.name("wide"), fleet.name("p1")
    await fleet.add_agent("wide", projects=(project,))  # provisions the bucket
    wide = dataclasses.replace(agent_permissions(name, projects=(project,)), pub_allow=(">",))
    fleet.server.auth.issue(name, "agent", wide)
    a = await fleet.connect(fleet.server.auth.creds_path(name), name="wide")
    bucket = bucket_name(project)
    stream = f"KV_{bucket}"
    deliver = subj.SERVICE.render(service="ledger", op="release")
    listener = await _listen(fleet, deliver)
    await _own_work_succeeds(a, bucket)
    for subject, body in _create_requests(stream, deliver, f"$KV.{bucket}.>"):
        if subject.startswith("JSL.API."):
            with pytest.raises(Unavailable):
                await a.request_raw(subject, body, timeout=5)
    for fc in (f"$JS.FC.{stream}.x.y", "$JS.FC.INBOX.x.y"):
        with pytest.raises(Unavailable):
            await a.request_raw(fc, b"", timeout=5)
    names = await fleet.admin.js_api(f"CONSUMER.NAMES.{stream}", {})
    assert not names.get("consumers"), names
    await fleet.admin.publish(deliver, b"marker")
    await asyncio.wait_for(listener.marker.wait(), 5)
    assert listener.got == []


async def test_blackboard_reads_need_no_consumer(legion_fleet: TestFleet) -> None:
    """What replaced the consumers: stream info with a subjects filter and direct gets by sequence."""
    fleet = legion_fleet
    alpha, a, _beta = await _alpha(fleet)
    bucket = bucket_name(alpha.projects[0])
    seq = await _own_work_succeeds(a, bucket)
    info = await a.js_api(f"STREAM.INFO.KV_{bucket}", {"subjects_filter": f"$KV.{bucket}.tasks.>"})
    assert info["state"]["subjects"] == {f"$KV.{bucket}.tasks.t1": 1}
    body = json.dumps({"seq": 1, "next_by_subj": f"$KV.{bucket}.tasks.>"}).encode()
    got = await a.request_raw(f"JSL.API.DIRECT.GET.KV_{bucket}", body)
    assert (got.headers or {}).get("Nats-Sequence") == str(seq)
