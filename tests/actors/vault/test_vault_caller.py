"""Who is calling: the server-stamped ``Nats-Request-Info`` (verified against the real nats-server),
and refusals of calls made as another agent."""

from __future__ import annotations

import asyncio
import json

import pytest
from llm_rig import vault_rig, with_forged_info
from nats.aio.msg import Msg

from legion.contracts import Commit, LlmError, LlmRefused, LlmReply, ModelCalled, PermissionDenied
from legion.contracts import headers as h
from legion.contracts import subjects as subj
from legion.testing import FakeLlmServer, TestFleet

pytestmark = [pytest.mark.nats, pytest.mark.security, pytest.mark.timeout(60)]


async def test_the_server_stamps_request_info_and_overwrites_a_forged_copy(legion_fleet: TestFleet) -> None:
    """Pins the fields of nats-server's Nats-Request-Info for a request through the share import."""
    fleet = legion_fleet
    agent = await fleet.add_agent("alpha")
    received: asyncio.Queue[Msg] = asyncio.Queue()

    async def responder(msg: Msg) -> None:
        received.put_nowait(msg)
        await fleet.admin.nc.publish(msg.reply, b"ok")

    await fleet.admin.subscribe(subj.VAULT_LLM.render(agent=agent.name), responder)
    client = await fleet.connect(agent.creds, name="chosen-by-the-client")
    forged = with_forged_info({"acc": "AFORGED", "user": "UFORGED", "name_tag": "someone-else", "tags": []})

    await client.request_raw(subj.VAULT_LLM.render(agent=agent.name), b"{}", headers=forged, timeout=5)

    msg = await asyncio.wait_for(received.get(), 5)
    info = json.loads(msg.headers[h.REQUEST_INFO])
    assert {"acc", "user", "name", "name_tag", "tags", "jwt", "issuer_key", "kind", "client_type"} <= set(info)
    assert info["acc"] == fleet.server.auth.keys.agents.public_key, "acc: the AGENTS account public key"
    assert info["name_tag"] == agent.name, "name_tag: the name claim of the user JWT"
    assert info["name"] == "chosen-by-the-client", "name: the connection name, chosen by the client"
    assert info["user"].startswith("U") and info["user"] != "UFORGED"
    assert "legion-kind:agent" in info["tags"]
    assert info["issuer_key"] == info["acc"]
    assert (info["kind"], info["client_type"]) == ("Client", "nats")


async def test_a_forged_request_info_is_overwritten_and_the_caller_still_identified(
    legion_fleet: TestFleet, fake_llm: FakeLlmServer
) -> None:
    async with vault_rig(legion_fleet, fake_llm, other_agents=("beta",)) as rig:
        beta = rig.others[0]
        forged = with_forged_info(
            {"acc": legion_fleet.server.auth.keys.agents.public_key, "name_tag": beta.name, "tags": []}
        )
        reply = await rig.send(rig.request("primary"), headers=forged)
        events = await rig.events()

    assert isinstance(reply, LlmReply), reply
    assert [e.agent for e in events if isinstance(e, ModelCalled)] == [rig.agent.name]
    assert [c.agent for c in rig.ledger.commits] == [rig.agent.name], "billed to the real caller"


async def test_an_agent_cannot_call_on_another_agents_subject(legion_fleet: TestFleet, fake_llm: FakeLlmServer) -> None:
    async with vault_rig(legion_fleet, fake_llm, other_agents=("beta",)) as rig:
        beta = rig.others[0]
        with pytest.raises(PermissionDenied) as err:
            await rig.ask("primary", agent=beta.name)
        assert err.value.subject == subj.VAULT_LLM.render(agent=beta.name)
        own = await rig.ask("primary")
        assert isinstance(own, LlmReply), "the same connection still makes its own calls"
    assert [r.model for r in fake_llm.requests] == ["primary-model"]
    assert [c.agent for c in rig.ledger.commits] == [rig.agent.name]


@pytest.mark.parametrize(
    ("info", "fragment"),
    [
        (None, "no Nats-Request-Info header"),
        ({"acc": "<agents>", "name_tag": "somebody-else"}, "asked on the subject of agent"),
        ({"acc": "AOTHERACCOUNT", "name_tag": "<agent>"}, "is not the AGENTS account"),
        ("not json", "unreadable"),
    ],
    ids=["missing", "other-agent", "other-account", "garbage"],
)
async def test_a_call_that_cannot_be_attributed_is_denied_and_reported(
    legion_fleet: TestFleet, fake_llm: FakeLlmServer, info: object, fragment: str
) -> None:
    """Only a LEGION-account client reaches the vault without the server stamping the header."""
    async with vault_rig(legion_fleet, fake_llm) as rig:
        headers: dict[str, str] = {}
        if isinstance(info, dict):
            info = {
                k: v.replace("<agents>", legion_fleet.server.auth.keys.agents.public_key).replace(
                    "<agent>", rig.agent.name
                )
                for k, v in info.items()
            }
            headers = with_forged_info(info)
        elif isinstance(info, str):
            headers = {h.REQUEST_INFO: info}
        reply = await rig.send(rig.request("primary"), client=legion_fleet.admin, headers=headers)
        events = await rig.events()

    assert isinstance(reply, LlmError), reply
    assert reply.code == "denied"
    assert fragment in reply.message
    [refused] = [e for e in events if isinstance(e, LlmRefused)]
    assert (refused.code, refused.agent) == ("denied", rig.agent.name)
    assert fake_llm.requests == [] and rig.ledger.reserves == []
    assert not [e for e in events if isinstance(e, ModelCalled | Commit)]
