"""The launcher runs the ledger and the vault as supervised OS processes."""

from __future__ import annotations

import asyncio
import os
import signal
from pathlib import Path

import pytest
from nats.aio.msg import Msg

from legion.contracts import ActorStopped, decode
from legion.contracts import subjects as subj
from legion.runtime.fleet import Launcher, SupervisorSpec
from legion.runtime.fleet.backends.base import RunningActor
from legion.runtime.fleet.backends.process import pid_of
from legion.runtime.fleet.state import read_state

pytestmark = [pytest.mark.nats, pytest.mark.slow, pytest.mark.timeout(180)]


def _pid(running: RunningActor | None) -> int:
    return pid_of(running.ref) if running is not None else 0


def _environ(pid: int) -> dict[str, str]:
    raw = Path(f"/proc/{pid}/environ").read_bytes()
    return dict(item.split("=", 1) for item in raw.decode(errors="replace").split("\0") if "=" in item)


async def test_actors_start_hold_only_their_own_secrets_and_are_restarted(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    secret = "sk-launcher-test-" + os.urandom(8).hex()
    monkeypatch.setenv("LEGION_SYSTEM_OPENAI", secret)
    (tmp_path / "legion.yaml").write_text(
        "models:\n  m: {model: openai/gpt-4o-mini, key: openai}\nagents:\n  alpha: {model: m}\n"
    )
    launcher = Launcher(tmp_path, spec=SupervisorSpec(backoff_s=(0.2,)))
    try:
        await launcher.start()
        ledger, vault = launcher.actors["ledger"], launcher.actors["vault"]
        assert ledger.state == vault.state == "healthy"
        assert ledger.running is not None and vault.running is not None
        for running in (vault.running, ledger.running):
            environ = _environ(_pid(running))
            assert secret not in environ.values(), "keys never travel in an environment (/proc/<pid>/environ)"
            assert not any(k.startswith("LEGION_SYSTEM_") for k in environ)
        assert launcher.fleet.server is not None and launcher.fleet.server.pid is not None
        assert secret not in _environ(launcher.fleet.server.pid).values(), "nats-server gets the base environment"
        log = (tmp_path / ".legion" / "logs" / "vault.log").read_text()
        assert "vault.ready" in log and "'openai'" in log.split("vault.ready", 1)[1].split("\n", 1)[0], (
            "the vault got the key on its stdin"
        )

        admin = launcher.fleet.admin
        assert admin is not None
        stopped: asyncio.Queue[ActorStopped] = asyncio.Queue()

        async def on_stopped(msg: Msg) -> None:
            stopped.put_nowait(decode(msg.data, msg.headers, type=ActorStopped))

        await admin.subscribe(subj.EVENTS.render(source="launcher", type="actor.stopped"), on_stopped)
        old_pid = _pid(ledger.running)
        ledger.started.clear()
        os.kill(old_pid or 0, signal.SIGKILL)
        event = await asyncio.wait_for(stopped.get(), 30)
        assert event.actor == "ledger"
        assert event.exit_code == -signal.SIGKILL
        assert "restarting" in event.reason
        await asyncio.wait_for(ledger.started.wait(), 90)  # a fresh ActorStarted from the new process
        assert _pid(ledger.running) != old_pid
        assert ledger.state == "healthy"
    finally:
        await launcher.stop()
    assert all(
        s.running is not None and _pid(s.running) and not Path(f"/proc/{_pid(s.running)}").exists()
        for s in launcher.actors.values()
    ), "no actor process is left behind"


async def test_agents_start_healthy_without_secrets_and_are_supervised(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    secret, cred = "sk-agent-test-" + os.urandom(8).hex(), "cred-" + os.urandom(8).hex()
    monkeypatch.setenv("LEGION_SYSTEM_OPENAI", secret)
    monkeypatch.setenv("LEGION_CRED_GITHUB", cred)
    (tmp_path / "legion.yaml").write_text(
        "models:\n  m: {model: legion/offline}\nagents:\n  alpha: {model: m, projects: [p1]}\n  beta: {model: m}\n"
    )
    launcher = Launcher(tmp_path, spec=SupervisorSpec(backoff_s=(0.2,)))
    try:
        await launcher.start()
        assert {n: s.state for n, s in launcher.actors.items()} == dict.fromkeys(
            ("ledger", "vault", "scheduler", "alpha", "beta"), "healthy"
        )
        for name in ("alpha", "beta"):
            running = launcher.actors[name].running
            assert running is not None and _pid(running)
            env = _environ(_pid(running))
            assert not [k for k in env if k.startswith(("LEGION_SYSTEM_", "LEGION_CRED_"))], name
            assert secret not in env.values() and cred not in env.values()
        state = read_state(tmp_path)
        assert state is not None and state.status == "running"
        assert state.actors["alpha"].kind == "agent"
        assert state.actors["alpha"].ref == launcher.actors["alpha"].running.ref  # type: ignore[union-attr]

        admin = launcher.fleet.admin
        assert admin is not None
        stopped: asyncio.Queue[ActorStopped] = asyncio.Queue()

        async def on_stopped(msg: Msg) -> None:
            stopped.put_nowait(decode(msg.data, msg.headers, type=ActorStopped))

        await admin.subscribe(subj.EVENTS.render(source="launcher", type="actor.stopped"), on_stopped)
        alpha = launcher.actors["alpha"]
        old_pid = _pid(alpha.running) if alpha.running else 0
        alpha.settled.clear()
        os.kill(old_pid or 0, signal.SIGKILL)
        event = await asyncio.wait_for(stopped.get(), 30)
        assert event.actor == "alpha"
        assert "restarting" in event.reason
        await asyncio.wait_for(alpha.settled.wait(), 60)
        assert alpha.state == "healthy"
        assert alpha.running is not None and _pid(alpha.running) != old_pid
        assert alpha.record.restarts == 1
    finally:
        await launcher.stop()
    assert all(
        s.running is not None and _pid(s.running) and not Path(f"/proc/{_pid(s.running)}").exists()
        for s in launcher.actors.values()
    ), "no actor process is left behind"
    final = read_state(tmp_path)
    assert final is not None and final.status == "stopped"
    assert {a.state for a in final.actors.values()} == {"stopped"}
