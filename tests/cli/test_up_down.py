"""`legion up -d`, `ps`, `logs`, `down` and recovery after a killed launcher, through real processes."""

from __future__ import annotations

import asyncio
import json
import os
import re
import selectors
import signal
import socket
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from legion.broker import Broker, ConnectSpec
from legion.runtime.fleet.backends.process import pid_of
from legion.runtime.fleet.procs import wait_gone
from legion.runtime.fleet.state import read_state

pytestmark = [pytest.mark.nats, pytest.mark.slow, pytest.mark.timeout(240)]

LEGION = [sys.executable, "-m", "legion"]
SECRET = "sk-up-down-" + os.urandom(8).hex()
CRED = "ghp-up-down-" + os.urandom(8).hex()


def _legion(*args: str, timeout: float = 180, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*LEGION, *args], capture_output=True, text=True, timeout=timeout, check=False, env=env or os.environ.copy()
    )


def _up(fleet: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "LEGION_SYSTEM_OPENAI": SECRET, "LEGION_CRED_GITHUB": CRED}
    result = _legion("-C", str(fleet), "up", "-d", *extra, env=env)
    assert result.returncode == 0, result.stdout + result.stderr
    return result


def _pids(fleet: Path) -> dict[str, int]:
    state = read_state(fleet)
    assert state is not None
    pids = {name: pid_of(rec.ref) for name, rec in state.actors.items() if rec.ref}
    if state.nats.pid:
        pids["nats"] = state.nats.pid
    return {"launcher": state.launcher_pid, **pids}


def _environ(pid: int) -> dict[str, str]:
    raw = Path(f"/proc/{pid}/environ").read_bytes()
    return dict(item.split("=", 1) for item in raw.decode(errors="replace").split("\0") if "=" in item)


def _new_fleet(root: Path, name: str) -> Path:
    fleet = root / name
    result = _legion("init", str(fleet), "--template", "starter")
    assert result.returncode == 0, result.stderr
    return fleet


def _force_down(fleet: Path) -> None:
    if (fleet / ".legion" / "run" / "launcher.pid").exists():
        _legion("-C", str(fleet), "down", timeout=90)


@pytest.fixture(scope="module")
def running(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """One fleet (the starter template: ledger, vault, agent `starter`) started with `legion up -d`."""
    fleet = _new_fleet(tmp_path_factory.mktemp("up"), "shared")
    try:
        _up(fleet)
        yield fleet
    finally:
        _force_down(fleet)


def test_up_detach_returns_once_every_actor_is_healthy(running: Path) -> None:
    state = read_state(running)
    assert state is not None
    assert state.status == "running"
    actors = ("ledger", "vault", "scheduler", "starter")
    assert {n: a.state for n, a in state.actors.items()} == dict.fromkeys(actors, "healthy")
    assert state.nats.url.startswith("nats://127.0.0.1:")
    log = (running / ".legion" / "logs" / "launcher.log").read_text()
    assert "healthy" in log, "the background launcher's output goes to launcher.log"


def test_agents_hold_no_provider_key_or_credential(running: Path) -> None:
    pids = _pids(running)
    agent_env = _environ(pids["starter"])
    assert not [k for k in agent_env if k.startswith(("LEGION_SYSTEM_", "LEGION_CRED_"))]
    assert SECRET not in agent_env.values() and CRED not in agent_env.values()
    for name in ("vault", "nats", "ledger"):
        environ = _environ(pids[name])
        assert SECRET not in environ.values() and CRED not in environ.values(), f"{name}: no secret in its environ"
    ready = next(
        line for line in (running / ".legion" / "logs" / "vault.log").read_text().splitlines() if "vault.ready" in line
    )
    assert "credentials=['github']" in ready, "the vault holds the credential: it came on its stdin"


def test_fleet_files_are_private(running: Path) -> None:
    """umask 077: keys, credentials, run files, logs and stores are 0600 in 0700 directories."""
    loose = [
        f"{p.relative_to(running)} {stat.S_IMODE(p.stat().st_mode):o}"
        for p in (running / ".legion").rglob("*")
        if not p.is_symlink() and stat.S_IMODE(p.stat().st_mode) & 0o077
    ]
    assert not loose, f"readable by group or others: {loose}"


@pytest.mark.parametrize("detach", [True, False], ids=["up-d", "up"])
def test_a_second_up_says_already_running_and_touches_nothing(running: Path, detach: bool) -> None:
    before = _pids(running)
    state = read_state(running)
    assert state is not None
    result = _legion("-C", str(running), "up", *(["-d"] if detach else []), timeout=30)
    assert result.returncode == 0, result.stderr
    expected = (
        f"fleet {state.fleet} is already running (pid {before['launcher']}, {state.nats.url}); "
        f"`legion -C {running} down` stops it"
    )
    assert result.stdout.strip() == expected
    assert _pids(running) == before


def test_ps_json_lists_every_actor_alive(running: Path) -> None:
    result = _legion("-C", str(running), "ps", "--json", timeout=30)
    assert result.returncode == 0, result.stderr
    doc = json.loads(result.stdout)
    assert doc["running"] is True
    assert doc["fleet"] == "starter"
    assert doc["nats_url"].startswith("nats://127.0.0.1:")
    rows = {row["name"]: row for row in doc["actors"]}
    assert set(rows) == {"nats", "ledger", "vault", "scheduler", "starter"}
    assert all(row["alive"] and row["state"] == "healthy" and row["uptime_s"] >= 0 for row in rows.values()), rows
    assert rows["starter"]["kind"] == "agent"
    assert rows["starter"]["id"] == str(_pids(running)["starter"])
    text = _legion("-C", str(running), "ps", timeout=30)
    assert text.returncode == 0
    assert "starter" in text.stdout and "healthy" in text.stdout


def test_logs_prints_the_last_lines_of_an_actor_or_of_all(running: Path) -> None:
    one = _legion("-C", str(running), "logs", "vault", "-n", "3", timeout=30)
    assert one.returncode == 0, one.stderr
    assert 0 < len(one.stdout.splitlines()) <= 3
    every = _legion("-C", str(running), "logs", "-n", "2", timeout=30)
    assert every.returncode == 0, every.stderr
    prefixes = {line.split(" | ", 1)[0].strip() for line in every.stdout.splitlines()}
    assert {"launcher", "nats-server", "ledger", "vault", "scheduler", "starter"} <= prefixes
    missing = _legion("-C", str(running), "logs", "nobody", timeout=30)
    assert missing.returncode == 2
    assert "no log for 'nobody'" in missing.stderr


def test_logs_follow_prints_appended_lines_until_terminated(running: Path) -> None:
    log = running / ".legion" / "logs" / "starter.log"
    proc = subprocess.Popen(
        [*LEGION, "-C", str(running), "logs", "starter", "-f", "-n", "0"], stdout=subprocess.PIPE, text=True
    )
    try:
        assert proc.stdout is not None
        marker = f"marker-{os.urandom(4).hex()}"
        sel = selectors.DefaultSelector()
        sel.register(proc.stdout, selectors.EVENT_READ)
        deadline = time.monotonic() + 30
        seen = ""
        while marker not in seen:
            with log.open("a") as f:  # appended again each round: the follower may not have started yet
                f.write(f"{marker}\n")
            assert time.monotonic() < deadline, "the follower never printed the appended line"
            if sel.select(timeout=1.0):
                seen += proc.stdout.readline()
    finally:
        proc.terminate()
        proc.wait(10)
    assert marker in seen


def test_down_stops_every_process_and_removes_the_pid_file(tmp_path: Path) -> None:
    fleet = _new_fleet(tmp_path, "downfleet")
    try:
        _up(fleet)
        pids = _pids(fleet)
        assert set(pids) == {"launcher", "nats", "ledger", "vault", "scheduler", "starter"}
        result = _legion("-C", str(fleet), "down", timeout=90)
        assert result.returncode == 0, result.stderr
        assert result.stdout.strip().endswith("stopped")
        alive = [name for name, pid in pids.items() if not wait_gone(pid, 0)]
        assert not alive, f"still running after `legion down`: {alive}"
        assert not (fleet / ".legion" / "run" / "launcher.pid").exists()
        ps = _legion("-C", str(fleet), "ps", "--json", timeout=30)
        assert ps.returncode == 1
        assert json.loads(ps.stdout) == {"running": False}
        again = _legion("-C", str(fleet), "down", timeout=30)
        assert again.returncode == 0
        assert "is not running" in again.stdout
    finally:
        _force_down(fleet)


async def _events(fleet: Path) -> int:
    state_dir = fleet / ".legion"
    url = (state_dir / "nats.url").read_text().strip()
    broker = await Broker.connect(ConnectSpec(url=url, creds=state_dir / "creds" / "admin.creds"))
    try:
        info = await broker.js.stream_info("EVENTS")
        return int(info.state.messages)
    finally:
        await broker.close()


def test_up_after_a_killed_launcher_cleans_up_and_keeps_the_history(tmp_path: Path) -> None:
    fleet = _new_fleet(tmp_path, "crashed")
    try:
        _up(fleet)
        events = asyncio.run(_events(fleet))
        assert events >= 3, "ledger, vault and starter announced themselves"
        old = _pids(fleet)
        os.kill(old["launcher"], signal.SIGKILL)
        assert wait_gone(old["launcher"], 10)
        assert wait_gone(old["vault"], 0) is False, "its actors outlive it (own sessions)"
        ps = _legion("-C", str(fleet), "ps", timeout=30)
        assert ps.returncode == 1
        assert re.search(r"`legion( -C \S+)? down` cleans up", ps.stdout), ps.stdout
        result = _up(fleet)
        assert "cleaned up after a launcher that did not stop" in result.stdout
        leftovers = [name for name, pid in old.items() if not wait_gone(pid, 0)]
        assert not leftovers, f"processes of the killed launcher still run: {leftovers}"
        new = _pids(fleet)
        assert new["launcher"] != old["launcher"]
        assert asyncio.run(_events(fleet)) >= events, "the NATS store in .legion was reused"
    finally:
        _force_down(fleet)


@pytest.mark.parametrize(
    ("yaml_text", "expected"),
    [
        ("agents:\n  alpha:\n    rol: x\n", "agents.alpha.rol: unknown key 'rol'"),
        ("agents:\n  Coder Bot: {}\n", "'Coder Bot' is invalid"),
        ("agents:\n  alpha: {model: nope}\n", "agents.alpha: unknown model alias 'nope' (models: none defined)"),
    ],
    ids=["unknown-key", "bad-agent-name", "missing-model-alias"],
)
def test_up_detach_with_a_bad_config_exits_2_before_starting(tmp_path: Path, yaml_text: str, expected: str) -> None:
    (tmp_path / "legion.yaml").write_text(yaml_text)
    result = _legion("-C", str(tmp_path), "up", "-d", timeout=30)
    assert result.returncode == 2
    assert expected in result.stderr
    assert str(tmp_path / "legion.yaml") in result.stderr
    assert not (tmp_path / ".legion" / "logs" / "launcher.log").exists(), "no launcher was started"


def test_up_detach_reports_a_launcher_that_dies_with_its_log(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        (tmp_path / "legion.yaml").write_text(f"nats:\n  port: {port}\n")
        result = _legion("-C", str(tmp_path), "up", "-d", timeout=60)
    assert result.returncode == 1
    assert "the launcher exited with code 2 before the fleet was healthy" in result.stderr
    assert "address already in use" in result.stderr, "the tail of launcher.log is shown"
    assert not (tmp_path / ".legion" / "run" / "launcher.pid").exists()


def test_an_agent_with_an_invalid_tool_list_fails_up_at_once_without_restarts(tmp_path: Path) -> None:
    """A ConfigError at an agent's start exits 2; the launcher does not retry it into a crash loop."""
    fleet = _new_fleet(tmp_path, "badtools")
    config = fleet / "legion.yaml"
    config.write_text(config.read_text().replace("    model: default\n", "    model: default\n    tools: [nope]\n", 1))
    try:
        result = _legion("-C", str(fleet), "up", "-d")
        assert result.returncode == 1
        assert "starter could not start: its configuration is invalid" in result.stdout + result.stderr
        log = (fleet / ".legion" / "logs" / "starter.log").read_text()
        assert log.count("unknown tool or group 'nope'") == 1  # started once, not restarted
    finally:
        _legion("-C", str(fleet), "down")


def test_agent_processes_run_under_the_configured_resource_limits(tmp_path: Path) -> None:
    fleet = _new_fleet(tmp_path, "limited")
    config = fleet / "legion.yaml"
    config.write_text(config.read_text() + "\nruntime:\n  agent_limits: {memory_mb: 2048, open_files: 256}\n")
    try:
        _up(fleet)
        limits = Path(f"/proc/{_pids(fleet)['starter']}/limits").read_text()
        assert re.search(r"Max address space\s+2147483648\s+2147483648\s+bytes", limits), limits
        assert re.search(r"Max open files\s+256\s+256\s+files", limits), limits
        vault = Path(f"/proc/{_pids(fleet)['vault']}/limits").read_text()
        assert not re.search(r"Max open files\s+256\s", vault)  # only agents are limited
    finally:
        _legion("-C", str(fleet), "down")
