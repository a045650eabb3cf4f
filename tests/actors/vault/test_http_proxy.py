"""The vault's credentialed HTTP proxy, against aiohttp servers on 127.0.0.1 that the tests start.

Every test runs under ``net``: it records each DNS lookup and each outgoing connection of the
event loop, and refuses (and records) any connection to an address other than 127.0.0.1, so a
regression can never send traffic off this machine. Refusals must happen before any connection.
"""

from __future__ import annotations

import asyncio
import base64
import ipaddress
import json
import os
import socket
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import msgspec
import pytest
import pytest_asyncio
from aiohttp import web
from structlog.testing import capture_logs

from legion.actors.vault.credentials import CredentialStore, env_name
from legion.actors.vault.http_proxy import HttpProxy, HttpProxySpec
from legion.actors.vault.ssrf import IPAddress, SsrfExemption
from legion.contracts.codec import decode, encode
from legion.contracts.http import HTTP_ERROR_CODES, HttpError, HttpRequest, HttpResponse
from legion.runtime.config import AgentConfig, FleetConfig

GH = "ghp_S3cr&t/val#ue+1=="  # characters that would change a URL's structure if not encoded
OTHER = "other-secret-7f3a9c"
SYSTEM = "sk-system-provider-key-123456"
MiB = 1024 * 1024


# -- the network guard -------------------------------------------------------------------------
@dataclass
class Net:
    lookups: list[str] = field(default_factory=list)
    connects: list[tuple[str, int]] = field(default_factory=list)

    @property
    def off_machine(self) -> list[tuple[str, int]]:
        return [c for c in self.connects if c[0] != "127.0.0.1"]


@pytest_asyncio.fixture
async def net(monkeypatch: pytest.MonkeyPatch) -> Net:
    loop = asyncio.get_running_loop()
    record = Net()
    real_connect = loop.sock_connect
    real_create = loop.create_connection
    real_getaddrinfo = loop.getaddrinfo

    async def sock_connect(sock: socket.socket, address: Any) -> None:
        record.connects.append((str(address[0]), int(address[1])))
        if address[0] != "127.0.0.1":
            raise ConnectionRefusedError(f"test guard: no traffic to {address[0]}")
        await real_connect(sock, address)

    async def create_connection(*args: Any, **kwargs: Any) -> Any:
        if kwargs.get("sock") is None:  # a connection by host name would bypass sock_connect
            host = kwargs.get("host", args[1] if len(args) > 1 else None)
            record.connects.append((str(host), int(kwargs.get("port", args[2] if len(args) > 2 else 0))))
            raise ConnectionRefusedError("test guard: connections must go through a checked socket")
        return await real_create(*args, **kwargs)

    async def getaddrinfo(host: Any, port: Any, **kwargs: Any) -> Any:
        name = host.decode() if isinstance(host, bytes) else str(host)
        try:
            ipaddress.ip_address(name)
        except ValueError:
            record.lookups.append(name)
            if name != "localhost":
                raise socket.gaierror(socket.EAI_NONAME, f"test guard: no DNS for {name!r}") from None
        return await real_getaddrinfo(host, port, **kwargs)

    monkeypatch.setattr(loop, "sock_connect", sock_connect)
    monkeypatch.setattr(loop, "create_connection", create_connection)
    monkeypatch.setattr(loop, "getaddrinfo", getaddrinfo)
    return record


# -- local servers -----------------------------------------------------------------------------
@dataclass
class Server:
    port: int
    hits: list[dict[str, Any]]

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    @property
    def exemption(self) -> SsrfExemption:
        return SsrfExemption("127.0.0.1/32", port=self.port)


async def _echo(request: web.Request) -> web.Response:
    body = await request.text()
    data = {"method": request.method, "path_qs": request.path_qs, "query": dict(request.query)}
    data |= {"headers": dict(request.headers), "body": body}
    response = web.json_response(data)
    response.headers["X-Echo-Authorization"] = request.headers.get("Authorization", "")
    response.headers["X-Echo-Token"] = request.headers.get("X-Token", "")
    return response


async def _redirect(request: web.Request) -> web.Response:
    status = int(request.query.get("status", "302"))
    return web.Response(status=status, headers={"Location": request.query["to"]})


async def _loop(request: web.Request) -> web.Response:
    return web.Response(status=302, headers={"Location": "/loop"})


async def _big(request: web.Request) -> web.Response:
    return web.Response(body=b"x" * int(request.query["n"]))


async def _pad(request: web.Request) -> web.Response:
    """``n`` bytes of padding, then the X-Token header the server received, then more padding."""
    text = "A" * int(request.query["n"]) + request.headers.get("X-Token", "") + "B" * 200
    return web.Response(text=text)


async def _fixed(request: web.Request) -> web.Response:
    return web.Response(text=f"other={OTHER} system={SYSTEM}", headers={"X-Leak": OTHER})


@asynccontextmanager
async def serve() -> AsyncIterator[Server]:
    hits: list[dict[str, Any]] = []
    release = asyncio.Event()

    @web.middleware
    async def record(request: web.Request, handler: Callable[..., Any]) -> Any:
        hits.append({"path": request.path, "headers": dict(request.headers), "query": dict(request.query)})
        return await handler(request)

    async def endless(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse()
        await response.prepare(request)
        chunk = b"y" * 65536
        while not release.is_set():  # until the client goes away (write raises) or the test ends
            await response.write(chunk)
        return response

    async def slow(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse()
        await response.prepare(request)
        await response.write(b"first bytes, then nothing")
        await release.wait()
        return response

    app = web.Application(middlewares=[record])
    for path, fn in {
        "/echo": _echo,
        "/redirect": _redirect,
        "/loop": _loop,
        "/big": _big,
        "/pad": _pad,
        "/fixed": _fixed,
        "/endless": endless,
        "/slow": slow,
    }.items():
        app.router.add_route("*", path, fn)
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        yield Server(port=runner.addresses[0][1], hits=hits)
    finally:
        release.set()
        await runner.cleanup()


@pytest_asyncio.fixture
async def server() -> AsyncIterator[Server]:
    async with serve() as s:
        yield s


@pytest_asyncio.fixture
async def other_server() -> AsyncIterator[Server]:
    async with serve() as s:
        yield s


# -- the proxy ---------------------------------------------------------------------------------
CONFIG = FleetConfig(
    agents={
        "alpha": AgentConfig(allowed_apis=("llm", "http"), credentials=["gh", "missing"]),
        "beta": AgentConfig(credentials=["gh"]),  # allowed_apis defaults to ("llm",)
    }
)


def make_proxy(*servers: Server, store: CredentialStore | None = None, **spec: Any) -> HttpProxy:
    spec.setdefault("timeout_s", 5.0)
    store = store or CredentialStore({"gh": GH, "other": OTHER}, redact_also={"openai": SYSTEM})
    return HttpProxy(CONFIG, store, spec=HttpProxySpec(ssrf_exemptions=tuple(s.exemption for s in servers), **spec))


def get(url: str, **kwargs: Any) -> HttpRequest:
    return HttpRequest(request_id="r1", url=url, **kwargs)


async def error_of(proxy: HttpProxy, req: HttpRequest, agent: str = "alpha") -> HttpError:
    reply = await proxy.fetch(agent, req)
    assert isinstance(reply, HttpError), reply
    assert reply.request_id == req.request_id and reply.code in HTTP_ERROR_CODES
    return reply


async def response_of(proxy: HttpProxy, req: HttpRequest, agent: str = "alpha") -> HttpResponse:
    reply = await proxy.fetch(agent, req)
    assert isinstance(reply, HttpResponse), reply
    return reply


# -- contracts ---------------------------------------------------------------------------------
def test_http_contracts_round_trip_strictly() -> None:
    for msg in (
        HttpRequest(request_id="r", method="POST", url="https://x.test/", headers={"A": "b"}, body="{}", timeout_s=2),
        HttpResponse(request_id="r", status=200, headers={"A": "b"}, body="ok", truncated=True, final_url="u"),
        HttpError(request_id="r", code="ssrf", message="no"),
    ):
        data, headers = encode(msg)
        assert decode(data, headers, strict=True) == msg
    assert encode(HttpRequest(request_id="r", url="u"))[1] == {"Legion-Type": "http.request.v1"}


# -- SSRF: refused before any connection -----------------------------------------------------
@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:4222/",
        "http://localhost:4222/",
        "http://169.254.169.254/latest/meta-data/iam/security-credentials/",
        "http://10.0.0.1/",
        "http://[::1]:4222/",
        "http://[::ffff:127.0.0.1]:4222/",
        "http://2130706433:4222/",
        "http://0177.0.0.1:4222/",
        "http://0x7f.1:4222/",
        "http://127.1:4222/",
        "http://[fd00:ec2::254]/",
        "http://100.100.100.200/",
        "file:///etc/passwd",
    ],
)
async def test_internal_destinations_are_refused_before_connecting(net: Net, url: str) -> None:
    error = await error_of(make_proxy(), get(url))
    assert error.code == "ssrf", error
    assert "SSRF" in error.message
    assert net.connects == [] and net.lookups == []


async def test_the_default_refuses_a_local_server_that_an_exemption_reaches(net: Net, server: Server) -> None:
    assert (await error_of(make_proxy(), get(server.url("/echo")))).code == "ssrf"
    assert server.hits == []
    assert (await response_of(make_proxy(server), get(server.url("/echo")))).status == 200
    assert len(server.hits) == 1 and net.off_machine == []


async def test_a_public_name_resolving_to_a_private_address_is_refused_at_the_check(net: Net) -> None:
    lookups: list[str] = []

    async def dns(host: str, port: int) -> list[IPAddress]:
        lookups.append(host)
        return [ipaddress.ip_address("93.184.215.14"), ipaddress.ip_address("10.1.2.3")]

    proxy = HttpProxy(CONFIG, CredentialStore({}), spec=HttpProxySpec(timeout_s=5), resolve=dns)
    error = await error_of(proxy, get("https://innocent.example.com/"))
    assert error.code == "ssrf" and "10.1.2.3" in error.message
    assert lookups == ["innocent.example.com"]
    assert net.connects == [] and net.lookups == []


async def test_the_checked_address_is_pinned_so_dns_rebinding_cannot_swap_it(net: Net, server: Server) -> None:
    """The first answer passes the check; a second lookup would say 169.254.169.254. None happens."""
    answers = iter([["127.0.0.1"], ["169.254.169.254"]])
    lookups: list[str] = []

    async def rebinding_dns(host: str, port: int) -> list[IPAddress]:
        lookups.append(host)
        return [ipaddress.ip_address(a) for a in next(answers)]

    proxy = HttpProxy(
        CONFIG,
        CredentialStore({}),
        spec=HttpProxySpec(timeout_s=5, ssrf_exemptions=(server.exemption,)),
        resolve=rebinding_dns,
    )
    reply = await response_of(proxy, get(f"http://rebind.example:{server.port}/echo"))
    assert reply.status == 200 and json.loads(reply.body)["headers"]["Host"] == f"rebind.example:{server.port}"
    assert lookups == ["rebind.example"]
    assert net.connects == [("127.0.0.1", server.port)] and net.lookups == []


@pytest.mark.parametrize(
    "to", ["http://169.254.169.254/latest/meta-data/", "http://10.0.0.1/", "http://127.0.0.1:4222/", "http://[::1]/"]
)
async def test_a_redirect_to_an_internal_address_is_refused(net: Net, server: Server, to: str) -> None:
    error = await error_of(make_proxy(server), _redir(server, to))
    assert error.code == "ssrf"
    assert [h["path"] for h in server.hits] == ["/redirect"]
    assert net.connects == [("127.0.0.1", server.port)]


def _redir(server: Server, to: str, status: int = 302, **kwargs: Any) -> HttpRequest:
    return get(server.url("/redirect?" + urlencode({"to": to, "status": status})), **kwargs)


async def test_every_redirect_hop_is_checked_again(net: Net, server: Server, other_server: Server) -> None:
    """Only the first server is exempt: a redirect to another 127.0.0.1 server is refused, unsent."""
    error = await error_of(make_proxy(server), _redir(server, other_server.url("/echo")))
    assert error.code == "ssrf"
    assert other_server.hits == []


async def test_redirects_are_followed_up_to_five(net: Net, server: Server) -> None:
    reply = await response_of(make_proxy(server), _redir(server, "/redirect?to=/echo"))
    assert reply.status == 200 and reply.final_url == server.url("/echo")
    error = await error_of(make_proxy(server), get(server.url("/loop")))
    assert error.code == "policy" and "5 redirects" in error.message
    assert len(server.hits) == 3 + 6  # /redirect, /redirect, /echo; then /loop once and 5 times again


async def test_no_proxy_is_taken_from_the_environment(
    net: Net, server: Server, other_server: Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("HTTP_PROXY", "http_proxy", "HTTPS_PROXY", "ALL_PROXY"):
        monkeypatch.setenv(name, other_server.url("/"))
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    assert (await response_of(make_proxy(server), get(server.url("/echo")))).status == 200
    assert other_server.hits == [] and len(server.hits) == 1


# -- limits ------------------------------------------------------------------------------------
async def test_an_oversize_response_is_cut_at_one_mebibyte_and_marked_truncated(net: Net, server: Server) -> None:
    reply = await response_of(make_proxy(server), get(server.url(f"/big?n={MiB + 100}")))
    assert reply.truncated and reply.body == "x" * MiB
    reply = await response_of(make_proxy(server), get(server.url(f"/big?n={MiB}")))
    assert not reply.truncated and len(reply.body) == MiB


async def test_an_endless_response_stops_at_the_cap_without_waiting_for_its_end(net: Net, server: Server) -> None:
    started = time.monotonic()
    reply = await response_of(make_proxy(server, max_response_bytes=100_000), get(server.url("/endless")))
    assert reply.truncated and len(reply.body) == 100_000
    assert time.monotonic() - started < 5


async def test_a_slow_response_times_out_within_the_deadline(net: Net, server: Server) -> None:
    started = time.monotonic()
    error = await error_of(make_proxy(server), get(server.url("/slow"), timeout_s=0.3))
    assert error.code == "timeout" and error.retryable
    assert time.monotonic() - started < 3


async def test_the_request_timeout_cannot_exceed_the_vault_cap(net: Net, server: Server) -> None:
    started = time.monotonic()
    error = await error_of(make_proxy(server, timeout_s=0.3), get(server.url("/slow"), timeout_s=600))
    assert error.code == "timeout" and "0.3s" in error.message
    assert time.monotonic() - started < 3


async def test_a_request_body_over_the_limit_is_too_large(net: Net) -> None:
    error = await error_of(make_proxy(max_request_bytes=10), get("https://x.example/", method="POST", body="y" * 11))
    assert error.code == "too_large"
    assert net.connects == []


@pytest.mark.parametrize(
    ("req", "needle"),
    [
        (get("https://x.example/", method="CONNECT"), "CONNECT"),
        (get("https://x.example/", headers={"Host": "internal"}), "Host"),
        (get("https://x.example/", headers={"Bad Name": "v"}), "Bad Name"),
        (get("https://x.example/", headers={"X-A": "v\r\nInjected: 1"}), "line break"),
        (get("/relative/path"), "absolute"),
        (get("https://x.example/", timeout_s=0), "timeout_s"),
    ],
)
async def test_malformed_requests_are_invalid(net: Net, req: HttpRequest, needle: str) -> None:
    error = await error_of(make_proxy(), req)
    assert error.code == "invalid" and needle in error.message
    assert net.connects == [] and net.lookups == []


# -- policy ------------------------------------------------------------------------------------
async def test_an_agent_without_the_http_api_is_refused(net: Net, server: Server) -> None:
    error = await error_of(make_proxy(server), get(server.url("/echo")), agent="beta")
    assert error.code == "policy" and "agents.beta.allowed_apis" in error.message
    assert server.hits == [] and net.connects == []


async def test_an_unknown_agent_is_refused(net: Net, server: Server) -> None:
    error = await error_of(make_proxy(server), get(server.url("/echo")), agent="stranger")
    assert error.code == "policy"
    assert server.hits == []


# -- credentials -------------------------------------------------------------------------------
async def test_an_allowed_handle_is_substituted_and_the_value_never_comes_back(net: Net, server: Server) -> None:
    req = get(
        server.url("/echo?token=$CRED{gh}"),
        method="POST",
        headers={"Authorization": "Bearer $CRED{gh}", "X-Token": "$CRED{gh}"},
        body='{"secret": "$CRED{gh}"}',
    )
    reply = await response_of(make_proxy(server), req)
    seen = server.hits[0]
    assert seen["headers"]["Authorization"] == f"Bearer {GH}" and seen["query"]["token"] == GH
    echoed = json.loads(reply.body)
    assert echoed["body"] == '{"secret": "$CRED{gh}"}'
    assert echoed["headers"]["Authorization"] == "Bearer $CRED{gh}"
    assert echoed["query"]["token"] == "$CRED{gh}"
    assert reply.headers["X-Echo-Authorization"] == "Bearer $CRED{gh}"
    assert reply.headers["X-Echo-Token"] == "$CRED{gh}"
    assert "$CRED{gh}" in reply.final_url
    flat = json.dumps(msgspec.to_builtins(reply))
    for form in (GH, "ghp_S3cr%26t%2Fval%23ue%2B1%3D%3D", "ghp_S3cr&t\\/val#ue+1=="):
        assert form not in flat


async def test_a_handle_the_agent_may_not_use_is_refused_unsent(net: Net, server: Server) -> None:
    error = await error_of(make_proxy(server), get(server.url("/echo"), headers={"X-Token": "$CRED{other}"}))
    assert error.code == "credential"
    assert "$CRED{other}" in error.message and "agents.alpha.credentials" in error.message
    assert OTHER not in error.message
    assert server.hits == [] and net.connects == []


async def test_an_unknown_handle_names_the_variable_to_set(net: Net, server: Server) -> None:
    error = await error_of(make_proxy(server), get(server.url("/echo?k=$CRED{missing}")))
    assert error.code == "credential" and env_name("missing") == "LEGION_CRED_MISSING"
    assert "$CRED{missing}" in error.message and "LEGION_CRED_MISSING" in error.message
    # a name neither allowed nor held gets the policy answer: no oracle of what the vault holds
    error = await error_of(make_proxy(server), get(server.url("/echo"), body="$CRED{nothing}"))
    assert error.code == "credential" and "may not use" in error.message
    error = await error_of(make_proxy(server), get(server.url("/echo"), body="$CRED{Not A Name}"))
    assert error.code == "credential" and "[a-z0-9_-]" in error.message
    assert server.hits == []


async def test_a_credential_that_would_break_a_header_is_refused_without_echoing_it(net: Net) -> None:
    store = CredentialStore({"gh": "abc\r\nX-Injected: 1"})
    error = await error_of(make_proxy(store=store), get("https://x.example/", headers={"X-Token": "$CRED{gh}"}))
    assert error.code == "invalid" and "X-Injected" not in error.message
    assert net.connects == []


async def test_other_secrets_the_vault_holds_are_redacted_too(net: Net, server: Server) -> None:
    reply = await response_of(make_proxy(server), get(server.url("/fixed")))
    assert reply.body == "other=$CRED{other} system=[redacted system key openai]"
    assert reply.headers["X-Leak"] == "$CRED{other}"


async def test_a_secret_straddling_the_size_cap_leaves_no_prefix(net: Net, server: Server) -> None:
    proxy = make_proxy(server, max_response_bytes=64)
    reply = await response_of(proxy, get(server.url("/pad?n=60"), headers={"X-Token": "$CRED{gh}"}))
    assert reply.truncated
    assert reply.body == ("A" * 60 + "$CRED{gh}")[:64]
    assert GH[:4] not in reply.body


async def test_a_credential_header_is_dropped_when_a_redirect_leaves_the_origin(
    net: Net, server: Server, other_server: Server
) -> None:
    proxy = make_proxy(server, other_server)
    req = _redir(server, other_server.url("/echo"), headers={"Authorization": "Bearer $CRED{gh}", "X-Plain": "kept"})
    reply = await response_of(proxy, req)
    assert server.hits[0]["headers"]["Authorization"] == f"Bearer {GH}"
    landed = other_server.hits[0]["headers"]
    assert "Authorization" not in landed and landed["X-Plain"] == "kept"
    assert reply.final_url == other_server.url("/echo")


async def test_a_credential_header_is_kept_on_a_same_origin_redirect(net: Net, server: Server) -> None:
    reply = await response_of(make_proxy(server), _redir(server, "/echo", headers={"X-Token": "$CRED{gh}"}))
    assert [h["headers"].get("X-Token") for h in server.hits] == [GH, GH]
    assert reply.headers["X-Echo-Token"] == "$CRED{gh}"


async def test_a_credential_body_is_not_resent_to_another_origin(
    net: Net, server: Server, other_server: Server
) -> None:
    proxy = make_proxy(server, other_server)
    req = _redir(server, other_server.url("/echo"), status=307, method="POST", body="token=$CRED{gh}")
    error = await error_of(proxy, req)
    assert error.code == "credential" and "another origin" in error.message
    assert other_server.hits == []


async def test_a_credential_bound_to_hosts_goes_nowhere_else(net: Net, server: Server) -> None:
    store = CredentialStore({"gh": GH}, hosts={"gh": ["api.github.com"]})
    error = await error_of(make_proxy(server, store=store), get(server.url("/echo"), headers={"X-Token": "$CRED{gh}"}))
    assert error.code == "credential" and "api.github.com" in error.message
    assert server.hits == [] and net.connects == []


def test_credentials_load_from_env_and_dotenv_without_touching_os_environ(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / ".env").write_text(
        "LEGION_CRED_GH=from-file\nLEGION_CRED_FILE_ONLY=file-value\nLEGION_SYSTEM_OPENAI=sk-f\n"
    )
    monkeypatch.delenv("LEGION_CRED_FILE_ONLY", raising=False)
    store = CredentialStore.load(tmp_path, environ={"LEGION_CRED_GH": "from-env", "PATH": "/bin"})
    assert store.names() == {"gh", "file_only"}
    assert "LEGION_CRED_FILE_ONLY" not in os.environ
    redact = store.redactor()
    assert redact("from-env file-value sk-f") == "$CRED{gh} $CRED{file_only} [redacted system key openai]"


async def test_refusals_are_logged_without_secrets(net: Net, server: Server) -> None:
    with capture_logs() as logs:
        await error_of(make_proxy(server), _redir(server, "http://10.0.0.1/?t=x", headers={"X-Token": "$CRED{gh}"}))
    refused = [e for e in logs if e["event"] == "vault.http.refused"]
    assert refused and refused[0]["code"] == "ssrf" and refused[0]["agent"] == "alpha"
    assert GH not in repr(logs)


async def test_a_handle_in_the_url_userinfo_becomes_basic_auth_and_is_redacted(net: Net, server: Server) -> None:
    reply = await response_of(make_proxy(server), get(f"http://bot:$CRED{{gh}}@127.0.0.1:{server.port}/echo"))
    token = base64.b64encode(f"bot:{GH}".encode()).decode()
    assert server.hits[0]["headers"]["Authorization"] == f"Basic {token}"
    assert reply.headers["X-Echo-Authorization"] == "Basic [redacted basic auth]"
    assert token not in reply.body and GH not in reply.body
    assert reply.final_url == server.url("/echo")


def test_a_base64_encoded_value_inside_a_longer_text_is_redacted() -> None:
    """A server may base64-encode a text that embeds the value, at any of the three alignments."""
    redact = CredentialStore({"gh": GH}).redactor()
    for prefix in ("", "u:", "user:"):
        encoded = base64.b64encode(f"{prefix}{GH}!".encode()).decode()
        redacted = redact(encoded)
        assert "$CRED{gh}" in redacted and len(redacted) < len(encoded)


async def test_a_handle_in_the_host_is_refused_before_any_dns_lookup(net: Net) -> None:
    lookups: list[str] = []

    async def dns(host: str, port: int) -> list[IPAddress]:
        lookups.append(host)
        return [ipaddress.ip_address("93.184.215.14")]

    proxy = HttpProxy(CONFIG, CredentialStore({"gh": GH}), spec=HttpProxySpec(timeout_s=5), resolve=dns)
    for url in ("https://$CRED{gh}.attacker.example/", " HTTPS://user@x$CRED{gh}.attacker.example:8443/"):
        error = await error_of(proxy, get(url))
        assert error.code == "credential" and "host" in error.message
    assert lookups == [] and net.lookups == [] and net.connects == []
