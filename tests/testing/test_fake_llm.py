"""The fake OpenAI-compatible server, driven through the real LiteLLM client (and raw HTTP for the wire)."""

from __future__ import annotations

import os

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")  # no cost-map download at import

import asyncio
import json
import time
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import litellm
import pytest
from litellm.exceptions import MidStreamFallbackError

from legion.testing import fake_llm
from legion.testing.fake_llm import FakeLlmServer, LlmErrorReply, Reply, ToolCall

pytestmark = pytest.mark.timeout(60)

litellm.telemetry = False
litellm.suppress_debug_info = True

MODEL = "openai/fake-model"
HELLO = [{"role": "user", "content": "hello there"}]


@pytest.fixture
async def llm() -> AsyncIterator[FakeLlmServer]:
    async with FakeLlmServer() as server:
        yield server


async def complete(llm: FakeLlmServer, **kwargs: Any) -> Any:
    """One LiteLLM call against the fake, without retries unless asked."""
    params: dict[str, Any] = {
        "model": MODEL,
        "api_base": llm.base_url,
        "api_key": "sk-test",
        "messages": HELLO,
        "num_retries": 0,
        "max_retries": 0,
    }
    return await litellm.acompletion(**(params | kwargs))


async def collect(stream: Any, into: list[Any] | None = None) -> list[Any]:
    """Every chunk of a LiteLLM stream; `into` keeps those read before an error."""
    chunks = [] if into is None else into
    async for chunk in stream:
        chunks.append(chunk)
    return chunks


def text_of(chunks: list[Any]) -> str:
    return "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)


async def raw_post(llm: FakeLlmServer, body: dict[str, Any]) -> tuple[int, str]:
    async with (
        aiohttp.ClientSession() as session,
        session.post(f"{llm.base_url}/chat/completions", json=body) as response,
    ):
        return response.status, await response.text()


def test_public_names_are_pinned() -> None:
    assert sorted(fake_llm.__all__) == [
        "FakeLlmServer",
        "LlmErrorReply",
        "RecordedRequest",
        "Reply",
        "ScriptedResponse",
        "ToolCall",
    ]


async def test_plain_reply_carries_the_scripted_usage(llm: FakeLlmServer) -> None:
    llm.script(Reply(text="hi", prompt_tokens=10, completion_tokens=5))

    response = await complete(llm)

    assert response.choices[0].message.content == "hi"
    assert response.choices[0].finish_reason == "stop"
    usage = response.usage
    assert (usage.prompt_tokens, usage.completion_tokens, usage.total_tokens) == (10, 5, 15)


async def test_empty_script_echoes_the_last_user_message(llm: FakeLlmServer) -> None:
    messages = [
        {"role": "system", "content": "be brief"},
        {"role": "user", "content": "first"},
        {"role": "assistant", "content": "ok"},
        {"role": "user", "content": "second question"},
    ]

    response = await complete(llm, messages=messages)

    assert response.choices[0].message.content == "echo: second question"


async def test_tool_call_is_parsed_by_litellm(llm: FakeLlmServer) -> None:
    arguments = {"path": "notes.txt", "content": "hello"}
    llm.script(Reply(tool_calls=[ToolCall(name="write_file", arguments=arguments, id="call_1")]))

    response = await complete(llm)

    choice = response.choices[0]
    assert choice.finish_reason == "tool_calls"
    [call] = choice.message.tool_calls
    assert (call.id, call.type, call.function.name) == ("call_1", "function", "write_file")
    assert json.loads(call.function.arguments) == arguments


async def test_streamed_tool_call_is_reassembled_by_litellm(llm: FakeLlmServer) -> None:
    arguments = {"path": "notes.txt", "content": "a longer body to split"}
    llm.script(Reply(tool_calls=[ToolCall(name="write_file", arguments=arguments)]))

    chunks = await collect(await complete(llm, stream=True))
    rebuilt = litellm.stream_chunk_builder(chunks, messages=HELLO)

    [call] = rebuilt.choices[0].message.tool_calls
    assert call.function.name == "write_file"
    assert json.loads(call.function.arguments) == arguments


async def test_stream_with_include_usage_ends_with_a_usage_chunk(llm: FakeLlmServer) -> None:
    llm.script(Reply(text="one two three", prompt_tokens=7, completion_tokens=3))

    chunks = await collect(await complete(llm, stream=True, stream_options={"include_usage": True}))

    assert text_of(chunks) == "one two three"
    usage = chunks[-1].usage
    assert (usage.prompt_tokens, usage.completion_tokens, usage.total_tokens) == (7, 3, 10)
    assert llm.requests[0].body["stream_options"] == {"include_usage": True}


async def test_stream_without_include_usage_sends_no_usage(llm: FakeLlmServer) -> None:
    status, text = await raw_post(llm, {"model": "m", "messages": HELLO, "stream": True})

    assert status == 200
    events = [line.removeprefix("data: ") for line in text.split("\n\n") if line]
    assert events[-1] == "[DONE]"
    chunks = [json.loads(event) for event in events[:-1]]
    assert {c["object"] for c in chunks} == {"chat.completion.chunk"}
    assert all("usage" not in c for c in chunks)
    assert chunks[-1]["choices"][0]["finish_reason"] == "stop"


async def test_litellm_does_not_ask_for_stream_usage_by_itself(llm: FakeLlmServer) -> None:
    await collect(await complete(llm, stream=True))

    assert "stream_options" not in llm.requests[0].body


async def test_report_usage_false_never_sends_usage() -> None:
    async with FakeLlmServer(report_usage=False) as llm:
        body = {"model": "m", "messages": HELLO}
        _, whole = await raw_post(llm, body)
        _, streamed = await raw_post(llm, body | {"stream": True, "stream_options": {"include_usage": True}})

    assert "usage" not in json.loads(whole)
    events = [e.removeprefix("data: ") for e in streamed.split("\n\n") if e]
    chunks = [json.loads(event) for event in events[:-1]]
    assert [c["usage"] for c in chunks] == [None] * len(chunks)


async def test_litellm_estimates_usage_when_a_stream_reports_none() -> None:
    """Pins a LiteLLM behaviour: asked for stream usage and given none, it invents its own counts."""
    async with FakeLlmServer(report_usage=False) as llm:
        llm.script(Reply(text="one two three", prompt_tokens=1000, completion_tokens=1000))
        chunks = await collect(await complete(llm, stream=True, stream_options={"include_usage": True}))

    assert 0 < chunks[-1].usage.completion_tokens < 1000


async def test_whole_response_is_in_openai_wire_format(llm: FakeLlmServer) -> None:
    llm.script(Reply(text="hi", prompt_tokens=2, completion_tokens=1))

    status, text = await raw_post(llm, {"model": "gpt-x", "messages": HELLO})

    body = json.loads(text)
    assert status == 200
    assert body["object"] == "chat.completion"
    assert body["id"].startswith("chatcmpl-")
    assert body["model"] == "gpt-x"
    assert body["choices"][0]["message"] == {"role": "assistant", "content": "hi", "refusal": None}
    assert body["usage"] == {"prompt_tokens": 2, "completion_tokens": 1, "total_tokens": 3}


@pytest.mark.parametrize(
    ("status", "exception"),
    [
        (429, litellm.RateLimitError),
        (500, litellm.InternalServerError),
        (401, litellm.AuthenticationError),
        (503, litellm.ServiceUnavailableError),
    ],
)
async def test_error_status_becomes_the_litellm_exception(
    llm: FakeLlmServer, status: int, exception: type[Exception]
) -> None:
    llm.script(LlmErrorReply(status=status))

    with pytest.raises(exception, match=r"\(fake\)") as caught:
        await complete(llm)

    assert getattr(caught.value, "status_code", None) == status
    assert len(llm.requests) == 1


async def test_litellm_classifies_errors_by_body_text_before_status(llm: FakeLlmServer) -> None:
    """Pins a LiteLLM trap: a 401 typed "invalid_request_error" is a BadRequestError unless its
    message says "Incorrect API key provided" (as OpenAI's does, and our default does)."""
    llm.script(LlmErrorReply(status=401, message="key revoked", error_type="invalid_request_error"))

    with pytest.raises(litellm.BadRequestError, match="key revoked"):
        await complete(llm)


async def test_custom_401_without_the_request_error_type_is_an_authentication_error(
    llm: FakeLlmServer,
) -> None:
    llm.script(LlmErrorReply(status=401, message="key revoked", error_type="authentication_error"))

    with pytest.raises(litellm.AuthenticationError, match="key revoked"):
        await complete(llm)


async def test_error_body_is_openai_shaped(llm: FakeLlmServer) -> None:
    llm.script(LlmErrorReply(status=429, retry_after=2))

    status, text = await raw_post(llm, {"model": "m", "messages": HELLO})

    assert status == 429
    assert json.loads(text)["error"] == {
        "message": "Rate limit reached (fake).",
        "type": "requests",
        "param": None,
        "code": "rate_limit_exceeded",
    }


async def test_latency_delays_the_response(llm: FakeLlmServer) -> None:
    llm.script(Reply(text="slow", latency=0.3))

    started = time.monotonic()
    response = await complete(llm)

    assert time.monotonic() - started >= 0.3
    assert response.choices[0].message.content == "slow"


async def test_latency_longer_than_the_client_timeout_is_a_timeout(llm: FakeLlmServer) -> None:
    llm.script(Reply(text="too slow", latency=5))

    with pytest.raises(litellm.Timeout):
        await complete(llm, timeout=0.2)


async def test_per_model_scripts_answer_only_their_model(llm: FakeLlmServer) -> None:
    llm.script(Reply(text="from b"), model="model-b")
    llm.script(Reply(text="from a"), model="model-a")

    b = await complete(llm, model="openai/model-b")
    a = await complete(llm, model="openai/model-a")

    assert (a.choices[0].message.content, b.choices[0].message.content) == ("from a", "from b")


async def test_router_fails_over_from_a_failing_model(llm: FakeLlmServer) -> None:
    llm.always(LlmErrorReply(status=500), model="model-a")
    llm.script(Reply(text="from b"), model="model-b")
    deployments = [
        {"model_name": name, "litellm_params": {"model": f"openai/model-{name}", "api_base": llm.base_url}}
        for name in ("a", "b")
    ]
    router = litellm.Router(model_list=deployments, fallbacks=[{"a": ["b"]}], num_retries=0)

    response = await router.acompletion(model="a", messages=HELLO, api_key="sk-test")

    assert response.choices[0].message.content == "from b"
    assert [r.model for r in llm.requests] == ["model-a", "model-b"]


async def test_requests_record_the_api_key_and_the_model(llm: FakeLlmServer) -> None:
    await complete(llm, api_key="sk-secret-123", model="openai/gpt-fake")

    [request] = llm.requests
    assert request.authorization == "Bearer sk-secret-123"
    assert request.api_key == "sk-secret-123"
    assert request.model == "gpt-fake"
    assert request.body["messages"] == HELLO


async def test_wait_for_requests_returns_once_they_arrive(llm: FakeLlmServer) -> None:
    llm.script(Reply(text="a", latency=1), Reply(text="b", latency=1))

    async with asyncio.TaskGroup() as tasks:
        calls = [tasks.create_task(complete(llm)) for _ in range(2)]
        arrived = await llm.wait_for_requests(2, timeout=5)
        assert len(arrived) == 2
        assert not any(call.done() for call in calls)  # returned on arrival, not on the replies


async def test_wait_for_requests_times_out_naming_the_count(llm: FakeLlmServer) -> None:
    with pytest.raises(TimeoutError, match="got 0 request"):
        await llm.wait_for_requests(1, timeout=0.05)


@pytest.mark.parametrize(("cut", "received"), [(0, ""), (2, "one two")])
async def test_stream_breaks_after_the_scripted_number_of_deltas(llm: FakeLlmServer, cut: int, received: str) -> None:
    llm.script(Reply(text="one two three four", disconnect_after=cut))
    chunks: list[Any] = []
    stream = await complete(llm, stream=True)

    with pytest.raises(MidStreamFallbackError) as caught:
        await collect(stream, into=chunks)

    assert text_of(chunks) == received
    assert caught.value.generated_content == received
    assert isinstance(caught.value.original_exception, litellm.APIConnectionError)


async def test_non_streaming_disconnect_is_a_connection_error(llm: FakeLlmServer) -> None:
    """LiteLLM reports a dropped connection as InternalServerError("Connection error.")."""
    llm.script(Reply(text="never sent", disconnect_after=0))

    with pytest.raises(litellm.InternalServerError, match="Connection error"):
        await complete(llm)


async def test_scripted_reply_is_used_once_then_always_answers(llm: FakeLlmServer) -> None:
    llm.script(Reply(text="first"))
    llm.always(Reply(text="again"))

    replies = [(await complete(llm)).choices[0].message.content for _ in range(3)]

    assert replies == ["first", "again", "again"]


async def test_stop_is_safe_twice_and_refuses_new_connections() -> None:
    llm = FakeLlmServer()
    await llm.start()
    base_url = llm.base_url

    await llm.stop()
    await llm.stop()

    with pytest.raises(aiohttp.ClientConnectionError):
        async with aiohttp.ClientSession() as session:
            await session.post(f"{base_url}/chat/completions", json={})


def test_base_url_before_start_says_how_to_start() -> None:
    with pytest.raises(RuntimeError, match="async with"):
        _ = FakeLlmServer().base_url
