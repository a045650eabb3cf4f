"""`legion init`: every template writes a fleet that loads, and nothing is overwritten without --force."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from legion.cli import app
from legion.cli.console.init import TEMPLATES
from legion.runtime import load_config

REPO = Path(__file__).resolve().parents[2]
AGENTS = {"starter": ["starter"], "devteam": ["pm", "engineer", "reviewer"], "research": ["researcher", "analyst"]}
AGENTS["monitor"] = ["monitor"]


def _init(*args: str) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, "-m", "legion", "init", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=60, check=False)


@pytest.mark.parametrize("template", TEMPLATES)
def test_each_template_writes_a_fleet_that_loads(tmp_path: Path, template: str) -> None:
    result = CliRunner().invoke(app, ["init", str(tmp_path), "--template", template, "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert report["agents"] == AGENTS[template]
    config = load_config(tmp_path)
    assert sorted(config.agents) == sorted(AGENTS[template])
    assert {m.model for m in config.models.values()} == {"legion/offline"}, "offline by default"
    assert "openai/gpt-4o-mini" in (tmp_path / "legion.yaml").read_text(), "shows how to switch"
    for agent in config.agents:
        workspace = tmp_path / "agents" / agent
        for name in ("INSTRUCTIONS.md", "SOUL.md", "USER.md", "MEMORY.md"):
            assert (workspace / name).read_text().strip(), f"{agent}/{name} is written"
        assert "{agent}" not in (workspace / "SOUL.md").read_text()
        assert agent in (workspace / "SOUL.md").read_text()
    assert (tmp_path / "agents" / "monitor" / "HEARTBEAT.md").exists() == (template == "monitor")
    assert {".legion/", ".env"} <= set((tmp_path / ".gitignore").read_text().splitlines())


def test_init_refuses_to_overwrite_legion_yaml_without_force(tmp_path: Path) -> None:
    (tmp_path / "legion.yaml").write_text("fleet: mine\n")
    result = _init(str(tmp_path), "--template", "devteam")
    assert result.returncode == 2
    assert str(tmp_path / "legion.yaml") in result.stderr
    assert "--force" in result.stderr
    assert (tmp_path / "legion.yaml").read_text() == "fleet: mine\n"
    assert not (tmp_path / "agents").exists(), "nothing was written"


def test_init_force_overwrites_legion_yaml_and_template_files(tmp_path: Path) -> None:
    (tmp_path / "legion.yaml").write_text("fleet: mine\n")
    (tmp_path / "agents" / "pm").mkdir(parents=True)
    (tmp_path / "agents" / "pm" / "INSTRUCTIONS.md").write_text("old")
    result = _init(str(tmp_path), "--template", "devteam", "--force")
    assert result.returncode == 0, result.stderr
    assert load_config(tmp_path).fleet == "devteam"
    assert (tmp_path / "agents" / "pm" / "INSTRUCTIONS.md").read_text() != "old"


def test_init_keeps_existing_workspace_files_and_extends_gitignore(tmp_path: Path) -> None:
    (tmp_path / "agents" / "starter").mkdir(parents=True)
    (tmp_path / "agents" / "starter" / "MEMORY.md").write_text("my notes\n")
    (tmp_path / ".gitignore").write_text("node_modules/\n.env\n")
    result = CliRunner().invoke(app, ["init", str(tmp_path), "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["kept"] == ["agents/starter/MEMORY.md"]
    assert (tmp_path / "agents" / "starter" / "MEMORY.md").read_text() == "my notes\n"
    assert (tmp_path / ".gitignore").read_text().splitlines() == ["node_modules/", ".env", ".legion/"]


def test_init_rejects_an_unknown_template(tmp_path: Path) -> None:
    result = _init(str(tmp_path), "--template", "nope")
    assert result.returncode == 2
    assert "unknown template 'nope'" in result.stderr
    assert "starter" in result.stderr
    assert not (tmp_path / "legion.yaml").exists()


def test_the_starter_example_is_the_starter_template(tmp_path: Path) -> None:
    """`make up` runs examples/starter: it must stay what `legion init` writes, agent `starter` included."""
    assert CliRunner().invoke(app, ["init", str(tmp_path)]).exit_code == 0
    example = REPO / "examples" / "starter"
    assert (example / "legion.yaml").read_text() == (tmp_path / "legion.yaml").read_text()
    assert "starter" in yaml.safe_load((example / "legion.yaml").read_text())["agents"]
    for path in (tmp_path / "agents").rglob("*.md"):
        assert (example / path.relative_to(tmp_path)).read_text() == path.read_text()
