"""The vault's credentialed HTTP proxy, independent of NATS.

The vault actor calls :meth:`HttpProxy.fetch` from its handler for ``legion.vault.<agent>.http``::

    @handler
    async def http(self, req: HttpRequest, ctx: Context) -> HttpResponse | HttpError:
        return await self.http_proxy.fetch(agent, req)

A call goes through, in order: the agent's policy ("http" in ``allowed_apis``), request validation,
``$CRED{name}`` substitution (only names in the agent's ``credentials``), the SSRF guard on every hop
(resolve, check every address, connect only to the checked addresses), manual redirects (at most
5; credential-bearing headers are dropped when a redirect leaves the origin), a cap on the response
size (read, then cut, with ``truncated``) and on the total time; then every credential value is
redacted from the reply. Environment proxies are never used (``trust_env=False``), and no cookies
are kept between hops.
"""

from __future__ import annotations

import asyncio
import base64
import re
import time
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from typing import Final
from urllib.parse import quote

import aiohttp
import msgspec
import structlog
from yarl import URL

from legion.actors.vault.credentials import HANDLE, CredentialRefused, CredentialStore, Redactor, Substitution
from legion.actors.vault.ssrf import (
    InvalidTarget,
    PinnedResolver,
    Resolve,
    SsrfExemption,
    SsrfGuard,
    SsrfRefused,
    Target,
)
from legion.contracts.errors import LegionError, Refused, Unavailable
from legion.contracts.http import HttpError, HttpErrorCode, HttpRequest, HttpResponse
from legion.runtime.config import AgentConfig, FleetConfig

__all__ = ["HttpProxy", "HttpProxySpec"]

log = structlog.get_logger("legion.actors.vault.http")

FETCHED: Final = "vault.http.fetched"
REFUSED: Final = "vault.http.refused"

METHODS: Final = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
REDIRECTS: Final = frozenset({301, 302, 303, 307, 308})
# Set by the proxy or meaningless through it; an agent may not choose them.
FORBIDDEN_HEADERS: Final = frozenset(
    {
        "host",
        "content-length",
        "transfer-encoding",
        "connection",
        "keep-alive",
        "proxy-authorization",
        "proxy-connection",
        "te",
        "trailer",
        "upgrade",
        "expect",
    }
)
# Never sent to another origin after a redirect, whether or not they hold a $CRED handle.
SENSITIVE_HEADERS: Final = frozenset({"authorization", "cookie"})
_TOKEN: Final = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")
_BAD_VALUE: Final = re.compile(r"[\r\n\x00]")
_READ_CHUNK: Final = 64 * 1024
_MARKER: Final = "legioncredentialhandle"


@dataclass(frozen=True, slots=True)
class HttpProxySpec:
    """Limits of the proxy. ``ssrf_exemptions`` is a test-only escape hatch (default: none)."""

    timeout_s: float = 15.0
    """Cap on the total time of a call (DNS, connects, redirects, body); a request may ask for less."""
    max_response_bytes: int = 1024 * 1024
    max_request_bytes: int = 1024 * 1024
    max_redirects: int = 5
    max_url_chars: int = 8192
    max_headers: int = 64
    max_response_header_bytes: int = 64 * 1024
    user_agent: str = "legion-vault"
    ssrf_exemptions: tuple[SsrfExemption, ...] = ()


def _url_encode(value: str) -> str:
    """A credential value inside a URL is percent-encoded, so it cannot change the URL's structure."""
    return quote(value, safe="")


def _refuse_handle_in_host(url: str) -> None:
    """A secret in a host name would reach DNS resolvers before any check could stop it: refuse it.

    Each handle becomes a host-safe marker and the URL is parsed as it will be with the values in
    (which are percent-encoded, so they cannot change its structure either)."""
    if HANDLE.search(url) is None:
        return
    try:
        host = (URL(HANDLE.sub(_MARKER, url)).raw_host or "").lower()
    except (ValueError, TypeError) as exc:
        raise _Refused("invalid", f"the URL is not valid: {exc}") from None
    if _MARKER in host:
        raise _Refused(
            "credential", "a $CRED{name} handle may not be part of the host; use the path, a header or the body"
        )


class _Refused(Refused):
    def __init__(self, code: HttpErrorCode, message: str, *, retryable: bool = False) -> None:
        super().__init__(message)
        self.code: HttpErrorCode = code
        self.message = message
        self.retryable = retryable


@dataclass(slots=True)
class _Outgoing:
    """The request as it will be sent on the current hop (values substituted)."""

    method: str
    url: URL
    headers: dict[str, str]
    body: bytes | None
    credential_headers: set[str]  # lower-cased names of headers that carry a credential
    credential_body: bool


class HttpProxy:
    """Makes HTTP calls for agents with their credentials; see the module docstring."""

    def __init__(
        self,
        config: FleetConfig,
        credentials: CredentialStore,
        *,
        spec: HttpProxySpec | None = None,
        resolve: Resolve | None = None,
    ) -> None:
        """``resolve`` replaces the system DNS resolver (tests); ``config`` may be replaced on reload."""
        self.config = config
        self.credentials = credentials
        self.spec = spec or HttpProxySpec()
        self.guard = SsrfGuard(exemptions=self.spec.ssrf_exemptions, resolve=resolve)

    async def fetch(self, agent: str, req: HttpRequest) -> HttpResponse | HttpError:
        """Make ``req`` for ``agent``. Never raises for a bad request or a failed call: returns HttpError."""
        started = time.monotonic()
        used = Substitution()
        deadline = self.spec.timeout_s
        if req.timeout_s is not None and req.timeout_s > 0:
            deadline = min(req.timeout_s, deadline)
        reply: HttpResponse | HttpError
        try:
            policy = self._policy(agent)
            out = self._prepare(agent, policy, req, used)
            async with asyncio.timeout(deadline):
                reply = await self._call(req, out, used)
        except _Refused as exc:
            reply = HttpError(request_id=req.request_id, code=exc.code, message=exc.message, retryable=exc.retryable)
        except TimeoutError:
            reply = HttpError(
                request_id=req.request_id,
                code="timeout",
                message=f"no complete response within {deadline:g}s; ask for less or retry later",
                retryable=True,
            )
        except Exception as exc:  # noqa: BLE001 - a bug must not leak a secret through a traceback's locals
            reply = HttpError(
                request_id=req.request_id, code="network", message=f"internal error: {type(exc).__name__}: {exc}"
            )
        redact = self.credentials.redactor(used)
        reply = self._redact(reply, redact)
        elapsed_ms = round((time.monotonic() - started) * 1000, 1)
        if isinstance(reply, HttpError):
            log.warning(REFUSED, agent=agent, code=reply.code, reason=reply.message, elapsed_ms=elapsed_ms)
        else:
            log.info(FETCHED, agent=agent, status=reply.status, truncated=reply.truncated, elapsed_ms=elapsed_ms)
        return reply

    def _redact(self, reply: HttpResponse | HttpError, redact: Redactor) -> HttpResponse | HttpError:
        """Replace every secret in the reply; then cut a truncated body to the cap (after, so no secret
        that straddles the cap survives as a prefix)."""
        if isinstance(reply, HttpError):
            return msgspec.structs.replace(reply, message=redact(reply.message))
        body = redact(reply.body)
        if reply.truncated:
            body = body.encode("utf-8")[: self.spec.max_response_bytes].decode("utf-8", errors="ignore")
        return msgspec.structs.replace(
            reply,
            headers={redact(k): redact(v) for k, v in reply.headers.items()},
            body=body,
            final_url=redact(reply.final_url),
        )

    # -- before any I/O --------------------------------------------------------------------
    def _policy(self, agent: str) -> AgentConfig:
        policy = self.config.agents.get(agent)
        if policy is None:
            raise _Refused("policy", f"agent {agent!r} is not in legion.yaml; the vault serves configured agents only")
        if "http" not in policy.allowed_apis:
            raise _Refused(
                "policy",
                f"agent {agent!r} may not use the http API; add 'http' to agents.{agent}.allowed_apis in legion.yaml",
            )
        return policy

    def _prepare(self, agent: str, policy: AgentConfig, req: HttpRequest, used: Substitution) -> _Outgoing:
        spec = self.spec
        method = req.method.upper()
        if method not in METHODS:
            raise _Refused("invalid", f"method {req.method!r} is not allowed; use one of {', '.join(sorted(METHODS))}")
        if req.timeout_s is not None and not req.timeout_s > 0:
            raise _Refused("invalid", f"timeout_s must be positive, got {req.timeout_s!r}")
        if len(req.url) > spec.max_url_chars:
            raise _Refused("too_large", f"the URL has {len(req.url)} characters; the limit is {spec.max_url_chars}")
        if len(req.headers) > spec.max_headers:
            raise _Refused("too_large", f"{len(req.headers)} headers; the limit is {spec.max_headers}")
        creds, allowed = self.credentials, policy.credentials
        try:
            _refuse_handle_in_host(req.url)
            url_text = creds.substitute(req.url, agent=agent, allowed=allowed, into=used, encode=_url_encode)
            headers, credential_headers = self._headers_out(agent, allowed, req.headers, used)
            body: bytes | None = None
            if req.body is not None:
                body = creds.substitute(req.body, agent=agent, allowed=allowed, into=used).encode("utf-8")
                if len(body) > spec.max_request_bytes:
                    raise _Refused(
                        "too_large", f"the body has {len(body)} bytes; the limit is {spec.max_request_bytes}"
                    )
        except CredentialRefused as exc:
            raise _Refused("credential", str(exc)) from None
        try:
            url = URL(url_text)
        except (ValueError, TypeError) as exc:
            raise _Refused("invalid", f"the URL is not valid: {exc}") from None
        if not url.scheme:
            raise _Refused("invalid", "the URL must be absolute, e.g. https://api.example.com/path")
        try:
            creds.check_host(used, url.raw_host or "")
        except CredentialRefused as exc:
            raise _Refused("credential", str(exc)) from None
        if url.user is not None or url.password is not None:
            url = self._userinfo_to_header(url, headers, credential_headers, used)
        headers.setdefault("User-Agent", spec.user_agent)
        credential_body = req.body is not None and HANDLE.search(req.body) is not None
        return _Outgoing(method, url.with_fragment(None), headers, body, credential_headers, credential_body)

    @staticmethod
    def _userinfo_to_header(url: URL, headers: dict[str, str], credential_headers: set[str], used: Substitution) -> URL:
        """``https://user:pass@host/`` -> an explicit Basic Authorization header (RFC 7617, UTF-8), so it is
        dropped like any other credential header when a redirect leaves the origin."""
        if any(name.lower() == "authorization" for name in headers):
            raise _Refused("invalid", "give credentials either in the URL or in an Authorization header, not both")
        token = base64.b64encode(f"{url.user or ''}:{url.password or ''}".encode()).decode("ascii")
        headers["Authorization"] = f"Basic {token}"
        if used:
            credential_headers.add("authorization")
            used.derived[token] = "[redacted basic auth]"
        return url.with_user(None)

    def _headers_out(
        self, agent: str, allowed: Collection[str], given: Mapping[str, str], used: Substitution
    ) -> tuple[dict[str, str], set[str]]:
        """The headers to send (handles substituted) and the lower-cased names of those holding a credential."""
        headers: dict[str, str] = {}
        credential_headers: set[str] = set()
        for name, value in given.items():
            if _TOKEN.fullmatch(name) is None:
                raise _Refused("invalid", f"header name {name!r} is not a valid HTTP token")
            if name.lower() in FORBIDDEN_HEADERS:
                raise _Refused("invalid", f"header {name!r} is set by the vault; remove it from the request")
            sent = self.credentials.substitute(value, agent=agent, allowed=allowed, into=used)
            if HANDLE.search(value) is not None:
                credential_headers.add(name.lower())
            if _BAD_VALUE.search(sent):  # never echo the value: it may hold a secret
                raise _Refused("invalid", f"the value of header {name!r} contains a line break or NUL")
            headers[name] = sent
        return headers, credential_headers

    # -- the call --------------------------------------------------------------------------
    async def _call(self, req: HttpRequest, out: _Outgoing, used: Substitution) -> HttpResponse:
        resolver = PinnedResolver()
        connector = aiohttp.TCPConnector(resolver=resolver, use_dns_cache=False, force_close=True)
        session = aiohttp.ClientSession(
            connector=connector,
            trust_env=False,  # never HTTP(S)_PROXY / .netrc from the vault's environment
            cookie_jar=aiohttp.DummyCookieJar(),
            timeout=aiohttp.ClientTimeout(total=None),  # the caller's asyncio.timeout bounds everything
            auto_decompress=True,
        )
        lookahead = self.credentials.redactor(used).max_bytes
        async with session:
            for hop in range(self.spec.max_redirects + 1):
                target = await self._check(out.url)
                if not target.literal:
                    resolver.pin(target)
                try:
                    async with session.request(
                        out.method,
                        out.url,
                        headers=out.headers,
                        data=out.body,
                        allow_redirects=False,
                        ssl=True,
                    ) as resp:
                        location = resp.headers.get("Location")
                        if resp.status in REDIRECTS and location is not None:
                            if hop == self.spec.max_redirects:
                                raise _Refused("policy", f"more than {self.spec.max_redirects} redirects; stopped")
                            out = _follow(out, resp.status, location)
                            continue
                        return await self._response(req, resp, lookahead)
                except aiohttp.InvalidURL as exc:
                    raise _Refused("invalid", f"the URL cannot be sent: {exc}") from None
                except (aiohttp.ClientError, OSError) as exc:
                    if isinstance(exc, TimeoutError):
                        raise
                    raise _Refused("network", f"{out.url.host}: {type(exc).__name__}: {exc}", retryable=True) from None
                except ValueError as exc:
                    raise _Refused("invalid", f"the request cannot be sent: {exc}") from None
        raise AssertionError("unreachable: the loop returns or raises")  # pragma: no cover

    async def _check(self, url: URL) -> Target:
        try:
            return await self.guard.check(url)
        except SsrfRefused as exc:
            raise _Refused("ssrf", str(exc)) from None
        except InvalidTarget as exc:
            raise _Refused("invalid", str(exc)) from None
        except Unavailable as exc:
            raise _Refused("network", str(exc), retryable=True) from None
        except LegionError as exc:
            raise _Refused("invalid", str(exc)) from None

    async def _response(self, req: HttpRequest, resp: aiohttp.ClientResponse, lookahead: int) -> HttpResponse:
        cap = self.spec.max_response_bytes
        limit = cap + lookahead + 1  # read past the cap so no secret is split by the cut, and to detect more
        chunks: list[bytes] = []
        size = 0
        while size < limit:
            chunk = await resp.content.read(min(_READ_CHUNK, limit - size))
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
        data = b"".join(chunks)
        truncated = size > cap
        charset = resp.charset or "utf-8"
        try:
            text = data.decode(charset, errors="replace")
        except LookupError:
            text = data.decode("utf-8", errors="replace")
        return HttpResponse(
            request_id=req.request_id,
            status=resp.status,
            headers=self._headers(resp),
            body=text,  # redacted, then cut to the cap, by fetch()
            truncated=truncated,
            final_url=str(resp.url.with_user(None)),
        )

    def _headers(self, resp: aiohttp.ClientResponse) -> dict[str, str]:
        out: dict[str, str] = {}
        budget = self.spec.max_response_header_bytes
        for name, value in resp.headers.items():
            budget -= len(name) + len(value)
            if budget < 0:
                break
            out[name] = f"{out[name]}, {value}" if name in out else value
        return out


def _follow(out: _Outgoing, status: int, location: str) -> _Outgoing:
    """The request for the next hop of a redirect (RFC 9110 15.4, as browsers do)."""
    try:
        url = out.url.join(URL(location)).with_fragment(None).with_user(None)
    except (ValueError, TypeError) as exc:
        raise _Refused("invalid", f"the server redirected to an invalid URL: {exc}") from None
    method, body, headers = out.method, out.body, dict(out.headers)
    credential_body = out.credential_body
    if (status == 303 and method != "HEAD") or (status in (301, 302) and method == "POST"):
        method, body, credential_body = "GET", None, False
        headers = {k: v for k, v in headers.items() if k.lower() not in ("content-type", "content-encoding")}
    credential_headers = set(out.credential_headers)
    if _origin(url) != _origin(out.url):
        drop = credential_headers | SENSITIVE_HEADERS
        headers = {k: v for k, v in headers.items() if k.lower() not in drop}
        credential_headers = set()
        if credential_body:
            raise _Refused(
                "credential",
                f"the server redirected ({status}) to another origin, {url.host!r}, which would receive "
                "the credential in the body; call that URL directly if it is intended",
            )
    return _Outgoing(method, url, headers, body, credential_headers, credential_body)


def _origin(url: URL) -> tuple[str, str, int | None]:
    return (url.scheme.lower(), (url.raw_host or "").lower().rstrip("."), url.port)
