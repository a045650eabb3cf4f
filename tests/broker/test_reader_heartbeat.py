"""The ordered reader's heartbeat: a follow outlives nothing silently; a server restart is noticed."""

from __future__ import annotations

import asyncio

import pytest

from legion.broker.reader import ReadSpec, StreamReader
from legion.contracts import ConfigError, Unavailable
from legion.testing import NatsTestServer

pytestmark = [pytest.mark.nats, pytest.mark.slow]


@pytest.mark.parametrize("heartbeat", [0.0, -1.0, 11.0])
def test_a_heartbeat_out_of_range_is_refused(heartbeat: float) -> None:
    with pytest.raises(ConfigError, match="heartbeat"):
        StreamReader(None, ReadSpec(stream="S", heartbeat_s=heartbeat))  # type: ignore[arg-type]


async def test_a_following_reader_says_unavailable_after_a_server_restart() -> None:
    async with NatsTestServer() as server, await server.admin() as admin:
        await admin.js_api("STREAM.CREATE.HB", {"name": "HB", "subjects": ["hb.>"], "storage": "file"})
        spec = ReadSpec(stream="HB", follow=True, heartbeat_s=0.5)
        async with StreamReader(admin, spec) as reader:

            async def read() -> None:
                async for _ in reader.batches():
                    pass

            follow = asyncio.create_task(read())
            await server.server.restart()
            async with asyncio.timeout(10):  # three heartbeats (1.5 s) after the server went
                with pytest.raises(Unavailable, match="heartbeat"):
                    await follow
