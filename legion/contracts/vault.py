"""The vault's request/reply contracts (``legion.vault.<agent>.llm``) and token stream chunks."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import msgspec

from legion.contracts.base import Event, Reply, Request

__all__ = ["LlmChunk", "LlmError", "LlmReply", "LlmRequest", "ModelCalled"]


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
    """The vault could not answer. ``code`` is one of: policy, budget, provider, timeout, invalid."""

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
