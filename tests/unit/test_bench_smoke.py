"""The broker benchmark's --quick run completes and reports every section with positive figures."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

pytestmark = [pytest.mark.slow, pytest.mark.nats]

BENCH = Path(__file__).resolve().parents[2] / "bench" / "broker_bench.py"
SECTIONS = ("throughput", "request_reply", "js_publish", "replay", "uvloop")


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


def test_quick_bench_reports_every_section(tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    done = subprocess.run(
        [sys.executable, str(BENCH), "--quick", "--json", str(out)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-4000:]
    assert "1. publish-to-consume throughput" in done.stdout
    doc = json.loads(out.read_text(encoding="utf-8"))
    summary = doc["summary"]
    assert set(SECTIONS) <= summary.keys()
    for section in SECTIONS:
        figures = _numbers(summary[section], section)
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
