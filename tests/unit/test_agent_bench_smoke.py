"""The agent benchmark's --quick run completes and reports every figure, all of them positive."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

pytestmark = [pytest.mark.slow, pytest.mark.nats]

BENCH = Path(__file__).resolve().parents[2] / "bench" / "agent_bench.py"
SECTIONS = ("memory", "litellm", "chat", "task")


def _numbers(node: Any, path: str = "") -> list[tuple[str, float]]:
    if isinstance(node, bool):
        return []
    if isinstance(node, int | float):
        return [(path, float(node))]
    if isinstance(node, dict):
        return [item for k, v in node.items() for item in _numbers(v, f"{path}.{k}")]
    if node is None:
        return [(path, math.nan)]
    return []


def test_quick_agent_bench_reports_every_figure(tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    done = subprocess.run(
        [sys.executable, str(BENCH), "--quick", "--json", str(out)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-4000:]
    assert "2. per-turn latency" in done.stdout
    doc = json.loads(out.read_text(encoding="utf-8"))
    summary = doc["summary"]
    assert set(SECTIONS) <= summary.keys()
    for section in ("memory", "chat", "task"):
        figures = _numbers(summary[section], section)
        assert figures, f"{section} has no figures"
        for path, value in figures:
            if "_growth_" in path:  # RSS may stay flat (or shrink) over a few turns
                assert math.isfinite(value), path
            else:
                assert value > 0, f"{path} = {value}"
    assert isinstance(summary["litellm"]["never_imported"], bool)
    assert len(doc["raw"]["chat"]["agent_ns"]) == doc["meta"]["sizes"]["turns"]
