"""Legion's public test kit: a real nats-server, per-test fleets, and a fake LLM server.

Enable the pytest fixtures with ``pytest_plugins = ["legion.testing.pytest_plugin"]``.
"""

from __future__ import annotations

from legion.testing.fake_llm import FakeLlmServer, LlmErrorReply, RecordedRequest, Reply, ScriptedResponse, ToolCall
from legion.testing.nats import AgentHandle, NatsTestServer, TestFleet
from legion.testing.streams import read_stream

__all__ = [
    "AgentHandle",
    "FakeLlmServer",
    "LlmErrorReply",
    "NatsTestServer",
    "RecordedRequest",
    "Reply",
    "ScriptedResponse",
    "TestFleet",
    "ToolCall",
    "read_stream",
]
