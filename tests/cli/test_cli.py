"""The `legion` command, through CliRunner and through a real subprocess."""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from legion.broker import EmbeddedNats, NatsServerSpec
from legion.cli import app

LEGION = [sys.executable, "-m", "legion"]


def _run(*args: str, cwd: Path, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*LEGION, *args], cwd=cwd, capture_output=True, text=True, timeout=timeout, check=False)


def test_contracts_schema_writes_one_file_per_contract(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["contracts", "schema", "--out", str(tmp_path / "s")])
    assert result.exit_code == 0, result.output
    index = json.loads((tmp_path / "s" / "index.json").read_text())
    assert "task.assign.v1" in index["contracts"]
    assert (tmp_path / "s" / "task.assign.v1.json").exists()


@pytest.mark.nats
def test_up_once_provisions_and_reports_healthy_idempotently(tmp_path: Path) -> None:
    (tmp_path / "legion.yaml").write_text("fleet: demo\nagents:\n  alpha:\n    projects: [p1]\n")
    first = _run("up", "--once", "--json", cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    health = json.loads(first.stdout)
    assert health["status"] == "healthy"
    assert health["nats_url"].startswith("nats://127.0.0.1:")
    assert health["agents"] == ["alpha"]
    assert "stream EVENTS" in health["provisioned"]["created"]
    assert "bucket bb_p1" in health["provisioned"]["created"]
    creds = tmp_path / ".legion" / "creds" / "alpha.creds"
    assert stat.S_IMODE(creds.stat().st_mode) == 0o600
    second = _run("up", "--once", "--json", cwd=tmp_path)
    assert second.returncode == 0, second.stderr
    again = json.loads(second.stdout)
    assert again["provisioned"] == {"created": [], "updated": []}
    assert again["nats_url"] == health["nats_url"], "the embedded server comes back on the same port"


@pytest.mark.parametrize(
    ("yaml_text", "expected"),
    [
        ("agents:\n  alpha:\n    rol: x\n", "agents.alpha.rol: unknown key 'rol'"),
        ("agents:\n  Coder Bot: {}\n", "'Coder Bot' is invalid"),
        ("agents:\n  vault: {}\n", "reserved for a system actor"),
        ("nats:\n  port: 99999\n", "nats.port"),
        ("- just\n- a list\n", "top level must be a mapping"),
        ("agents: [unclosed\n", "not valid YAML"),
    ],
    ids=["unknown-key", "bad-agent-name", "reserved-name", "bad-port", "not-a-mapping", "bad-yaml"],
)
def test_bad_config_exits_2_and_names_the_problem(tmp_path: Path, yaml_text: str, expected: str) -> None:
    (tmp_path / "legion.yaml").write_text(yaml_text)
    result = _run("up", "--once", cwd=tmp_path, timeout=30)
    assert result.returncode == 2
    assert expected in result.stderr
    assert "legion.yaml" in result.stderr
    assert not (tmp_path / ".legion" / "nats").exists(), "nothing was started"


@pytest.mark.nats
def test_up_runs_until_interrupted_then_stops_cleanly(tmp_path: Path) -> None:
    (tmp_path / "legion.yaml").write_text("fleet: demo\n")
    proc = subprocess.Popen(
        [*LEGION, "up"], cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=os.environ
    )
    try:
        assert proc.stdout is not None
        lines = []
        for line in proc.stdout:  # bounded: the process prints a handful of lines, then waits
            lines.append(line)
            if "press Ctrl-C" in line:
                break
        assert any("healthy" in ln for ln in lines), lines
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err
    assert "legion: stopped" in out
    pid_line = (tmp_path / ".legion" / "logs" / "nats-server.log").read_text()
    assert "Server Exiting" in pid_line, "the embedded server was shut down, not orphaned"


@pytest.mark.nats
async def test_up_connects_to_an_external_nats_configured_with_nats_config(tmp_path: Path) -> None:
    fleet = tmp_path / "fleet"
    fleet.mkdir()
    block = _run("nats", "config", cwd=fleet)
    assert block.returncode == 0, block.stderr
    assert "resolver_preload" in block.stdout
    external = EmbeddedNats(NatsServerSpec(state_dir=tmp_path / "ops", auth_config=block.stdout))
    url = await external.start()
    try:
        (fleet / "legion.yaml").write_text(f"nats:\n  url: {url}\nagents:\n  alpha: {{}}\n")
        result = _run("up", "--once", "--json", cwd=fleet)
        assert result.returncode == 0, result.stderr
        health = json.loads(result.stdout)
        assert health["embedded"] is False
        assert health["nats_url"] == url
        assert "stream EVENTS" in health["provisioned"]["created"]
        assert not (fleet / ".legion" / "nats" / "jetstream").exists(), "no embedded server was started"
    finally:
        await external.stop()
