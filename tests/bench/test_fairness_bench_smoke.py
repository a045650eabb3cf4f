"""The fairness benchmark's --quick run completes, reports both phases and the flood, and stops its fleet."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.bench.bench_smoke import run_quick

pytestmark = [pytest.mark.slow, pytest.mark.nats, pytest.mark.timeout(300)]


def test_quick_fairness_bench_reports_idle_and_flooded_latency(tmp_path: Path) -> None:
    work = tmp_path / "tmp"
    work.mkdir()
    run = run_quick(
        "fairness_bench.py", tmp_path, "--flood", "100", "--samples", "10", timeout=240, env={"TMPDIR": str(work)}
    )
    assert "1. probe's latency" in run.stdout and "2. what the flood got" in run.stdout
    queued = run.summary["queued"]
    assert queued["idle"]["n"] == queued["flood"]["n"] == 10
    assert queued["p50_ratio"] > 0 and queued["p99_ratio"] > 0
    flood = queued["flood_counts"]
    assert flood["answered"].get("reply", 0) > 0, "the flood was served"
    assert flood["outstanding_low"] >= 90, "the flood kept its calls outstanding during the window"
    assert list(work.iterdir()) == [], "the benchmark's temp dir was not removed"
