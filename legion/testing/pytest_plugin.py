"""pytest fixtures for Legion: enable with ``pytest_plugins = ["legion.testing.pytest_plugin"]``.

- ``legion_nats`` (session): a real nats-server with the fleet's accounts and streams.
- ``legion_fleet``: per-test unique names, an admin connection, agent/ingest credential helpers.
- ``fake_llm``: a fake OpenAI-compatible server on 127.0.0.1 for LiteLLM.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest_asyncio

from legion.testing.fake_llm import FakeLlmServer
from legion.testing.nats import NatsTestServer, TestFleet

__all__ = ["fake_llm", "legion_fleet", "legion_nats"]


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def legion_nats() -> AsyncIterator[NatsTestServer]:
    async with NatsTestServer() as server:
        yield server


@pytest_asyncio.fixture(loop_scope="session")
async def legion_fleet(legion_nats: NatsTestServer) -> AsyncIterator[TestFleet]:
    admin = await legion_nats.admin()
    fleet = TestFleet(server=legion_nats, admin=admin)
    try:
        yield fleet
    finally:
        await fleet.close()
        await admin.close()


@pytest_asyncio.fixture(loop_scope="session")
async def fake_llm() -> AsyncIterator[FakeLlmServer]:
    async with FakeLlmServer() as server:
        yield server
