"""The agent's only way to a model: a request to the vault on ``legion.vault.<agent>.llm``.

The agent holds no provider key and never imports LiteLLM. A refusal or failure comes back as a
:class:`ModelError` whose ``code`` is the vault's (``budget``, ``policy``, ``provider``, ...).

While the vault is restarting (no responders, or no answer because it died with the call), the
request is sent again with the same request id, backing off, for up to ``retry_window_s``: a vault
crash no longer fails every task in flight. The vault does not yet recognise a repeated request id,
so a call it had already sent to the provider when it died is sent again (docs/agents.md).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final

import structlog

from legion.broker import Broker, new_id
from legion.contracts import subjects as subj
from legion.contracts.errors import LegionError, RequestTimeout, Unavailable
from legion.contracts.service import ServiceError
from legion.contracts.vault import BudgetQuery, BudgetStatus, LlmError, LlmReply, LlmRequest

__all__ = ["RETRY_BACKOFF_S", "ModelError", "VaultClient"]

RETRY_BACKOFF_S: Final = (0.2, 0.5, 1.0, 2.0, 5.0)
log = structlog.get_logger("legion.actors.agent.llm")


class ModelError(LegionError):
    """The vault did not answer with a reply. ``code``: the vault's error code, or ``unavailable``."""

    def __init__(self, code: str, message: str, *, retryable: bool = False) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.retryable = retryable


@dataclass(slots=True)
class VaultClient:
    broker: Broker
    agent: str
    model: str
    project: str = ""
    timeout_s: float = 180.0
    max_tokens: int | None = None
    retry_window_s: float = 60.0  # how long to keep asking a vault that is down or restarting
    on_retry: Callable[[int, str], None] | None = None  # (attempt, why): for logs and tests

    async def complete(
        self,
        messages: list[dict[str, Any]],
        *,
        tools: list[dict[str, Any]] | None = None,
        stream_session: str = "",
        trace: str | None = None,
    ) -> LlmReply:
        if not self.model:
            raise ModelError("policy", f"agent {self.agent} has no model; set agents.{self.agent}.model in legion.yaml")
        request = LlmRequest(
            request_id=new_id(),
            model=self.model,
            messages=messages,
            tools=tools or None,
            max_tokens=self.max_tokens,
            stream=bool(stream_session),
            session=stream_session,
            project=self.project,
        )
        reply = await self._request(request, trace)
        if isinstance(reply, LlmReply):
            return reply
        if isinstance(reply, LlmError):
            raise ModelError(reply.code, reply.message, retryable=reply.retryable)
        if isinstance(reply, ServiceError):
            raise ModelError(reply.code, reply.message, retryable=reply.retryable)
        raise ModelError("internal", f"unexpected reply {type(reply).__name__} from the vault")

    async def _request(self, request: LlmRequest, trace: str | None) -> object:
        """Ask the vault; while it is down or restarting, ask again with the same request id."""
        subject = subj.VAULT_LLM.render(agent=self.agent)
        deadline = time.monotonic() + self.retry_window_s
        attempt = 0
        while True:
            try:
                return await self.broker.request(subject, request, trace=trace, timeout=self.timeout_s)
            except Unavailable as exc:
                why, error = (
                    "unavailable",
                    ModelError("unavailable", f"the vault is not running: {exc}", retryable=True),
                )
            except RequestTimeout:
                why = "timeout"
                error = ModelError("timeout", f"the vault did not answer within {self.timeout_s:g}s", retryable=True)
            delay = RETRY_BACKOFF_S[min(attempt, len(RETRY_BACKOFF_S) - 1)]
            if time.monotonic() + delay > deadline:
                raise error
            attempt += 1
            log.warning("agent.vault_retry", attempt=attempt, why=why, request_id=request.request_id)
            if self.on_retry is not None:
                self.on_retry(attempt, why)
            await asyncio.sleep(delay)

    async def budget(self) -> dict[str, Any]:
        """The agent's own limits and spend, from the vault (for ``get_system_status``)."""
        subject = subj.VAULT_BUDGET.render(agent=self.agent)
        try:
            reply = await self.broker.request(subject, BudgetQuery(request_id=new_id()), timeout=10.0)
        except (Unavailable, RequestTimeout) as exc:
            raise ModelError("unavailable", f"the vault did not answer: {exc}", retryable=True) from exc
        if not isinstance(reply, BudgetStatus):
            message = getattr(reply, "message", type(reply).__name__)
            raise ModelError(str(getattr(reply, "code", "internal")), str(message))

        def usd(value: object) -> str | None:
            return None if value is None else str(value)

        return {
            "daily_usd": usd(reply.daily_usd),
            "monthly_usd": usd(reply.monthly_usd),
            "spent_today_usd": usd(reply.spent_today_usd),
            "spent_month_usd": usd(reply.spent_month_usd),
            "left_today_usd": usd(reply.left_today_usd),
            "left_month_usd": usd(reply.left_month_usd),
        }
