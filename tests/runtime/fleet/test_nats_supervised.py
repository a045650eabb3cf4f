"""kill -9 of the embedded nats-server: the launcher restarts it on the same port and store, the
actors reconnect by themselves, and the fleet serves again: the ledger answers, an agent completes a
task, and nothing stored before is lost. `legion ps` tells the truth at each step (state.json)."""

from __future__ import annotations

import asyncio
import os
import signal
from pathlib import Path

import pytest
from nats.aio.msg import Msg

from legion.contracts import AssignTask, TaskCompleted, decode
from legion.contracts import subjects as subj
from legion.contracts.errors import LegionError
from legion.contracts.ledger import CostsQuery
from legion.runtime.clients import LedgerClient
from legion.runtime.fleet import Launcher, SupervisorSpec
from legion.runtime.fleet.procs import wait_gone
from legion.runtime.fleet.state import FleetState, read_state

pytestmark = [pytest.mark.nats, pytest.mark.slow]

POLL_S = 0.2  # between two questions to the ledger while it reconnects (bounded by a deadline)


async def test_a_killed_nats_server_is_restarted_and_the_fleet_serves_again(tmp_path: Path) -> None:
    (tmp_path / "legion.yaml").write_text("models:\n  m: {model: legion/offline}\nagents:\n  alpha: {model: m}\n")
    changes: asyncio.Queue[FleetState] = asyncio.Queue()
    launcher = Launcher(tmp_path, spec=SupervisorSpec(backoff_s=(0.2,)), on_change=changes.put_nowait)
    try:
        await launcher.start()
        admin = launcher.fleet.admin
        server = launcher.fleet.server
        assert admin is not None and server is not None and server.pid is not None
        before = (await admin.js.stream_info("EVENTS")).state.messages
        old_pid, port = server.pid, server.url

        os.kill(old_pid, signal.SIGKILL)
        assert wait_gone(old_pid, 10)
        async with asyncio.timeout(60):  # the launcher saw it: restarting, then healthy again
            seen = []
            while not (seen and seen[-1] == "healthy" and "restarting" in seen):
                state = await changes.get()
                seen.append(state.nats.state)
        assert server.pid is not None and server.pid != old_pid
        assert server.url == port, "same port: clients and credentials keep working"
        on_disk = read_state(tmp_path)
        assert on_disk is not None and on_disk.nats.restarts == 1 and on_disk.nats.pid == server.pid

        done: asyncio.Queue[TaskCompleted] = asyncio.Queue()

        async def on_done(msg: Msg) -> None:
            done.put_nowait(decode(msg.data, msg.headers, type=TaskCompleted))

        await admin.subscribe(subj.EVENTS.render(source="alpha", type="task.completed"), on_done)
        async with asyncio.timeout(60):  # the ledger reconnected: it answers (bounded retries)
            while True:
                try:
                    await LedgerClient(admin).costs(CostsQuery())
                    break
                except LegionError:
                    await asyncio.sleep(POLL_S)  # reconnects take a moment after the restart
        await admin.js_publish(subj.AGENT_INBOX.render(agent="alpha"), AssignTask(task_id="after", text="say hi"))
        completed = await asyncio.wait_for(done.get(), 60)
        assert completed.task_id == "after", "the agent reconnected and works"
        assert (await admin.js.stream_info("EVENTS")).state.messages > before, "nothing stored was lost"
    finally:
        await launcher.stop()
    final = read_state(tmp_path)
    assert final is not None and final.nats.state == "stopped"
