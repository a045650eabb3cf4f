"""The HTTP proxy through the real vault host: ``legion.vault.<agent>.http`` on the real nats-server,
called with agent credentials, against an aiohttp server on 127.0.0.1 that the test starts.

Only the calls that must reach that server get the proxy's test-only SSRF exemption (its port on
127.0.0.1); nothing here sends traffic off this machine.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import pytest
from aiohttp import web
from llm_rig import VaultRig, vault_rig, with_forged_info
from structlog.testing import capture_logs

from legion.actors.vault import CredentialStore, HttpProxySpec, SsrfExemption
from legion.broker import Broker
from legion.contracts import HttpError, HttpRequest, HttpResponse, PermissionDenied, decode, encode
from legion.contracts import subjects as subj
from legion.testing import FakeLlmServer, TestFleet

pytestmark = [pytest.mark.nats, pytest.mark.security, pytest.mark.timeout(60)]

TOKEN = "tok_S3cr&t/val#ue+1=="  # characters that would change a URL if not encoded
HTTP_AGENT = {"model": "primary", "allowed_apis": ["llm", "http"], "credentials": ["token"]}


@dataclass
class Echo:
    """A local server answering every request with what it received (method, path, headers)."""

    port: int
    hits: list[dict[str, Any]]

    def url(self, path: str = "/echo") -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    @property
    def exemption(self) -> SsrfExemption:
        return SsrfExemption("127.0.0.1/32", port=self.port)


@asynccontextmanager
async def echo_server() -> AsyncIterator[Echo]:
    hits: list[dict[str, Any]] = []

    async def echo(request: web.Request) -> web.Response:
        seen = {"method": request.method, "path": request.path_qs, "headers": dict(request.headers)}
        hits.append(seen)
        return web.json_response(seen, headers={"X-Echo-Authorization": request.headers.get("Authorization", "")})

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", echo)
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        yield Echo(port=runner.addresses[0][1], hits=hits)
    finally:
        await runner.cleanup()


def get(url: str, headers: Mapping[str, str] | None = None) -> HttpRequest:
    return HttpRequest(request_id="h1", url=url, headers=dict(headers or {}))


async def fetch(
    rig: VaultRig, req: HttpRequest, *, client: Broker | None = None, agent: str | None = None, **headers: str
) -> HttpResponse | HttpError:
    """``req`` on ``legion.vault.<agent>.http`` (default: the rig's agent, with its own connection)."""
    data, hdrs = encode(req)
    subject = subj.VAULT_HTTP.render(agent=agent or rig.agent.name)
    msg = await (client or rig.client).request_raw(subject, data, headers={**hdrs, **headers}, timeout=20)
    reply = decode(msg.data, msg.headers, strict=True)
    assert isinstance(reply, HttpResponse | HttpError), reply
    return reply


def exempt(server: Echo) -> dict[str, Any]:
    return {"http": HttpProxySpec(timeout_s=5.0, ssrf_exemptions=(server.exemption,))}


async def test_an_agent_calls_with_its_credential_and_never_sees_the_value(
    legion_fleet: TestFleet, fake_llm: FakeLlmServer
) -> None:
    credentials = CredentialStore({"token": TOKEN})
    with capture_logs() as logs:
        async with (
            echo_server() as server,
            vault_rig(
                legion_fleet, fake_llm, agent_config=HTTP_AGENT, credentials=credentials, spec=exempt(server)
            ) as rig,
        ):
            req = get(server.url("/echo"), {"Authorization": "Bearer $CRED{token}", "X-Probe": rig.secret})
            reply = await fetch(rig, req)

    assert isinstance(reply, HttpResponse), reply
    assert (reply.request_id, reply.status) == ("h1", 200)
    [hit] = server.hits
    assert hit["headers"]["Authorization"] == f"Bearer {TOKEN}", "the vault substituted the value"
    echoed = json.loads(reply.body)
    assert echoed["headers"]["Authorization"] == "Bearer $CRED{token}", "and redacted it from the body"
    assert reply.headers["X-Echo-Authorization"] == "Bearer $CRED{token}", "and from the headers"
    assert rig.secret not in reply.body and "[redacted]" in echoed["headers"]["X-Probe"], "provider keys too"
    [fetched] = [e for e in logs if e["event"] == "vault.http.fetched"]
    assert (fetched["agent"], fetched["status"]) == (rig.agent.name, 200)
    assert not [e for e in logs if TOKEN in repr(e) or rig.secret in repr(e)], "no value in any log line"


async def test_a_loopback_address_without_the_exemption_is_refused_as_ssrf(
    legion_fleet: TestFleet, fake_llm: FakeLlmServer
) -> None:
    credentials = CredentialStore({"token": TOKEN})
    async with (
        echo_server() as server,
        vault_rig(legion_fleet, fake_llm, agent_config=HTTP_AGENT, credentials=credentials) as rig,
    ):
        reply = await fetch(rig, get(server.url("/echo"), {"Authorization": "Bearer $CRED{token}"}))

    assert isinstance(reply, HttpError), reply
    assert (reply.request_id, reply.code) == ("h1", "ssrf")
    assert "loopback" in reply.message
    assert server.hits == [], "nothing was sent"


async def test_another_agent_cannot_pose_as_the_caller(legion_fleet: TestFleet, fake_llm: FakeLlmServer) -> None:
    """On the other agent's subject the server refuses; a forged Nats-Request-Info is overwritten by the
    server, so the caller is still itself (and may not use the other's credential); a LEGION-account
    client claiming an agent on another agent's subject is denied by the vault."""
    credentials = CredentialStore({"token": TOKEN})
    beta_config = {"model": "primary", "allowed_apis": ["llm", "http"]}  # no credentials
    async with (
        echo_server() as server,
        vault_rig(
            legion_fleet,
            fake_llm,
            agent_config=HTTP_AGENT,
            other_agents=("beta",),
            other_config=beta_config,
            credentials=credentials,
            spec=exempt(server),
        ) as rig,
    ):
        alpha, beta = rig.agent, rig.others[0]
        req = get(server.url("/echo"), {"Authorization": "Bearer $CRED{token}"})
        beta_client = await legion_fleet.connect(beta.creds, name=f"conn-{beta.name}")

        with pytest.raises(PermissionDenied) as err:
            await fetch(rig, req, client=beta_client, agent=alpha.name)
        assert err.value.subject == subj.VAULT_HTTP.render(agent=alpha.name)

        forged = with_forged_info({"acc": legion_fleet.server.auth.keys.agents.public_key, "name_tag": alpha.name})
        as_beta = await fetch(rig, req, client=beta_client, agent=beta.name, **forged)

        claims = with_forged_info({"acc": legion_fleet.server.auth.keys.agents.public_key, "name_tag": beta.name})
        mismatched = await fetch(rig, req, client=legion_fleet.admin, agent=alpha.name, **claims)

        own = await fetch(rig, req)

    assert isinstance(as_beta, HttpError), as_beta
    assert as_beta.code == "credential"
    assert f"agent {beta.name!r} may not use credential 'token'" in as_beta.message
    assert isinstance(mismatched, HttpError), mismatched
    assert mismatched.code == "policy"
    assert f"caller {beta.name!r} asked on the subject of agent {alpha.name!r}" in mismatched.message
    assert isinstance(own, HttpResponse), own
    assert len(server.hits) == 1, "only the agent's own call reached the server"
