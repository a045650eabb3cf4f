"""One model call through LiteLLM, whole or streamed, and what its failures mean.

LiteLLM never retries here (``num_retries=0`` and the OpenAI client's ``max_retries=0``): the vault
fails over itself. Usage comes from the provider; when it reports none (a stream without a usage
chunk, or a body without ``usage``), tokens are counted with ``litellm.token_counter`` so that no
call goes unbilled. Error texts leave this module scrubbed of every key.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from legion.actors.vault._litellm import errors, litellm
from legion.actors.vault.health import FailureKind
from legion.actors.vault.offline import estimate_prompt_tokens, estimate_tokens, is_offline, offline_reply, split_deltas
from legion.actors.vault.policy import ModelRoute
from legion.contracts.errors import LegionError

__all__ = [
    "Attempt",
    "Completion",
    "ProviderFailure",
    "classify",
    "complete",
    "count_prompt_tokens",
    "count_text_tokens",
]

ErrorCode = Literal["provider", "timeout", "invalid"]
Scrub = Callable[[str], str]
OnDelta = Callable[[str], Awaitable[None]]

_MAX_MESSAGE = 500


@dataclass(frozen=True, slots=True)
class Attempt:
    """One call of one alias (the key is passed in, never stored on the result)."""

    route: ModelRoute
    messages: Sequence[Mapping[str, Any]]
    max_tokens: int
    tools: Sequence[Mapping[str, Any]] | None = None
    temperature: float | None = None
    stream: bool = False


@dataclass(frozen=True, slots=True)
class Completion:
    content: str | None
    tool_calls: list[dict[str, Any]]
    finish_reason: str
    prompt_tokens: int
    completion_tokens: int
    usage_reported: bool


class ProviderFailure(LegionError):
    """A failed attempt. ``message`` is already scrubbed; the tokens are what must still be billed.

    ``streamed``: deltas were already published, so failing over would repeat them to the listener.
    """

    def __init__(
        self,
        *,
        kind: FailureKind,
        code: ErrorCode,
        message: str,
        status: int | None = None,
        prompt_tokens: int = 0,
        completion_tokens: int = 0,
        streamed: bool = False,
    ) -> None:
        super().__init__(message)
        self.kind = kind
        self.code: ErrorCode = code
        self.message = message
        self.status = status
        self.prompt_tokens = prompt_tokens
        self.completion_tokens = completion_tokens
        self.streamed = streamed
        self.retryable = kind is FailureKind.TRANSIENT


def classify(exc: BaseException) -> tuple[FailureKind, ErrorCode, int | None]:
    """How a LiteLLM (or asyncio) error bears on the model's health, and the reply's error code."""
    if isinstance(exc, TimeoutError | errors.Timeout):
        return FailureKind.TRANSIENT, "timeout", 408
    status = getattr(exc, "status_code", None)
    status = status if isinstance(status, int) else None
    if status in (401, 402, 403) or isinstance(exc, errors.AuthenticationError | errors.PermissionDeniedError):
        return FailureKind.AUTH, "provider", status
    transient = (
        errors.RateLimitError,
        errors.APIConnectionError,
        errors.InternalServerError,
        errors.ServiceUnavailableError,
        errors.MidStreamFallbackError,
    )
    if isinstance(exc, transient) or status in (408, 409, 429) or (status is not None and status >= 500):
        return FailureKind.TRANSIENT, "provider", status
    if isinstance(exc, errors.BadRequestError | errors.NotFoundError) or (status is not None and 400 <= status < 500):
        return FailureKind.REQUEST, "invalid", status
    return FailureKind.TRANSIENT, "provider", status


def count_prompt_tokens(model: str, messages: Sequence[Mapping[str, Any]], tools: Sequence[Any] | None) -> int:
    if is_offline(model):
        return estimate_prompt_tokens(messages, tools)
    try:
        return int(litellm.token_counter(model=model, messages=list(messages), tools=list(tools) if tools else None))
    except Exception:  # noqa: BLE001 - odd content must not make a call unbillable: estimate instead
        return max(1, len(json.dumps(list(messages), default=str)) // 4)


def count_text_tokens(model: str, text: str) -> int:
    if not text:
        return 0
    if is_offline(model):
        return estimate_tokens(text)
    try:
        return int(litellm.token_counter(model=model, text=text))
    except Exception:  # noqa: BLE001 - as above
        return max(1, len(text) // 4)


def _kwargs(attempt: Attempt, api_key: str | None) -> dict[str, Any]:
    route = attempt.route
    kwargs: dict[str, Any] = {
        **route.params,
        "model": route.model,
        "messages": list(attempt.messages),
        "max_tokens": attempt.max_tokens,
        "timeout": route.timeout_s,
        "num_retries": 0,
        "max_retries": 0,
    }
    if route.api_base:
        kwargs["api_base"] = route.api_base
    if api_key:
        kwargs["api_key"] = api_key
    if attempt.tools:
        kwargs["tools"] = list(attempt.tools)
    if attempt.temperature is not None:
        kwargs["temperature"] = attempt.temperature
    kwargs["stream"] = attempt.stream  # never left to params: the parsing below depends on it
    if attempt.stream:
        kwargs["stream_options"] = {"include_usage": True}
    else:
        kwargs.pop("stream_options", None)
    return kwargs


def _tool_call_dict(call: Any) -> dict[str, Any]:
    fn = getattr(call, "function", None)
    return {
        "id": getattr(call, "id", None) or "",
        "type": getattr(call, "type", None) or "function",
        "function": {"name": getattr(fn, "name", None) or "", "arguments": getattr(fn, "arguments", None) or ""},
    }


@dataclass(slots=True)
class _Stream:
    """What a stream has delivered so far."""

    text: list[str] = field(default_factory=list)
    calls: dict[int, dict[str, Any]] = field(default_factory=dict)
    finish_reason: str = "stop"
    usage: tuple[int, int] | None = None
    published: bool = False

    def add_tool_delta(self, delta: Any) -> None:
        index = getattr(delta, "index", None) or 0
        call = self.calls.setdefault(index, {"id": "", "type": "function", "function": {"name": "", "arguments": ""}})
        if getattr(delta, "id", None):
            call["id"] = delta.id
        fn = getattr(delta, "function", None)
        if fn is not None:
            if getattr(fn, "name", None):
                call["function"]["name"] = fn.name
            if getattr(fn, "arguments", None):
                call["function"]["arguments"] += fn.arguments

    def generated(self) -> str:
        return "".join(self.text) + "".join(c["function"]["arguments"] for c in self.calls.values())


def _usage_of(obj: Any) -> tuple[int, int] | None:
    usage = getattr(obj, "usage", None)
    prompt = getattr(usage, "prompt_tokens", None)
    completion = getattr(usage, "completion_tokens", None)
    if isinstance(prompt, int) and isinstance(completion, int):
        return prompt, completion
    return None


async def _whole(kwargs: dict[str, Any], attempt: Attempt) -> Completion:
    response = await litellm.acompletion(**kwargs)
    choice = response.choices[0]
    message = choice.message
    calls = [_tool_call_dict(c) for c in (getattr(message, "tool_calls", None) or [])]
    content = getattr(message, "content", None)
    usage = _usage_of(response)
    if usage is None:
        model = attempt.route.model
        text = (content or "") + "".join(c["function"]["arguments"] for c in calls)
        usage = (count_prompt_tokens(model, attempt.messages, attempt.tools), count_text_tokens(model, text))
    return Completion(
        content=content,
        tool_calls=calls,
        finish_reason=getattr(choice, "finish_reason", None) or "stop",
        prompt_tokens=usage[0],
        completion_tokens=usage[1],
        usage_reported=_usage_of(response) is not None,
    )


async def _streamed(kwargs: dict[str, Any], attempt: Attempt, state: _Stream, on_delta: OnDelta | None) -> Completion:
    stream = await litellm.acompletion(**kwargs)
    async for chunk in stream:
        usage = _usage_of(chunk)
        if usage is not None:
            state.usage = usage
        for choice in getattr(chunk, "choices", None) or []:
            delta = getattr(choice, "delta", None)
            text = getattr(delta, "content", None)
            if text:
                state.text.append(text)
                if on_delta is not None:
                    state.published = True
                    await on_delta(text)
            for call in getattr(delta, "tool_calls", None) or []:
                state.add_tool_delta(call)
            if getattr(choice, "finish_reason", None):
                state.finish_reason = choice.finish_reason
    usage = state.usage
    if usage is None:  # a stream that ends without usage is still charged
        model = attempt.route.model
        prompt = count_prompt_tokens(model, attempt.messages, attempt.tools)
        usage = (prompt, count_text_tokens(model, state.generated()))
    text = "".join(state.text)
    return Completion(
        content=text if text or not state.calls else None,
        tool_calls=[state.calls[i] for i in sorted(state.calls)],
        finish_reason=state.finish_reason,
        prompt_tokens=usage[0],
        completion_tokens=usage[1],
        usage_reported=state.usage is not None,
    )


async def _offline(attempt: Attempt, on_delta: OnDelta | None) -> Completion:
    """The built-in offline model (:mod:`.offline`): no LiteLLM, no network, the same Completion."""
    text = offline_reply(attempt.messages)
    if attempt.stream and on_delta is not None:
        for delta in split_deltas(text):
            await on_delta(delta)
    return Completion(
        content=text,
        tool_calls=[],
        finish_reason="stop",
        prompt_tokens=estimate_prompt_tokens(attempt.messages, attempt.tools),
        completion_tokens=estimate_tokens(text),
        usage_reported=False,
    )


async def complete(
    attempt: Attempt, *, api_key: str | None, scrub: Scrub, on_delta: OnDelta | None = None
) -> Completion:
    """Call the model once; raises :class:`ProviderFailure` (scrubbed) on any provider error."""
    if is_offline(attempt.route.model):
        return await _offline(attempt, on_delta)
    kwargs = _kwargs(attempt, api_key)
    state = _Stream()
    error: BaseException | None = None
    try:
        async with asyncio.timeout(attempt.route.timeout_s):
            if attempt.stream:
                return await _streamed(kwargs, attempt, state, on_delta)
            return await _whole(kwargs, attempt)
    except asyncio.CancelledError:
        raise
    except Exception as exc:  # noqa: BLE001 - every provider error becomes a ProviderFailure below
        error = exc
    del kwargs  # the key goes no further than this frame
    kind, code, status = classify(error)
    detail = scrub(f"{type(error).__name__}: {error}".strip())
    if len(detail) > _MAX_MESSAGE:
        detail = detail[: _MAX_MESSAGE - 3] + "..."
    partial = state.generated()
    prompt = completion = 0
    if partial:  # output was produced before the break: bill what was delivered
        model = attempt.route.model
        prompt = count_prompt_tokens(model, attempt.messages, attempt.tools)
        completion = count_text_tokens(model, partial)
    raise ProviderFailure(
        kind=kind,
        code=code,
        message=detail,
        status=status,
        prompt_tokens=prompt,
        completion_tokens=completion,
        streamed=state.published,
    )
