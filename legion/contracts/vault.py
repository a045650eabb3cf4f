"""The vault's LLM contracts (``legion.vault.<agent>.llm``), token stream chunks and the vault's events."""

from __future__ import annotations

from decimal import Decimal
from typing import Any, Final, Literal

import msgspec

from legion.contracts.base import Event, Reply, Request

__all__ = [
    "LLM_ERROR_CODES",
    "BudgetQuery",
    "BudgetStatus",
    "LlmChunk",
    "LlmError",
    "LlmErrorCode",
    "LlmRefused",
    "LlmReply",
    "LlmRequest",
    "ModelCalled",
]

LlmErrorCode = Literal[
    "denied", "policy", "invalid", "budget", "provider", "timeout", "internal", "busy", "rate_limited"
]
"""Why the vault did not answer with an :class:`LlmReply` (see :class:`LlmError`)."""

LLM_ERROR_CODES: Final[frozenset[str]] = frozenset(
    ("denied", "policy", "invalid", "budget", "provider", "timeout", "internal", "busy", "rate_limited")
)


class LlmRequest(Request, frozen=True, kw_only=True, tag="llm.request.v1"):
    """Ask the vault to call a model alias on the agent's behalf. The agent never sees a key."""

    request_id: str
    model: str
    messages: list[dict[str, Any]]
    tools: list[dict[str, Any]] | None = None
    max_tokens: int | None = None
    temperature: float | None = None
    stream: bool = False
    session: str = ""
    project: str = ""
    """The project billed for the call; one of the agent's ``projects`` in legion.yaml. Empty: the
    agent's only project if it has exactly one, else no project (only the agent's budgets apply)."""


class LlmReply(Reply, frozen=True, kw_only=True, tag="llm.reply.v1"):
    request_id: str
    model: str
    content: str | None = None
    tool_calls: list[dict[str, Any]] = msgspec.field(default_factory=list)
    finish_reason: str = "stop"
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_usd: Decimal = Decimal(0)


class LlmChunk(Event, frozen=True, kw_only=True, tag="llm.chunk.v1"):
    """A token delta on ``legion.stream.<agent>.<session>`` (core NATS, not stored)."""

    request_id: str
    index: int
    delta: str
    done: bool = False


class LlmError(Reply, frozen=True, kw_only=True, tag="llm.error.v1"):
    """The vault could not answer. ``code`` is one of :data:`LLM_ERROR_CODES`:

    - ``denied``: the request cannot be attributed to the agent of its subject (it did not come
      through the AGENTS service import, or came from another agent or account);
    - ``policy``: legion.yaml forbids it (the agent may not call models, or this model, or bill
      this project; the model has no known price);
    - ``invalid``: a malformed request (``max_tokens`` <= 0, a stream without a valid session), or
      one the provider rejected as invalid;
    - ``budget``: the ledger refused the reservation, or did not answer (``retryable``);
    - ``provider``: every model of the failover chain failed, is cooling down, or has no key;
    - ``timeout``: the last model tried did not answer in time;
    - ``internal``: a bug in the vault (the message names the error type only);
    - ``busy``: the agent's own calls fill its share of the vault (``concurrency`` in progress and
      ``queue`` waiting, ``agents.<a>.quota`` / ``runtime.vault.agent_quota``), or the vault's cap
      (``runtime.vault.concurrency``) is full; ``retryable``, the message names the key to raise;
    - ``rate_limited``: the agent started more calls than its ``rate_per_s`` / ``burst`` allow and
      its queue is full; ``retryable``.
    """

    request_id: str
    code: str
    message: str
    retryable: bool = False


class ModelCalled(Event, frozen=True, kw_only=True, tag="model.called.v1"):
    """Recorded by the vault after every model call (never contains a key)."""

    request_id: str
    agent: str
    model: str
    provider_model: str = ""
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_usd: Decimal = Decimal(0)
    latency_ms: float = 0.0
    ok: bool = True


class LlmRefused(Event, frozen=True, kw_only=True, tag="llm.refused.v1"):
    """Recorded by the vault for a call it refused before reaching a model; ``code`` as in :class:`LlmError`.

    ``agent`` is the agent of the subject; ``claimed`` what the server said the caller is (``name_tag``
    of its JWT), which differs from ``agent`` when someone asked as another agent.
    """

    request_id: str
    agent: str
    model: str = ""
    code: str
    reason: str
    claimed: str = ""


class BudgetQuery(Request, frozen=True, kw_only=True, tag="budget.query.v1"):
    """An agent asks (on ``legion.vault.<agent>.budget``) what its own budget allows and what it spent."""

    request_id: str = ""


class BudgetStatus(Reply, frozen=True, kw_only=True, tag="budget.status.v1"):
    """The agent's own limits from legion.yaml (None: no limit) and its spend today and this month (UTC)."""

    agent: str
    daily_usd: Decimal | None = None
    monthly_usd: Decimal | None = None
    spent_today_usd: Decimal = Decimal(0)
    spent_month_usd: Decimal = Decimal(0)
    left_today_usd: Decimal | None = None
    left_month_usd: Decimal | None = None
