"""The vault's credentialed HTTP contracts (``legion.vault.<agent>.http``).

An agent asks the vault to make an HTTP call for it. Agent-tier credentials appear only as handles,
``$CRED{name}``, in the URL, header values and body; the vault substitutes the values (if the agent's
policy allows them), refuses private and internal destinations (SSRF), and redacts every credential
value from what it sends back, so the agent never holds a secret.
"""

from __future__ import annotations

from typing import Final, Literal

import msgspec

from legion.contracts.base import Reply, Request

__all__ = ["HTTP_ERROR_CODES", "HttpError", "HttpErrorCode", "HttpRequest", "HttpResponse"]

HttpErrorCode = Literal[
    "ssrf", "policy", "credential", "timeout", "too_large", "network", "invalid", "busy", "rate_limited"
]
"""Why the vault did not answer with an :class:`HttpResponse` (see :class:`HttpError`)."""

HTTP_ERROR_CODES: Final[frozenset[str]] = frozenset(
    ("ssrf", "policy", "credential", "timeout", "too_large", "network", "invalid", "busy", "rate_limited")
)


class HttpRequest(Request, frozen=True, kw_only=True, tag="http.request.v1"):
    """Ask the vault to make an HTTP call. ``$CRED{name}`` handles are replaced by the vault."""

    request_id: str
    method: str = "GET"
    url: str
    headers: dict[str, str] = msgspec.field(default_factory=dict)
    body: str | None = None
    """The request body as text (sent UTF-8 encoded); None sends no body."""
    timeout_s: float | None = None
    """Total time for the call, redirects and body included; capped by the vault (default 15 s)."""


class HttpResponse(Reply, frozen=True, kw_only=True, tag="http.response.v1"):
    """The final response after redirects. Every credential value is redacted to ``$CRED{name}``."""

    request_id: str
    status: int
    headers: dict[str, str] = msgspec.field(default_factory=dict)
    """Response headers; a header sent more than once has its values joined with ', '."""
    body: str = ""
    """The body decoded as text (the response charset, else UTF-8, undecodable bytes replaced)."""
    truncated: bool = False
    """True when the body was longer than the vault's cap (default 1 MiB) and was cut."""
    final_url: str = ""


class HttpError(Reply, frozen=True, kw_only=True, tag="http.error.v1"):
    """The vault made no call, or the call failed.

    ``code`` is one of :data:`HTTP_ERROR_CODES`: ``ssrf`` (a destination that resolves to a private,
    loopback, link-local or otherwise internal address, or a scheme other than http/https),
    ``policy`` (the agent may not use the http API, too many redirects), ``credential`` (a
    ``$CRED{name}`` handle the agent may not use or the vault does not hold), ``timeout``,
    ``too_large`` (the request), ``network`` (DNS, connection, TLS), ``invalid`` (a malformed request),
    ``busy`` and ``rate_limited`` (the agent's share of the vault is used up, as for :class:`LlmError`;
    ``retryable``).
    """

    request_id: str
    code: str
    message: str
    retryable: bool = False
