"""``runtime.vault`` and ``agents.<a>.quota`` in legion.yaml: defaults, key-by-key overrides, errors that
name the key, the value and the fix."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from legion.contracts.errors import ConfigError
from legion.runtime.config import FleetConfig, Quota, load_config


def _load(tmp_path: Path, doc: dict[str, Any]) -> FleetConfig:
    (tmp_path / "legion.yaml").write_text(yaml.safe_dump(doc), encoding="utf-8")
    return load_config(tmp_path)


def _error(tmp_path: Path, doc: dict[str, Any]) -> str:
    with pytest.raises(ConfigError) as caught:
        _load(tmp_path, doc)
    return str(caught.value)


def test_every_agent_gets_the_default_quota_without_any_setting(tmp_path: Path) -> None:
    config = _load(tmp_path, {"agents": {"alpha": {}}})
    assert config.runtime.vault.concurrency == 64
    assert config.quota_of("alpha") == Quota() == Quota(concurrency=8, queue=64, rate_per_s=50, burst=100)
    assert config.quota_of("not-configured") == Quota()


def test_an_agents_quota_overrides_the_fleet_default_key_by_key(tmp_path: Path) -> None:
    config = _load(
        tmp_path,
        {
            "runtime": {"vault": {"concurrency": 100, "agent_quota": {"concurrency": 4, "rate_per_s": 10}}},
            "agents": {"alpha": {"quota": {"concurrency": 16, "rate_per_s": None}}, "beta": {}},
        },
    )
    assert config.quota_of("alpha") == Quota(concurrency=16, queue=64, rate_per_s=None, burst=100)
    assert config.quota_of("beta") == Quota(concurrency=4, queue=64, rate_per_s=10, burst=100)


@pytest.mark.parametrize(
    ("doc", "fragments"),
    [
        (
            {"runtime": {"vault": {"agent_quota": {"concurrency": 0}}}},
            ["runtime.vault.agent_quota.concurrency:", "from 1 to 4096", "(got 0)", "e.g. 8"],
        ),
        (
            {"agents": {"alpha": {"quota": {"queue": -1}}}},
            ["agents.alpha.quota.queue:", "from 0 to", "(got -1)", "e.g. 64"],
        ),
        (
            {"agents": {"alpha": {"quota": {"rate_per_s": 0}}}},
            ["agents.alpha.quota.rate_per_s:", "positive", "null turns the rate limit off", "(got 0)"],
        ),
        (
            {"agents": {"alpha": {"quota": {"burst": 0}}}},
            ["agents.alpha.quota.burst:", "from 1 to", "(got 0)"],
        ),
        (
            {"runtime": {"vault": {"concurrency": 0}}},
            ["runtime.vault.concurrency:", "from 1 to 4096", "(got 0)", "e.g. 64"],
        ),
        (
            {"agents": {"alpha": {"quota": {"concurency": 8}}}},
            ["agents.alpha.quota.concurency:", "unknown key 'concurency'", "check its spelling"],
        ),
        (
            {"agents": {"alpha": {"quota": {"concurrency": "many"}}}},
            ["agents.alpha.quota.concurrency:", "valid integer", "(got 'many')"],
        ),
    ],
)
def test_a_bad_value_names_the_key_the_value_and_the_fix(
    tmp_path: Path, doc: dict[str, Any], fragments: list[str]
) -> None:
    message = _error(tmp_path, doc)
    assert message.startswith(f"{tmp_path / 'legion.yaml'}: invalid configuration"), message
    for fragment in fragments:
        assert fragment in message, message


def test_an_agent_cap_above_the_vaults_cap_is_refused_with_both_keys(tmp_path: Path) -> None:
    message = _error(
        tmp_path, {"runtime": {"vault": {"concurrency": 10}}, "agents": {"alpha": {"quota": {"concurrency": 11}}}}
    )
    assert "agents.alpha.quota.concurrency (11) is more than runtime.vault.concurrency (10)" in message
    assert "lower the first or raise the second" in message

    message = _error(tmp_path, {"runtime": {"vault": {"concurrency": 4}}})  # the default agent cap is 8
    assert "runtime.vault.agent_quota.concurrency (8) is more than runtime.vault.concurrency (4)" in message
