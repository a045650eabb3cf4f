"""Context management: token estimate, compaction that keeps tool pairs and saves facts to memory."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from legion.actors.agent.context import (
    SUMMARY_PREFIX,
    Compaction,
    compact,
    estimate_tokens,
    facts_prompt,
    needs_compaction,
    parse_facts,
    summary_prompt,
)
from legion.actors.agent.memory import MemoryStore

Message = dict[str, Any]
SYSTEM: Message = {"role": "system", "content": "You are coder."}


def _user(text: str) -> Message:
    return {"role": "user", "content": text}


def _assistant(text: str) -> Message:
    return {"role": "assistant", "content": text}


def _call(call_id: str, name: str = "read_file", args: str = '{"path": "a.py"}') -> Message:
    return {
        "role": "assistant",
        "content": None,
        "tool_calls": [{"id": call_id, "type": "function", "function": {"name": name, "arguments": args}}],
    }


def _result(call_id: str, text: str = "ok") -> Message:
    return {"role": "tool", "tool_call_id": call_id, "content": text}


class Recorder:
    """Fake model calls that record what they were given."""

    def __init__(self, facts: list[str] | None = None, summary: str = "they talked") -> None:
        self.facts = facts or []
        self.summary = summary
        self.summarised: list[list[Message]] = []
        self.extracted: list[list[Message]] = []
        self.saved: list[str] = []

    async def summarise(self, dropped: list[Message]) -> str:
        self.summarised.append(dropped)
        return self.summary

    async def extract_facts(self, dropped: list[Message]) -> list[str]:
        self.extracted.append(dropped)
        return self.facts

    async def save_fact(self, fact: str) -> None:
        self.saved.append(fact)

    async def run(self, messages: list[Message], keep_last: int = 6) -> Compaction:
        return await compact(
            messages,
            summarise=self.summarise,
            extract_facts=self.extract_facts,
            save_fact=self.save_fact,
            keep_last=keep_last,
        )


def test_estimate_grows_with_content() -> None:
    short = estimate_tokens([SYSTEM, _user("hi")])
    long = estimate_tokens([SYSTEM, _user("hi " * 1000)])
    assert long - short == pytest.approx(3000 / 4, abs=2)


def test_estimate_counts_messages_and_tool_call_arguments() -> None:
    assert estimate_tokens([_user("x")]) < estimate_tokens([_user("x"), _user("x")])
    assert estimate_tokens([_call("c1", args="{}")]) < estimate_tokens([_call("c1", args=json.dumps({"p": "y" * 400}))])


def test_estimate_counts_content_parts() -> None:
    parts = {"role": "user", "content": [{"type": "text", "text": "z" * 400}]}
    assert estimate_tokens([parts]) >= 100


def test_needs_compaction_at_the_threshold() -> None:
    messages = [SYSTEM, _user("w" * 4000)]
    tokens = estimate_tokens(messages)
    assert needs_compaction(messages, window=tokens * 10, threshold=0.1)
    assert not needs_compaction(messages, window=tokens * 10, threshold=0.2)
    assert not needs_compaction(messages, window=tokens * 2)


@pytest.mark.parametrize(("window", "threshold"), [(0, 0.7), (1000, 0.0), (1000, 1.5)])
def test_needs_compaction_refuses_nonsense(window: int, threshold: float) -> None:
    with pytest.raises(ValueError, match="must be"):
        needs_compaction([SYSTEM], window, threshold)


async def test_compaction_keeps_system_summary_and_tail() -> None:
    history = [SYSTEM] + [_user(f"u{i}") if i % 2 == 0 else _assistant(f"a{i}") for i in range(10)]
    rec = Recorder(summary="  the user counted to nine  ")
    result = await rec.run(history, keep_last=4)
    assert result.dropped == 6
    assert result.summary == "the user counted to nine"
    assert result.messages == [
        SYSTEM,
        {"role": "user", "content": SUMMARY_PREFIX + "the user counted to nine"},
        *history[-4:],
    ]
    assert rec.summarised == [history[1:7]] and rec.extracted == [history[1:7]]


async def test_nothing_to_drop_returns_the_input_unchanged() -> None:
    history = [SYSTEM, _user("hi"), _assistant("hello")]
    rec = Recorder(facts=["never saved"])
    result = await rec.run(history, keep_last=6)
    assert result.messages is history
    assert (result.dropped, result.summary, result.facts) == (0, "", [])
    assert rec.summarised == [] and rec.saved == []


async def test_tool_results_are_never_split_from_their_call() -> None:
    history = [
        SYSTEM,
        _user("read the files"),
        _assistant("sure"),
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {"id": "c1", "type": "function", "function": {"name": "read_file", "arguments": "{}"}},
                {"id": "c2", "type": "function", "function": {"name": "read_file", "arguments": "{}"}},
            ],
        },
        _result("c1"),
        _result("c2"),
        _assistant("done"),
    ]
    # keep_last=3 would start the tail at the result of c1: the cut moves back to the call
    result = await Recorder().run(history, keep_last=3)
    tail = result.messages[2:]
    assert tail == history[3:]
    assert result.dropped == 2
    _assert_pairs_intact(result.messages)


@pytest.mark.parametrize("keep_last", range(8))
async def test_no_kept_tool_result_lacks_its_call(keep_last: int) -> None:
    history = [SYSTEM, _user("go")]
    for i in range(3):
        history += [_call(f"c{i}"), _result(f"c{i}"), _assistant(f"step {i}")]
    result = await Recorder().run(history, keep_last=keep_last)
    _assert_pairs_intact(result.messages)
    assert result.messages[0] == SYSTEM


def _assert_pairs_intact(messages: list[Message]) -> None:
    asked: set[str] = set()
    for m in messages:
        asked.update(c["id"] for c in m.get("tool_calls") or [])
        if m["role"] == "tool":
            assert m["tool_call_id"] in asked, f"tool result {m['tool_call_id']} kept without its call"


async def test_facts_are_cleaned_deduplicated_and_saved_before_the_summary() -> None:
    rec = Recorder(facts=["The user is Ada", "  The user is Ada ", "", "Repo is at /src\u200b"])
    history = [SYSTEM] + [_user(f"m{i}") for i in range(10)]
    result = await rec.run(history, keep_last=2)
    assert result.facts == rec.saved == ["The user is Ada", "Repo is at /src"]


async def test_compaction_keeps_saved_facts_findable(tmp_path: Path) -> None:
    """Context compaction keeps saved facts findable: what is cut from the context is in memory."""
    store = await MemoryStore.open(tmp_path / "memory.db")
    try:
        history = [
            SYSTEM,
            _user("By the way, production deploys go through the blue-green pipeline on Fridays only."),
            _assistant("Noted."),
            *[_user(f"filler {i}") for i in range(8)],
        ]

        async def extract(dropped: list[Message]) -> list[str]:
            # what a model answering facts_prompt(dropped) would say
            assert "blue-green" in facts_prompt(dropped)[-1]["content"]
            return parse_facts('```json\n["Production deploys use the blue-green pipeline, Fridays only"]\n```')

        async def summarise(dropped: list[Message]) -> str:
            return "The user explained deploys; then filler."

        result = await compact(history, summarise=summarise, extract_facts=extract, save_fact=store.save, keep_last=3)
        assert not any("blue-green" in str(m.get("content")) for m in result.messages)
        hits = await store.search("how do production deploys work?")
        assert [h.text for h in hits] == ["Production deploys use the blue-green pipeline, Fridays only"]
    finally:
        await store.close()


async def test_failing_save_propagates_and_loses_nothing() -> None:
    history = [SYSTEM] + [_user(f"m{i}") for i in range(10)]
    snapshot = list(history)

    async def broken(fact: str) -> None:
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        await compact(
            history,
            summarise=Recorder().summarise,
            extract_facts=Recorder(facts=["f"]).extract_facts,
            save_fact=broken,
        )
    assert history == snapshot


def test_prompts_carry_the_transcript_including_tool_calls() -> None:
    dropped = [_user("please read a.py"), _call("c1"), _result("c1", "print('hi')\U000e0041")]
    for prompt in (summary_prompt(dropped), facts_prompt(dropped)):
        assert [m["role"] for m in prompt] == ["system", "user"]
        body = prompt[-1]["content"]
        assert "please read a.py" in body and "read_file" in body and "print('hi')" in body
        assert "\U000e0041" not in body
    assert "JSON array" in facts_prompt(dropped)[0]["content"]


@pytest.mark.parametrize(
    ("text", "facts"),
    [
        ('["a fact", "another fact"]', ["a fact", "another fact"]),
        ('```json\n["a fact", "another fact"]\n```', ["a fact", "another fact"]),
        ('```\n["a fact"]\n```', ["a fact"]),
        ('Here are the facts:\n["a fact", "another fact"]\nHope that helps.', ["a fact", "another fact"]),
        ('{"facts": ["a fact"]}', ["a fact"]),
        ('[{"fact": "a fact"}, 3, null, "another fact"]', ["a fact", "another fact"]),
        ("- a fact\n- another fact", ["a fact", "another fact"]),
        (
            "* a fact\n\u2022 another fact\n1. third fact\n2) fourth fact",
            ["a fact", "another fact", "third fact", "fourth fact"],
        ),
        ('Facts:\n- "a fact"\n- a fact', ["a fact"]),
        ("[]", []),
        ("", []),
        ("None.", []),
        ("There is nothing durable here.", []),
        ('["bad json', []),
    ],
)
def test_parse_facts_is_tolerant(text: str, facts: list[str]) -> None:
    assert parse_facts(text) == facts
