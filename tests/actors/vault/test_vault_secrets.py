"""The provider key never leaves the vault: not in events, the ledger, logs, replies or token streams,
even when the provider echoes it back in an error or a completion."""

from __future__ import annotations

import logging

import pytest
import structlog
from llm_rig import collect_stream, vault_rig

from legion.contracts import LlmError, LlmReply, encode
from legion.testing import FakeLlmServer, LlmErrorReply, Reply, TestFleet, read_stream

pytestmark = [pytest.mark.nats, pytest.mark.security, pytest.mark.timeout(90)]


async def test_the_provider_key_never_leaves_the_vault(
    legion_fleet: TestFleet,
    fake_llm: FakeLlmServer,
    caplog: pytest.LogCaptureFixture,
    capfd: pytest.CaptureFixture[str],
) -> None:
    texts: list[str] = []
    with structlog.testing.capture_logs() as entries:
        async with vault_rig(legion_fleet, fake_llm) as rig:
            secret = rig.secret
            # every library logger at DEBUG, as an operator chasing a bug might set them
            caplog.set_level(logging.DEBUG)
            for name in ("LiteLLM", "LiteLLM Router", "httpx", "httpcore", "openai"):
                caplog.set_level(logging.DEBUG, logger=name)
            fake_llm.script(
                LlmErrorReply(status=401, message=f"Incorrect API key provided: {secret}"), model="primary-model"
            )
            fake_llm.script(
                LlmErrorReply(status=500, message=f"upstream refused key {secret}"), model="secondary-model"
            )
            failed = await rig.ask("primary")
            assert isinstance(failed, LlmError), failed
            assert "[redacted]" in failed.message, "the provider's text is kept, without the key"

            rig.clock.advance(3601)
            fake_llm.script(Reply(text=f"your key is {secret} indeed"), model="primary-model")
            echoed = await rig.ask("primary")
            assert isinstance(echoed, LlmReply), echoed
            assert echoed.content == "your key is [redacted] indeed"

            fake_llm.script(Reply(text=f"streamed {secret} too"), model="primary-model")
            chunks = await rig.listen("s1")
            streamed = await rig.ask("primary", stream=True, session="s1")
            received = await collect_stream(chunks)

            for reply in (failed, echoed, streamed):
                texts.append(encode(reply)[0].decode())
            texts += [encode(c)[0].decode() for c in received]
            for stream in ("EVENTS", "LEDGER"):
                for msg in await read_stream(legion_fleet.admin, stream):
                    texts.append(msg.data.decode(errors="replace"))
                    texts.append(repr(msg.headers))
            texts.append(repr(rig.vault.keys))

    assert all(r.api_key == secret for r in fake_llm.requests), "the key was used (the test is meaningful)"
    assert len(fake_llm.requests) == 4
    texts += [repr(e) for e in entries]
    texts += [r.getMessage() + (r.exc_text or "") for r in caplog.records]
    texts.append(caplog.text)
    out, err = capfd.readouterr()
    texts += [out, err]
    assert entries and caplog.records, "logs were captured"
    leaks = [t[:200] for t in texts if secret in t]
    assert leaks == [], leaks
