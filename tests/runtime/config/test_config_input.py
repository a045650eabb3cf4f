"""legion.yaml input a user gets wrong: refused with a ConfigError naming the file, the key and the
fix; never merged silently, never a traceback."""

from __future__ import annotations

from pathlib import Path

import pytest

from legion.contracts.errors import ConfigError
from legion.runtime.config import load_config


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (b"agents:\n  alpha: {}\n  alpha: {role: x}\n", "key 'alpha' is given twice (first on line 2)"),
        (b"models:\n  m: {model: ''}\n", "models.m.model"),
        (b"models:\n  m: {model: '   '}\n", "models.m.model"),
        (b"agents:\n  a:\n    budget: {daily_usd: 1e400}\n", "agents.a.budget.daily_usd"),
        (b"agents:\n  a:\n    budget: {monthly_usd: .inf}\n", "agents.a.budget.monthly_usd"),
        (b"agents:\n  a:\n    budget: {daily_usd: -1}\n", "agents.a.budget.daily_usd"),
        (b"models:\n  m: {model: x, price: {input_per_mtok: .nan, output_per_mtok: 1}}\n", "input_per_mtok"),
        (b'fleet: x\nagents:\n  a: {role: "\xff"}\n', "line 3: byte 0xff is not UTF-8"),
    ],
    ids=["duplicate-agent", "empty-model", "blank-model", "1e400", "inf", "negative", "nan-price", "not-utf8"],
)
def test_bad_legion_yaml_is_refused_naming_file_and_key(tmp_path: Path, text: bytes, expected: str) -> None:
    (tmp_path / "legion.yaml").write_bytes(text)
    with pytest.raises(ConfigError) as caught:
        load_config(tmp_path)
    assert expected in str(caught.value)
    assert str(tmp_path / "legion.yaml") in str(caught.value)


def test_a_large_but_sane_budget_is_kept(tmp_path: Path) -> None:
    (tmp_path / "legion.yaml").write_text("agents:\n  a:\n    budget: {daily_usd: 5000, monthly_usd: 1e5}\n")
    budget = load_config(tmp_path).agents["a"].budget
    assert (budget.daily_usd, budget.monthly_usd) == (5000, 100000)
