"""Attacks through the agent's tools, end to end: the real vault refuses internal addresses in every
spelling, the workspace refuses escapes, and the task goes on with readable errors.

Redirects to internal addresses are refused by the same vault check on every hop
(tests/actors/vault/test_ssrf.py and test_http_proxy.py exercise that with local redirecting servers).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from legion.contracts import TaskCompleted
from legion.testing import FakeLlmServer, Reply, TestFleet, ToolCall
from legion.testing.fleet import agent_fleet

pytestmark = pytest.mark.nats

INTERNAL = [
    "http://127.0.0.1:4222/",  # the NATS port on the host
    "http://169.254.169.254/latest/meta-data/",  # cloud metadata
    "http://2130706433:4222/",  # 127.0.0.1 as a decimal integer
    "http://0x7f.0.0.1:4222/",  # hexadecimal octet
    "http://[::ffff:127.0.0.1]:4222/",  # IPv6-mapped IPv4
    "http://[::1]:4222/",
    "http://localhost:4222/",
]


def _tool_results(messages: list[dict[str, object]]) -> list[dict[str, object]]:
    return [json.loads(str(m["content"]).split("\n[warning]")[0]) for m in messages if m["role"] == "tool"]


async def test_ssrf_through_http_request_is_refused_in_every_spelling(
    legion_fleet: TestFleet, fake_llm: FakeLlmServer, tmp_path: Path
) -> None:
    calls = [
        ToolCall(name="http_request", arguments={"method": "GET", "url": u}, id=f"c{i}") for i, u in enumerate(INTERNAL)
    ]
    fake_llm.script(Reply(tool_calls=calls), Reply(text="I could not reach them."))
    async with agent_fleet(legion_fleet, fake_llm, tmp_path) as rig:
        task_id = await rig.assign("Fetch these internal pages.")
        await rig.probe.next(TaskCompleted, lambda e: e.task_id == task_id)
        results = _tool_results(fake_llm.requests[1].body["messages"])
        assert len(results) == len(INTERNAL)
        assert all(r["error"] == "denied" for r in results), results


async def test_path_traversal_and_symlink_escapes_are_refused_through_the_agent(
    legion_fleet: TestFleet, fake_llm: FakeLlmServer, tmp_path: Path
) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.txt").write_text("top secret")
    attempts = [
        ToolCall(name="read_file", arguments={"path": "../outside/secret.txt"}, id="a"),
        ToolCall(name="read_file", arguments={"path": str(outside / "secret.txt")}, id="b"),
        ToolCall(name="read_file", arguments={"path": "link/secret.txt"}, id="c"),
        ToolCall(name="write_file", arguments={"path": "link/planted.txt", "content": "x"}, id="d"),
    ]
    fake_llm.script(Reply(tool_calls=attempts), Reply(text="Refused, as expected."))
    async with agent_fleet(legion_fleet, fake_llm, tmp_path) as rig:
        rig.workspace().mkdir(parents=True, exist_ok=True)
        os.symlink(outside, rig.workspace() / "link")
        task_id = await rig.assign("Read the secret.")
        await rig.probe.next(TaskCompleted, lambda e: e.task_id == task_id)
        results = _tool_results(fake_llm.requests[1].body["messages"])
        assert [r["error"] for r in results] == ["denied"] * 4
        assert "top secret" not in json.dumps(fake_llm.requests[1].body)
        assert not (outside / "planted.txt").exists()
