"""A scripted, OpenAI-compatible chat-completions server on 127.0.0.1 for tests.

    async with FakeLlmServer() as llm:
        llm.script(Reply(text="hi", prompt_tokens=10, completion_tokens=5))
        await litellm.acompletion(model="openai/any", api_base=llm.base_url, api_key="sk-test", ...)
        assert llm.requests[0].api_key == "sk-test"

Each request takes the next scripted response for its model, then the next shared one, then the
`always` fallback; with nothing scripted it answers "echo: <last user message>".
"""

from __future__ import annotations

import asyncio
import itertools
import json
import re
import socket
import time
from collections import deque
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Self, TypeAlias

from aiohttp import web

__all__ = ["FakeLlmServer", "LlmErrorReply", "RecordedRequest", "Reply", "ScriptedResponse", "ToolCall"]

_HOST = "127.0.0.1"
_SHUTDOWN_GRACE = 1.0  # seconds given to in-flight handlers before they are cancelled on stop


@dataclass(frozen=True, kw_only=True, slots=True)
class ToolCall:
    """A function call the fake model asks for. A `str` `arguments` is sent raw (e.g. broken JSON)."""

    name: str
    arguments: Mapping[str, Any] | str = field(default_factory=dict)
    id: str | None = None  # None: a deterministic "call_fake_<n>"


@dataclass(frozen=True, kw_only=True, slots=True)
class Reply:
    """A successful completion.

    Token counts default to a word count of the prompt and of the reply. `disconnect_after` closes the
    connection after that many streamed deltas (0: after the role chunk, before the first token); a
    non-streaming request then gets no response at all.
    """

    text: str = ""
    tool_calls: Sequence[ToolCall] = ()
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    finish_reason: str | None = None  # None: "tool_calls" if there are any, else "stop"
    latency: float | None = None  # seconds before responding; None: the server's default
    report_usage: bool | None = None  # None: the server's default
    disconnect_after: int | None = None
    gate: asyncio.Event | None = None  # held (in flight) until the test sets it


@dataclass(frozen=True, kw_only=True, slots=True)
class LlmErrorReply:
    """An HTTP error with an OpenAI-style `{"error": {...}}` body; defaults follow the status.

    LiteLLM classifies by the body text before the status: "rate limit" anywhere is a RateLimitError,
    and a 401 typed "invalid_request_error" is a BadRequestError unless its message says "Incorrect
    API key provided" (OpenAI's, and our default). A custom 401 message wants another `error_type`.
    """

    status: int
    message: str | None = None
    error_type: str | None = None
    code: str | None = None
    retry_after: float | None = None  # sent as a Retry-After header when set
    latency: float | None = None


ScriptedResponse: TypeAlias = Reply | LlmErrorReply

_ERROR_DEFAULTS: dict[int, tuple[str, str, str | None]] = {
    400: ("Bad request (fake).", "invalid_request_error", None),
    401: ("Incorrect API key provided (fake).", "invalid_request_error", "invalid_api_key"),
    403: ("Permission denied (fake).", "permission_error", None),
    404: ("The model does not exist (fake).", "invalid_request_error", "model_not_found"),
    429: ("Rate limit reached (fake).", "requests", "rate_limit_exceeded"),
    500: ("The server had an error while processing your request (fake).", "server_error", None),
    503: ("The engine is currently overloaded (fake).", "server_error", None),
}


@dataclass(frozen=True, kw_only=True, slots=True)
class RecordedRequest:
    """One chat request as received: its JSON body and its headers (names lower-cased)."""

    body: Mapping[str, Any]
    headers: Mapping[str, str]

    @property
    def authorization(self) -> str | None:
        return self.headers.get("authorization")

    @property
    def api_key(self) -> str | None:
        auth = self.authorization
        return auth.removeprefix("Bearer ") if auth is not None else None

    @property
    def model(self) -> str | None:
        model = self.body.get("model")
        return model if isinstance(model, str) else None


class FakeLlmServer:
    """OpenAI-compatible `POST /v1/chat/completions` on a free port of 127.0.0.1.

    `latency` and `report_usage` are defaults each scripted response may override. Usage is streamed
    only when the request asks with `stream_options={"include_usage": true}`, like OpenAI.
    """

    def __init__(self, *, latency: float = 0.0, report_usage: bool = True) -> None:
        self._latency = latency
        self._report_usage = report_usage
        self._shared: deque[ScriptedResponse] = deque()
        self._per_model: dict[str, deque[ScriptedResponse]] = {}
        self._always: dict[str | None, ScriptedResponse] = {}
        self._requests: list[RecordedRequest] = []
        self._arrived = asyncio.Condition()
        self.in_flight = 0
        """Requests received and not yet answered."""
        self.max_in_flight = 0
        """The most requests that were in flight at once."""
        self._ids = itertools.count(1)
        self._runner: web.AppRunner | None = None
        self._base_url: str | None = None

    async def start(self) -> None:
        if self._runner is not None:
            raise RuntimeError("FakeLlmServer is already started; call stop() before starting it again")
        app = web.Application()
        app.router.add_post("/v1/chat/completions", self._handle_chat)
        # handler_cancellation: a client that gives up (e.g. a timeout) stops its handler, as on a real server
        runner = web.AppRunner(app, access_log=None, shutdown_timeout=_SHUTDOWN_GRACE, handler_cancellation=True)
        await runner.setup()
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            sock.bind((_HOST, 0))
            await web.SockSite(runner, sock).start()
        except BaseException:
            sock.close()
            await runner.cleanup()
            raise
        self._runner = runner
        self._base_url = f"http://{_HOST}:{sock.getsockname()[1]}/v1"

    async def stop(self) -> None:
        """Stop serving; in-flight requests get a short grace period. Safe to call twice."""
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.stop()

    @property
    def base_url(self) -> str:
        """E.g. "http://127.0.0.1:41234/v1": LiteLLM's `api_base` for model "openai/<anything>"."""
        if self._base_url is None:
            raise RuntimeError("FakeLlmServer has no address yet; use `async with` or await start() first")
        return self._base_url

    def script(self, *responses: ScriptedResponse, model: str | None = None) -> None:
        """Queue responses, used once each in order.

        `model` keys them by the model name on the wire (LiteLLM strips the "openai/" prefix); a
        model's own queue and its `always` answer come before the shared queue.
        """
        queue = self._shared if model is None else self._per_model.setdefault(model, deque())
        queue.extend(responses)

    def always(self, response: ScriptedResponse, *, model: str | None = None) -> None:
        """Answer with `response` whenever the queues are empty (for `model`, or for every model)."""
        self._always[model] = response

    @property
    def requests(self) -> list[RecordedRequest]:
        """Every chat request received so far, oldest first (a copy)."""
        return list(self._requests)

    async def wait_for_requests(
        self,
        count: int,
        *,
        timeout: float = 5.0,
    ) -> list[RecordedRequest]:
        """Wait until at least `count` requests have arrived; raise TimeoutError after `timeout`."""
        try:
            async with asyncio.timeout(timeout), self._arrived:
                await self._arrived.wait_for(lambda: len(self._requests) >= count)
        except TimeoutError:
            raise TimeoutError(
                f"FakeLlmServer got {len(self._requests)} request(s) within {timeout}s, expected {count}; "
                "check the client's api_base and that the code under test calls the model"
            ) from None
        return self.requests

    async def _handle_chat(self, request: web.Request) -> web.StreamResponse:
        try:
            body = await request.json()
        except ValueError:
            body = None
        if not isinstance(body, dict):
            return _error_response(LlmErrorReply(status=400, message="The body must be a JSON object."))
        async with self._arrived:
            headers = {name.lower(): value for name, value in request.headers.items()}
            self._requests.append(RecordedRequest(body=body, headers=headers))
            self._arrived.notify_all()
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            return await self._answer(request, body)
        finally:
            self.in_flight -= 1

    async def _answer(self, request: web.Request, body: dict[str, Any]) -> web.StreamResponse:
        model = str(body.get("model", ""))
        response = self._next_response(model, body)
        latency = self._latency if response.latency is None else response.latency
        if latency > 0:
            await asyncio.sleep(latency)
        if isinstance(response, Reply) and response.gate is not None:
            await response.gate.wait()
        if isinstance(response, LlmErrorReply):
            return _error_response(response)
        completion = _Completion(
            id=f"chatcmpl-fake-{next(self._ids)}",
            model=model,
            reply=response,
            prompt_tokens=_prompt_tokens(body, response),
            report_usage=self._report_usage if response.report_usage is None else response.report_usage,
            call_ids=[call.id or f"call_fake_{next(self._ids)}" for call in response.tool_calls],
        )
        if body.get("stream") is True:
            options = body.get("stream_options")
            usage = isinstance(options, dict) and options.get("include_usage") is True
            return await _stream(request, completion, include_usage=usage)
        if response.disconnect_after is not None:
            return _disconnect(request)
        return web.json_response(completion.whole())

    def _next_response(self, model: str, body: Mapping[str, Any]) -> ScriptedResponse:
        own = self._per_model.get(model)
        if own:
            return own.popleft()
        if model in self._always:
            return self._always[model]
        if self._shared:
            return self._shared.popleft()
        if None in self._always:
            return self._always[None]
        return Reply(text=f"echo: {_last_user_text(body)}")


@dataclass(frozen=True, kw_only=True, slots=True)
class _Completion:
    """One reply rendered in OpenAI's wire format, whole or as stream chunks."""

    id: str
    model: str
    reply: Reply
    prompt_tokens: int
    report_usage: bool
    call_ids: list[str]
    created: int = field(default_factory=lambda: int(time.time()))

    @property
    def finish_reason(self) -> str:
        return self.reply.finish_reason or ("tool_calls" if self.reply.tool_calls else "stop")

    def usage(self) -> dict[str, int]:
        reply = self.reply
        completion = reply.completion_tokens
        if completion is None:
            completion = len(reply.text.split()) + sum(len(_arguments(c).split()) for c in reply.tool_calls)
        total = self.prompt_tokens + completion
        return {"prompt_tokens": self.prompt_tokens, "completion_tokens": completion, "total_tokens": total}

    def whole(self) -> dict[str, Any]:
        calls = self.reply.tool_calls
        message: dict[str, Any] = {
            "role": "assistant",
            "content": (self.reply.text or None) if calls else self.reply.text,
            "refusal": None,
        }
        if calls:
            message["tool_calls"] = [
                {"id": call_id, "type": "function", "function": {"name": c.name, "arguments": _arguments(c)}}
                for call_id, c in zip(self.call_ids, calls, strict=True)
            ]
        choice = {"index": 0, "message": message, "logprobs": None, "finish_reason": self.finish_reason}
        result = self._envelope("chat.completion", [choice])
        if self.report_usage:
            result["usage"] = self.usage()
        return result

    def deltas(self) -> Iterator[dict[str, Any]]:
        """The streamed pieces after the role chunk: words of the text, then each tool call."""
        for word in re.findall(r"\s*\S+", self.reply.text):
            yield {"content": word}
        for index, (call_id, call) in enumerate(zip(self.call_ids, self.reply.tool_calls, strict=True)):
            arguments = _arguments(call)
            head = {"index": index, "id": call_id, "type": "function"}
            yield {"tool_calls": [{**head, "function": {"name": call.name, "arguments": ""}}]}
            half = len(arguments) // 2
            for part in (arguments[:half], arguments[half:]):
                if part:
                    yield {"tool_calls": [{"index": index, "function": {"arguments": part}}]}

    def chunk(self, delta: dict[str, Any], finish_reason: str | None = None) -> dict[str, Any]:
        choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}
        return self._envelope("chat.completion.chunk", [choice])

    def _envelope(self, kind: str, choices: list[dict[str, Any]]) -> dict[str, Any]:
        return {
            "id": self.id,
            "object": kind,
            "created": self.created,
            "model": self.model,
            "system_fingerprint": "fp_fake",
            "choices": choices,
        }


async def _stream(request: web.Request, completion: _Completion, *, include_usage: bool) -> web.StreamResponse:
    response = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"})
    await response.prepare(request)

    async def send(payload: dict[str, Any] | str) -> None:
        if isinstance(payload, dict) and include_usage:  # OpenAI then puts "usage": null on every chunk
            payload = payload | {"usage": payload.get("usage")}
        data = payload if isinstance(payload, str) else json.dumps(payload)
        await response.write(f"data: {data}\n\n".encode())

    await send(completion.chunk({"role": "assistant", "content": ""}))
    cut = completion.reply.disconnect_after
    for sent, delta in enumerate(completion.deltas()):
        if sent == cut:
            return _disconnect(request, response)
        await send(completion.chunk(delta))
    if cut is not None:
        return _disconnect(request, response)
    await send(completion.chunk({}, completion.finish_reason))
    if include_usage and completion.report_usage:
        await send(completion.chunk({}) | {"choices": [], "usage": completion.usage()})
    await send("[DONE]")
    await response.write_eof()
    return response


def _disconnect(request: web.Request, response: web.StreamResponse | None = None) -> web.StreamResponse:
    """Drop the connection as a crashing server would; aiohttp writes nothing more on it."""
    if request.transport is not None:
        request.transport.abort()
    return response if response is not None else web.Response()


def _error_response(error: LlmErrorReply) -> web.Response:
    fallback_type = "server_error" if error.status >= 500 else "invalid_request_error"
    message, error_type, code = _ERROR_DEFAULTS.get(error.status, ("Fake error.", fallback_type, None))
    body = {
        "error": {
            "message": error.message or message,
            "type": error.error_type or error_type,
            "param": None,
            "code": error.code or code,
        }
    }
    headers = {"Retry-After": f"{error.retry_after:g}"} if error.retry_after is not None else None
    return web.json_response(body, status=error.status, headers=headers)


def _arguments(call: ToolCall) -> str:
    return call.arguments if isinstance(call.arguments, str) else json.dumps(dict(call.arguments))


def _messages(body: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    messages = body.get("messages")
    return [m for m in messages if isinstance(m, dict)] if isinstance(messages, list) else []


def _text_of(message: Mapping[str, Any]) -> str:
    """The text of a message: its string content, or the text parts of a list of parts."""
    content = message.get("content")
    if isinstance(content, list):
        return " ".join(p["text"] for p in content if isinstance(p, dict) and isinstance(p.get("text"), str))
    return content if isinstance(content, str) else ""


def _last_user_text(body: Mapping[str, Any]) -> str:
    return next((_text_of(m) for m in reversed(_messages(body)) if m.get("role") == "user"), "")


def _prompt_tokens(body: Mapping[str, Any], reply: Reply) -> int:
    if reply.prompt_tokens is not None:
        return reply.prompt_tokens
    return max(sum(len(_text_of(m).split()) for m in _messages(body)), 1)
