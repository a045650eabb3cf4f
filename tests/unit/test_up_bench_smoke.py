"""The start-up benchmark's --quick run completes, reports positive figures and leaves nothing running."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.slow, pytest.mark.nats, pytest.mark.timeout(300)]

BENCH = Path(__file__).resolve().parents[2] / "bench" / "up_bench.py"


def _processes_under(root: Path) -> list[str]:
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            argv = (proc / "cmdline").read_bytes().decode(errors="replace").replace("\0", " ")
        except OSError:
            continue
        if str(root) in argv:
            found.append(f"{proc.name}: {argv}")
    return found


def test_quick_up_bench_reports_times_and_memory_and_stops_every_fleet(tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    work = tmp_path / "tmp"
    work.mkdir()
    done = subprocess.run(
        [sys.executable, str(BENCH), "--quick", "--agents", "2", "--json", str(out)],
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
        env={**os.environ, "TMPDIR": str(work)},
    )
    assert done.returncode == 0, done.stderr[-4000:]
    assert "1. wall time" in done.stdout and "2. memory" in done.stdout
    summary = json.loads(out.read_text(encoding="utf-8"))["summary"]
    assert set(summary["cold"]) == {"0", "2"}
    for key, s in summary["cold"].items():
        assert s["reps"] == 1
        assert s["up_s"] > 0 and s["down_s"] > 0, key
        assert s["memory"]["total_rss_mb"] > s["memory"]["vault_rss_mb"] > 0, key
    agents = summary["cold"]["2"]["memory"]
    assert agents["agent_rss_max_mb"] >= agents["agent_rss_median_mb"] > 0
    assert summary["warm"]["agents"] == 2 and summary["warm"]["up_s"] > 0
    assert not _processes_under(work), "a fleet process outlived the benchmark"
    assert list(work.iterdir()) == [], "the benchmark's temp dir was not removed"
