"""What the benchmarks' smoke tests share: run ``bench/<name>`` with --quick and --json, walk its figures."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parents[2] / "bench"


@dataclass(frozen=True)
class QuickRun:
    stdout: str
    doc: dict[str, Any]  # the --json document: meta, summary, raw

    @property
    def summary(self) -> dict[str, Any]:
        return dict(self.doc["summary"])


def run_quick(
    script: str,
    tmp_path: Path,
    *args: str,
    timeout: float = 120,
    env: dict[str, str] | None = None,
) -> QuickRun:
    """``python bench/<script> --quick [args] --json <tmp>``; asserts exit 0 and returns stdout and the JSON."""
    out = tmp_path / "bench.json"
    done = subprocess.run(
        [sys.executable, str(BENCH_DIR / script), "--quick", *args, "--json", str(out)],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        env=None if env is None else {**os.environ, **env},
    )
    assert done.returncode == 0, done.stderr[-4000:]
    return QuickRun(stdout=done.stdout, doc=json.loads(out.read_text(encoding="utf-8")))


def numbers(node: Any, path: str = "") -> list[tuple[str, float]]:
    """Every number under ``node`` with its dotted path; JSON null (a NaN) as NaN, booleans skipped."""
    if isinstance(node, bool):
        return []
    if isinstance(node, int | float):
        return [(path, float(node))]
    if isinstance(node, dict):
        return [item for k, v in node.items() for item in numbers(v, f"{path}.{k}")]
    if node is None:
        return [(path, math.nan)]
    return []
