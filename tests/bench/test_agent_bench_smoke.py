"""The agent benchmark's --quick run completes and reports every figure, all of them positive."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from tests.bench.bench_smoke import numbers, run_quick

pytestmark = [pytest.mark.slow, pytest.mark.nats]

SECTIONS = ("memory", "litellm", "chat", "task")


def test_quick_agent_bench_reports_every_figure(tmp_path: Path) -> None:
    run = run_quick("agent_bench.py", tmp_path)
    assert "2. per-turn latency" in run.stdout
    doc, summary = run.doc, run.summary
    assert set(SECTIONS) <= summary.keys()
    for section in ("memory", "chat", "task"):
        figures = numbers(summary[section], section)
        assert figures, f"{section} has no figures"
        for path, value in figures:
            if "_growth_" in path:  # RSS may stay flat (or shrink) over a few turns
                assert math.isfinite(value), path
            else:
                assert value > 0, f"{path} = {value}"
    assert isinstance(summary["litellm"]["never_imported"], bool)
    assert len(doc["raw"]["chat"]["agent_ns"]) == doc["meta"]["sizes"]["turns"]
