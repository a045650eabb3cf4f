"""The broker benchmark's --quick run completes and reports every section with positive figures."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from tests.bench.bench_smoke import numbers, run_quick

pytestmark = [pytest.mark.slow, pytest.mark.nats]

SECTIONS = ("throughput", "request_reply", "js_publish", "replay", "uvloop")


def test_quick_bench_reports_every_section(tmp_path: Path) -> None:
    run = run_quick("broker_bench.py", tmp_path)
    assert "1. publish-to-consume throughput" in run.stdout
    summary = run.summary
    assert set(SECTIONS) <= summary.keys()
    for section in SECTIONS:
        figures = numbers(summary[section], section)
        assert figures, f"{section} has no figures"
        for path, value in figures:
            if path.endswith("_pct"):  # uvloop gains may be negative on a noisy machine
                assert math.isfinite(value), path
            else:
                assert value > 0, f"{path} = {value}"
    for loop in ("asyncio", "uvloop"):
        assert len(summary["request_reply"][loop]) == 4
        assert len(summary["js_publish"][loop]) == 4
    assert len(summary["uvloop"]["request_reply"]) == 4
    assert summary["replay"]["events"] > 0
