"""`legion doctor`: one line per check, exit 1 on any failure, never a secret value."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from typer.testing import CliRunner

from legion.cli import app

LEGION = [sys.executable, "-m", "legion"]
CHECKS = ["python", "nats-server", "docker", "sqlite fts5", "legion.yaml", "nats port", ".env", "disk"]


def _run(*args: str, cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith(("LEGION_SYSTEM_", "LEGION_CRED_"))}
    return subprocess.run(
        [*LEGION, *args], cwd=cwd, capture_output=True, text=True, timeout=60, check=False, env={**base, **(env or {})}
    )


def _good(tmp_path: Path) -> Path:
    (tmp_path / "legion.yaml").write_text(
        "models:\n  main: {model: openai/gpt-4o-mini, key: openai}\n  local: {model: legion/offline}\n"
        "agents:\n  alpha: {model: main, allowed_models: [main, local]}\n"
    )
    env = tmp_path / ".env"
    env.write_text(f"LEGION_SYSTEM_OPENAI=sk-doctor-{uuid.uuid4().hex}\n")
    env.chmod(0o600)
    return tmp_path


def test_a_good_fleet_dir_passes_and_every_check_is_reported(tmp_path: Path) -> None:
    fleet = _good(tmp_path)
    secret = (fleet / ".env").read_text().split("=", 1)[1].strip()
    result = _run("doctor", cwd=fleet)
    assert result.returncode == 0, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    for check in CHECKS:
        assert any(line.split("  — ")[0].split(maxsplit=1)[1].strip() == check for line in lines), check
    assert any(line.startswith("ok") and "model key openai" in line and ".env" in line for line in lines)
    assert all(line.split()[0] in ("ok", "warn", "fail") for line in lines)
    assert secret not in result.stdout + result.stderr


def test_json_output_lists_the_checks(tmp_path: Path) -> None:
    fleet = _good(tmp_path)
    result = CliRunner().invoke(app, ["-C", str(fleet), "doctor", "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert report["ok"] is True
    assert {c["check"] for c in report["checks"]} >= set(CHECKS)


def test_a_bad_legion_yaml_is_reported_and_fails(tmp_path: Path) -> None:
    (tmp_path / "legion.yaml").write_text("agents:\n  alpha:\n    rol: x\n")
    result = _run("-C", str(tmp_path), "doctor", cwd=tmp_path)
    assert result.returncode == 1
    assert "fail  legion.yaml" in result.stdout
    assert "agents.alpha.rol: unknown key 'rol'" in result.stdout


def test_a_missing_key_is_reported_by_name(tmp_path: Path) -> None:
    fleet = _good(tmp_path)
    (fleet / ".env").unlink()
    result = _run("doctor", cwd=fleet)
    assert result.returncode == 1
    [line] = [line for line in result.stdout.splitlines() if "model key openai" in line]
    assert line.startswith("fail")
    assert "LEGION_SYSTEM_OPENAI" in line and "model main" in line and "legion vault add openai" in line
    from_env = _run("doctor", cwd=fleet, env={"LEGION_SYSTEM_OPENAI": "sk-from-the-environment"})
    assert from_env.returncode == 0, from_env.stdout
    assert "sk-from-the-environment" not in from_env.stdout


def test_offline_models_need_no_key(tmp_path: Path) -> None:
    (tmp_path / "legion.yaml").write_text("models:\n  m: {model: legion/offline}\nagents:\n  a: {model: m}\n")
    result = _run("doctor", cwd=tmp_path)
    assert result.returncode == 0, result.stdout
    assert "none needed" in result.stdout


def test_a_readable_env_file_fails(tmp_path: Path) -> None:
    fleet = _good(tmp_path)
    (fleet / ".env").chmod(0o644)
    result = _run("doctor", cwd=fleet)
    assert result.returncode == 1
    assert any(line.startswith("fail  .env") and "chmod 600" in line for line in result.stdout.splitlines())


@pytest.mark.parametrize("configured", [True, False])
def test_a_port_taken_by_another_program_is_reported(tmp_path: Path, configured: bool) -> None:
    with socket.socket() as other:
        other.bind(("127.0.0.1", 0))
        other.listen()
        port = other.getsockname()[1]
        if configured:
            (tmp_path / "legion.yaml").write_text(f"nats: {{port: {port}}}\n")
        else:
            (tmp_path / ".legion" / "nats").mkdir(parents=True)
            (tmp_path / ".legion" / "nats" / "port").write_text(f"{port}\n")
        result = _run("doctor", cwd=tmp_path)
    [line] = [line for line in result.stdout.splitlines() if "nats port" in line]
    assert str(port) in line
    assert line.startswith("fail" if configured else "warn"), line
    assert result.returncode == (1 if configured else 0)
