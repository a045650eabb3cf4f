"""``python -m legion.actors.vault`` as its own process: config and ``.env`` from the fleet directory,
its own credentials, serving ``legion.vault.*.llm`` in queue group ``vault``, stopping on SIGTERM."""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import sys
import uuid
from pathlib import Path

import pytest
import yaml
from llm_rig import KEY_ENV, FakeLedger, default_models, running, start_ledger
from nats.aio.msg import Msg

from legion.actors.vault import vault_permissions
from legion.contracts import ActorStarted, LlmReply, LlmRequest, decode
from legion.contracts import subjects as subj
from legion.testing import FakeLlmServer, Reply, TestFleet

pytestmark = [pytest.mark.nats, pytest.mark.slow, pytest.mark.timeout(90)]


async def test_the_vault_process_serves_agents_with_keys_from_dotenv(
    legion_fleet: TestFleet, fake_llm: FakeLlmServer, tmp_path: Path
) -> None:
    fleet = legion_fleet
    agent = await fleet.add_agent("alpha")
    vault_name, ledger = fleet.name("vault"), FakeLedger(fleet.name("ledger"))
    secret = f"sk-test-SECRET-{uuid.uuid4()}"
    (tmp_path / "legion.yaml").write_text(
        yaml.safe_dump({"models": default_models(fake_llm.base_url), "agents": {agent.name: {"model": "primary"}}})
    )
    (tmp_path / ".env").write_text(f"{KEY_ENV}={secret}\n")
    state = tmp_path / ".legion"
    (state / "creds").mkdir(parents=True)
    (state / "nats.url").write_text(fleet.server.url + "\n")
    creds = fleet.server.auth.issue_service(vault_name, vault_permissions(vault_name, ledger_service=ledger.name))
    shutil.copy(creds, state / "creds" / f"{vault_name}.creds")
    env = {k: v for k, v in os.environ.items() if not k.startswith("LEGION_SYSTEM_")}
    env |= {"LEGION_AGENTS_ACCOUNT": fleet.server.auth.keys.agents.public_key, "LEGION_LEDGER_SERVICE": ledger.name}

    started: asyncio.Queue[ActorStarted] = asyncio.Queue()

    async def on_started(msg: Msg) -> None:
        started.put_nowait(decode(msg.data, msg.headers, strict=True, type=ActorStarted))

    await fleet.admin.subscribe(subj.EVENTS.render(source=vault_name, type="actor.started"), on_started)
    fake_llm.script(Reply(text="from the process", prompt_tokens=3, completion_tokens=2))

    async with running(await start_ledger(fleet, ledger)):
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "legion.actors.vault",
            "--fleet-dir",
            str(tmp_path),
            "--name",
            vault_name,
            env=env,
            stderr=asyncio.subprocess.PIPE,
        )
        try:
            await asyncio.wait_for(started.get(), 60)
            client = await fleet.connect(agent.creds, name=agent.name)
            req = LlmRequest(request_id="r1", model="primary", messages=[{"role": "user", "content": "hi"}])
            reply = await client.request(subj.VAULT_LLM.render(agent=agent.name), req, timeout=20)
        finally:
            proc.send_signal(signal.SIGTERM)
            _, stderr = await asyncio.wait_for(proc.communicate(), 30)

    assert isinstance(reply, LlmReply), reply
    assert reply.content == "from the process"
    assert fake_llm.requests[0].api_key == secret, "the key came from <fleet>/.env"
    assert [c.agent for c in ledger.commits] == [agent.name]
    assert proc.returncode == 0, stderr.decode()
    assert b"vault.ready" in stderr
    assert secret.encode() not in stderr
