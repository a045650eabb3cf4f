"""http_request: HTTP through the vault's credentialed proxy (``legion.vault.<agent>.http``).

The agent has no network route of its own and holds no secret: it names credentials as
``$CRED{name}`` handles, the vault substitutes the values it allows, refuses internal destinations
and redacts the values from the response. The call's key travels as ``Idempotency-Key`` so an API
that honours it performs a call repeated after a crash once.
"""

from __future__ import annotations

from typing import Any, Final, Literal

from pydantic import Field, field_validator

from legion.actors.agent.sanitize import strip_invisible, strip_invisible_deep
from legion.actors.agent.tools.base import Params, Tool, ToolContext, ToolError, ToolErrorCode
from legion.broker import Broker
from legion.contracts import subjects as subj
from legion.contracts.errors import ContractError, PermissionDenied, RequestTimeout, Unavailable
from legion.contracts.http import HttpError, HttpRequest, HttpResponse
from legion.contracts.service import ServiceError

__all__ = ["BODY_CAP", "IDEMPOTENCY_HEADER", "http_tool"]

BODY_CAP: Final = 12_000
"""Characters of a response body the model sees (the tool result as a whole is capped at 16,000)."""
IDEMPOTENCY_HEADER: Final = "Idempotency-Key"
_REPLY_MARGIN_S: Final = 5.0
_CODES: Final[dict[str, ToolErrorCode]] = {
    "ssrf": "denied",
    "policy": "denied",
    "credential": "denied",
    "timeout": "timeout",
    "too_large": "invalid_args",
    "invalid": "invalid_args",
    "network": "failed",
}

Method = Literal["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"]


class HttpParams(Params):
    method: Method = Field("GET", description="HTTP method")
    url: str = Field(description="http(s) URL; may contain $CRED{name} handles")
    headers: dict[str, str] = Field(default_factory=dict, description="Request headers; values may use $CRED{name}")
    body: str | None = Field(None, description="Request body as text; may contain $CRED{name} handles")
    timeout_s: float = Field(30.0, gt=0, le=120, description="Total time for the call")

    @field_validator("method", mode="before")
    @classmethod
    def _upper(cls, value: object) -> object:
        return value.upper() if isinstance(value, str) else value


def _result(reply: HttpResponse) -> dict[str, Any]:
    body = strip_invisible(reply.body)
    out: dict[str, Any] = {
        "status": reply.status,
        "headers": strip_invisible_deep(reply.headers),
        "body": body[:BODY_CAP],
        "final_url": reply.final_url,
    }
    if len(body) > BODY_CAP or reply.truncated:
        out["truncated"] = True
        out["note"] = f"body cut to {min(len(body), BODY_CAP)} characters; ask for less (a range, a page, a filter)"
    return out


def http_tool(broker: Broker, agent: str) -> Tool:
    """The http_request tool of ``agent``, answered by the vault."""
    subject = subj.VAULT_HTTP.render(agent=agent)

    async def http_request(p: HttpParams, ctx: ToolContext) -> dict[str, Any]:
        headers = dict(p.headers)
        if not any(k.lower() == IDEMPOTENCY_HEADER.lower() for k in headers):
            headers[IDEMPOTENCY_HEADER] = ctx.call_key
        req = HttpRequest(
            request_id=ctx.call_key, method=p.method, url=p.url, headers=headers, body=p.body, timeout_s=p.timeout_s
        )
        try:
            reply = await broker.request(
                subject,
                req,
                reply_type=(HttpResponse, HttpError, ServiceError),
                trace=ctx.trace or None,
                timeout=p.timeout_s + _REPLY_MARGIN_S,
            )
        except PermissionDenied:
            raise ToolError("denied", "your credential may not use the HTTP proxy") from None
        except Unavailable:
            raise ToolError(
                "unavailable", "the vault is not running, so no HTTP call can be made", retryable=True
            ) from None
        except RequestTimeout:
            raise ToolError("timeout", f"no answer from the vault within {p.timeout_s:g}s", retryable=True) from None
        except ContractError as exc:
            raise ToolError("failed", f"the vault answered with something unexpected: {exc}") from None
        if isinstance(reply, HttpResponse):
            return _result(reply)
        if isinstance(reply, HttpError):
            code = _CODES.get(reply.code, "failed")
            raise ToolError(code, f"{reply.code}: {strip_invisible(reply.message)}", retryable=reply.retryable)
        assert isinstance(reply, ServiceError)
        raise ToolError("failed", f"the vault could not handle the request ({reply.code}): {reply.message}")

    return Tool(
        "http_request",
        "Make an HTTP request through Legion's vault. Never put secrets in the call: reference a "
        "credential by name as $CRED{name} in the URL, a header value or the body (for example "
        "Authorization: Bearer $CRED{github}); the vault fills it in if you are allowed to use it and "
        "hides it in the response. Internal and private addresses are refused.",
        HttpParams,
        http_request,
        side_effects=True,
        group="http",
    )
