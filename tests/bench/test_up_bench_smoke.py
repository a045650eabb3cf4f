"""The start-up benchmark's --quick run completes, reports positive figures and leaves nothing running."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.bench.bench_smoke import run_quick

pytestmark = [pytest.mark.slow, pytest.mark.nats, pytest.mark.timeout(300)]


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
    work = tmp_path / "tmp"
    work.mkdir()
    run = run_quick("up_bench.py", tmp_path, "--agents", "2", timeout=240, env={"TMPDIR": str(work)})
    assert "1. wall time" in run.stdout and "2. memory" in run.stdout
    summary = run.summary
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
