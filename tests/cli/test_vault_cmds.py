"""`legion vault add|ls|rm`: secrets in <fleet>/.env, mode 0600, never printed, read by the vault's own loaders."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from typer.testing import CliRunner

from legion.actors.vault.credentials import CredentialStore, env_name
from legion.actors.vault.keys import ProviderKeys, key_env_name
from legion.actors.vault.offline import OFFLINE_MODEL
from legion.cli import app
from legion.cli.console import secrets
from legion.contracts import ConfigError
from legion.runtime import load_config

LEGION = [sys.executable, "-m", "legion"]
YAML = """\
models:
  main: {model: openai/gpt-4o-mini, key: openai}
  local: {model: legion/offline}
agents:
  alpha: {model: main, allowed_apis: [llm, http], credentials: [github-token]}
"""


def _run(*args: str, cwd: Path, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LEGION_SYSTEM_", "LEGION_CRED_"))}
    return subprocess.run(
        [*LEGION, *args], cwd=cwd, input=stdin, capture_output=True, text=True, timeout=60, check=False, env=env
    )


@pytest.fixture
def fleet(tmp_path: Path) -> Path:
    (tmp_path / "legion.yaml").write_text(YAML)
    return tmp_path


def _secret() -> str:
    return f"sk-cli-{uuid.uuid4().hex}"


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_add_ls_rm_round_trip_never_prints_the_value(fleet: Path) -> None:
    value = _secret()
    added = _run("vault", "add", "openai", "--value-stdin", cwd=fleet, stdin=value + "\n")
    assert added.returncode == 0, added.stderr
    assert "LEGION_SYSTEM_OPENAI" in added.stdout
    assert "restart vault`" in added.stdout, "it says how the vault picks the change up"
    assert _mode(fleet / ".env") == 0o600

    keys = ProviderKeys.load(load_config(fleet), fleet_dir=fleet, environ={})
    assert keys.get("openai") == value, "the vault's own loader reads what was added"

    listed = _run("vault", "ls", "--json", cwd=fleet)
    assert listed.returncode == 0, listed.stderr
    rows = {r["name"]: r for r in json.loads(listed.stdout)}
    assert rows["openai"]["kind"] == "system"
    assert rows["openai"]["set"] is True and rows["openai"]["in_env_file"] is True
    assert rows["openai"]["referenced_by"] == ["model main"]
    assert rows["github-token"]["set"] is False
    assert rows["github-token"]["kind"] == "credential"
    assert rows["github-token"]["referenced_by"] == ["agent alpha"]
    assert "local" not in rows, "the offline model needs no key"
    text = _run("vault", "ls", cwd=fleet)
    assert "NOT SET" in text.stdout and "openai" in text.stdout

    removed = _run("vault", "rm", "openai", cwd=fleet)
    assert removed.returncode == 0, removed.stderr
    assert ProviderKeys.load(load_config(fleet), fleet_dir=fleet, environ={}).get("openai") is None
    after = {r["name"]: r for r in json.loads(_run("vault", "ls", "--json", cwd=fleet).stdout)}
    assert after["openai"]["set"] is False

    for result in (added, listed, text, removed):
        assert value not in result.stdout + result.stderr


def test_a_credential_is_read_by_the_credential_store(fleet: Path) -> None:
    value = _secret()
    added = _run("vault", "add", "github-token", "--value-stdin", cwd=fleet, stdin=value)
    assert added.returncode == 0, added.stderr
    assert "LEGION_CRED_GITHUB_TOKEN" in added.stdout, "legion.yaml uses it as a credential: the kind is inferred"
    assert value not in added.stdout + added.stderr
    store = CredentialStore.load(fleet, environ={})
    assert "github_token" in store.names()
    assert store.redactor()(f"x{value}x") == "x$CRED{github_token}x"


def test_the_hidden_prompt_asks_twice_and_echoes_nothing(fleet: Path) -> None:
    value = _secret()
    result = CliRunner().invoke(
        app, ["-C", str(fleet), "vault", "add", "openai", "--system"], input=f"{value}\n{value}\n"
    )
    assert result.exit_code == 0, result.output
    assert value not in result.output
    assert "value of openai" in result.output and "Repeat for confirmation" in result.output
    assert ProviderKeys.load(load_config(fleet), fleet_dir=fleet, environ={}).get("openai") == value


def test_replacing_needs_force_and_other_lines_stay(fleet: Path) -> None:
    env = fleet / ".env"
    env.write_text("# my keys\nOTHER=1\n\nLEGION_SYSTEM_OPENAI=old-value\nexport TAIL='x y'  # note\n")
    env.chmod(0o600)
    refused = _run("vault", "add", "openai", "--value-stdin", cwd=fleet, stdin=_secret())
    assert refused.returncode != 0
    assert "--force" in refused.stderr
    value = _secret()
    done = _run("vault", "add", "openai", "--value-stdin", "--force", cwd=fleet, stdin=value)
    assert done.returncode == 0, done.stderr
    assert "replaced" in done.stdout
    text = env.read_text()
    assert text.startswith("# my keys\nOTHER=1\n\n")
    assert "export TAIL='x y'  # note\n" in text
    assert "old-value" not in text
    _run("vault", "rm", "openai", cwd=fleet)
    assert env.read_text() == "# my keys\nOTHER=1\n\nexport TAIL='x y'  # note\n"


def test_a_loose_env_file_is_fixed_with_a_warning(fleet: Path) -> None:
    env = fleet / ".env"
    env.write_text("OTHER=1\n")
    env.chmod(0o644)
    result = _run("vault", "add", "openai", "--value-stdin", cwd=fleet, stdin=_secret())
    assert result.returncode == 0, result.stderr
    assert "0644" in result.stderr and "0600" in result.stderr
    assert _mode(env) == 0o600


def test_values_with_quotes_and_backslashes_round_trip(fleet: Path) -> None:
    value = "a'b\\c\"d $HOME #x"
    secrets.add_secret(fleet, "openai", value)
    assert ProviderKeys.load(load_config(fleet), fleet_dir=fleet, environ={}).get("openai") == value


@pytest.mark.parametrize("name", ["OpenAI", "a.b", "a b", "x" * 65, ""])
def test_invalid_names_are_refused_with_the_rule(fleet: Path, name: str) -> None:
    with pytest.raises(ConfigError, match=r"must match \[a-z0-9_-\]\{1,64\}"):
        secrets.add_secret(fleet, name, "value-123456")
    assert not (fleet / ".env").exists()


def test_invalid_name_through_the_cli_exits_2_before_asking(fleet: Path) -> None:
    result = _run("vault", "add", "Open.AI", cwd=fleet)
    assert result.returncode == 2
    assert "must match [a-z0-9_-]{1,64}" in result.stderr
    assert "value of" not in result.stdout


def test_rm_of_an_unknown_name_says_so(fleet: Path) -> None:
    result = _run("vault", "rm", "nothing", cwd=fleet)
    assert result.returncode == 2
    assert "LEGION_SYSTEM_NOTHING" in result.stderr


@pytest.mark.parametrize("name", ["openai", "github-token", "a_b-c9"])
def test_variable_names_match_the_vaults_loaders(name: str) -> None:
    assert secrets.env_var(name, "system") == key_env_name(name)
    assert secrets.env_var(name, "credential") == env_name(name)
    assert secrets.OFFLINE_MODEL == OFFLINE_MODEL
