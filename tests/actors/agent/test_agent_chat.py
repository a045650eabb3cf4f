"""Chat: streamed turns, history that survives a restart, reset, and memories that survive both."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
from nats.aio.msg import Msg

from legion.contracts import ChatMessage, ChatReset, LlmChunk, decode
from legion.contracts import subjects as subj
from legion.contracts.agent_events import ChatReplied, SessionStep
from legion.testing import FakeLlmServer, Reply, TestFleet, ToolCall
from legion.testing.fleet import agent_fleet

pytestmark = pytest.mark.nats


def _said(request_body: dict[str, object]) -> str:
    return json.dumps(request_body["messages"])


async def test_a_chat_turn_streams_tokens_and_replies(
    legion_fleet: TestFleet, fake_llm: FakeLlmServer, tmp_path: Path
) -> None:
    fake_llm.script(Reply(text="Hello there, how can I help?"))
    async with agent_fleet(legion_fleet, fake_llm, tmp_path) as rig:
        chunks: asyncio.Queue[LlmChunk] = asyncio.Queue()

        async def on_chunk(msg: Msg) -> None:
            chunks.put_nowait(decode(msg.data, msg.headers, strict=True, type=LlmChunk))

        await legion_fleet.admin.subscribe(subj.STREAM.render(agent=rig.agent.name, session="s1"), on_chunk)
        await rig.send(ChatMessage(session="s1", text="hi", sender="test"))
        reply = await rig.probe.next(ChatReplied, lambda e: e.session == "s1")
        assert reply.text == "Hello there, how can I help?" and reply.error == ""
        streamed = []
        async with asyncio.timeout(10):
            while not streamed or not streamed[-1].done:
                streamed.append(await chunks.get())
        assert "".join(c.delta for c in streamed) == reply.text


async def test_chat_history_survives_a_restart_and_reset_forgets_it_but_not_memories(
    legion_fleet: TestFleet, fake_llm: FakeLlmServer, tmp_path: Path
) -> None:
    fake_llm.script(
        Reply(tool_calls=[ToolCall(name="memory_save", arguments={"fact": "The user's cat is called Tom."})]),
        Reply(text="Noted: your cat is Tom."),
        Reply(text="You told me about your cat."),
        Reply(tool_calls=[ToolCall(name="memory_search", arguments={"query": "cat name"})]),
        Reply(text="Your cat is Tom."),
    )
    async with agent_fleet(legion_fleet, fake_llm, tmp_path) as rig:
        await rig.send(ChatMessage(session="s2", text="My cat is called Tom."))
        await rig.probe.next(ChatReplied, lambda e: e.text == "Noted: your cat is Tom.")

        await rig.stop()
        await rig.start()  # a new agent process would do the same: replay from its state bucket
        await rig.send(ChatMessage(session="s2", text="What did I tell you?"))
        await rig.probe.next(ChatReplied, lambda e: e.text == "You told me about your cat.")
        assert "My cat is called Tom." in _said(fake_llm.requests[2].body)

        await rig.send(ChatReset(session="s2"))
        await rig.send(ChatMessage(session="s2", text="What is my cat's name?"))
        answer = await rig.probe.next(ChatReplied, lambda e: e.text == "Your cat is Tom.")
        assert answer.rounds >= 2
        after_reset = _said(fake_llm.requests[3].body)
        assert "My cat is called Tom." not in after_reset and "What did I tell you?" not in after_reset
        found = fake_llm.requests[4].body["messages"][-1]
        assert found["role"] == "tool" and "Tom" in found["content"]


async def test_context_compaction_saves_facts_that_stay_findable(
    legion_fleet: TestFleet, fake_llm: FakeLlmServer, tmp_path: Path
) -> None:
    filler = " ".join(["context"] * 110)  # ~200 tokens a turn against a 600-token window (compaction at 70 %)
    fake_llm.script(
        Reply(text="ok 1"),
        Reply(text="ok 2"),
        Reply(text="ok 3"),
        Reply(text='["The project codename is Falcon."]'),  # turn 4: the facts of the dropped messages
        Reply(text="The user named the project."),  # turn 4: the summary
        Reply(text="ok 4"),
        Reply(tool_calls=[ToolCall(name="memory_search", arguments={"query": "project codename"})]),
        Reply(text="It is Falcon."),
    )
    async with agent_fleet(legion_fleet, fake_llm, tmp_path, context_window=600) as rig:
        texts = [f"Remember: the project codename is Falcon. {filler}", filler, filler, filler]
        for i, text in enumerate(texts, start=1):
            await rig.send(ChatMessage(session="s3", text=text))
            await rig.probe.next(ChatReplied, lambda e, n=i: e.text == f"ok {n}")
        summary = await rig.probe.next(SessionStep, lambda s: s.kind == "summary")
        assert summary.data["facts"] == ["The project codename is Falcon."]
        turn4 = _said(fake_llm.requests[5].body)
        assert "Summary of the conversation so far: The user named the project." in turn4
        assert "Remember: the project codename" not in turn4  # the first turn was compacted away

        await rig.send(ChatReset(session="s3"))
        await rig.send(ChatMessage(session="s3", text="What is the codename?"))
        await rig.probe.next(ChatReplied, lambda e: e.text == "It is Falcon.")
        found = fake_llm.requests[7].body["messages"][-1]
        assert found["role"] == "tool" and "The project codename is Falcon." in found["content"]
