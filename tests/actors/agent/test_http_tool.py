"""http_request as a real agent, answered by a fake vault: a LEGION-account admin subscription on
``legion.vault.<agent>.http`` that the agent reaches through the AGENTS service import. (The real
vault's proxy is tested in tests/actors/vault/test_http_proxy.py.)"""

from __future__ import annotations

import json

import pytest
from nats.aio.msg import Msg

from legion.actors.agent.tools.base import ToolSet
from legion.actors.agent.tools.http import BODY_CAP, http_tool
from legion.broker import Broker
from legion.contracts import HttpError, HttpRequest, HttpResponse, Message, decode, encode
from legion.contracts import subjects as subj
from legion.testing import TestFleet
from tests.actors.agent.tool_kit import ctx, err, ok

pytestmark = [pytest.mark.nats]


class FakeVault:
    def __init__(self, admin: Broker, agent: str) -> None:
        self.admin = admin
        self.agent = agent
        self.seen: list[HttpRequest] = []
        self.answer: Message | None = None

    async def start(self) -> None:
        await self.admin.subscribe(subj.VAULT_HTTP.render(agent=self.agent), self._on_request)

    async def _on_request(self, msg: Msg) -> None:
        req = decode(msg.data, msg.headers, strict=True)
        assert isinstance(req, HttpRequest)
        self.seen.append(req)
        reply = self.answer or HttpResponse(
            request_id=req.request_id, status=200, body=json.dumps(req.headers), final_url=req.url
        )
        data, hdrs = encode(reply)
        await self.admin.nc.publish(msg.reply, data, headers=hdrs)


async def _setup(fleet: TestFleet) -> tuple[str, ToolSet, FakeVault]:
    alpha = await fleet.add_agent("alpha")
    broker = await fleet.connect(alpha.creds, name="alpha")
    vault = FakeVault(fleet.admin, alpha.name)
    return alpha.name, ToolSet.of([http_tool(broker, alpha.name)]), vault


async def test_request_carries_the_call_key_as_idempotency_key(legion_fleet: TestFleet) -> None:
    agent, tools, vault = await _setup(legion_fleet)
    await vault.start()
    call = ctx(agent)
    args = {"method": "post", "url": "https://api.example.com/x", "headers": {"Authorization": "Bearer $CRED{gh}"}}
    result = ok(await tools.call("http_request", {**args, "body": "{}"}, call))
    assert result["status"] == 200
    sent = vault.seen[0]
    assert sent.method == "POST" and sent.request_id == call.call_key and sent.body == "{}"
    assert sent.headers == {"Authorization": "Bearer $CRED{gh}", "Idempotency-Key": call.call_key}
    own = {**args, "headers": {"idempotency-key": "mine"}}
    ok(await tools.call("http_request", own, ctx(agent)))
    assert vault.seen[1].headers == {"idempotency-key": "mine"}


async def test_response_body_is_stripped_of_invisible_unicode_and_capped(legion_fleet: TestFleet) -> None:
    agent, tools, vault = await _setup(legion_fleet)
    await vault.start()
    vault.answer = HttpResponse(request_id="r", status=200, body="ok\u200b\U000e0041" + "x" * (BODY_CAP + 10))
    result = ok(await tools.call("http_request", {"url": "https://example.com"}, ctx(agent)))
    assert result["body"].startswith("okx") and len(result["body"]) == BODY_CAP
    assert result["truncated"] is True


@pytest.mark.parametrize(
    ("vault_code", "tool_code"),
    [("ssrf", "denied"), ("policy", "denied"), ("credential", "denied"), ("timeout", "timeout"), ("network", "failed")],
)
async def test_vault_errors_map_to_tool_error_codes(legion_fleet: TestFleet, vault_code: str, tool_code: str) -> None:
    agent, tools, vault = await _setup(legion_fleet)
    await vault.start()
    vault.answer = HttpError(request_id="r", code=vault_code, message=f"refused: {vault_code}")
    message = err(await tools.call("http_request", {"url": "http://10.0.0.1/"}, ctx(agent)), tool_code)
    assert vault_code in message


async def test_without_a_vault_the_tool_is_unavailable(legion_fleet: TestFleet) -> None:
    agent, tools, _vault = await _setup(legion_fleet)
    err(await tools.call("http_request", {"url": "https://example.com"}, ctx(agent)), "unavailable")
