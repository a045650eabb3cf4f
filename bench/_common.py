"""What every benchmark here shares: progress lines, logging, the machine's figures, statistics, the table, JSON.

Imported by ``broker_bench.py``, ``agent_bench.py``, ``up_bench.py``, ``tail_bench.py`` and
``fairness_bench.py`` (and the broker benchmark's ``_report.py``), which run as scripts with ``bench/``
first on ``sys.path``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import math
import os
import platform
import signal
import statistics
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import structlog

from legion.broker import find_nats_server

__all__ = [
    "MB",
    "Clock",
    "arg_parser",
    "configure_logging",
    "finish",
    "finite",
    "header",
    "indented",
    "latency_stats",
    "median",
    "nats_server_version",
    "percentile",
    "proc_status",
    "progress",
    "start_run",
    "table",
    "unwind_on_sigterm",
    "write_json",
]

MB = 1024.0  # kB per MB (/proc and ru_maxrss report kB)


# -- the run -------------------------------------------------------------------------------------------


def progress(msg: str) -> None:
    """A timestamped progress line on stderr; stdout is for the table."""
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def configure_logging() -> None:
    """Warnings and errors of Legion's structlog loggers go to stderr; stdout is for the table."""
    structlog.configure(
        wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=False,
    )


def _interrupt(signum: int, _frame: object) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def unwind_on_sigterm() -> None:
    """SIGTERM unwinds like Ctrl-C, so the finally blocks stop what the benchmark started and remove its temp dir."""
    signal.signal(signal.SIGTERM, _interrupt)


def arg_parser(doc: str, *, quick: str) -> argparse.ArgumentParser:
    """A parser described by the first paragraph of ``doc``, with ``--quick`` (help ``quick``) and ``--json``."""
    parser = argparse.ArgumentParser(description=doc.split("\n\n", maxsplit=1)[0])
    parser.add_argument("--quick", action="store_true", help=quick)
    parser.add_argument("--json", type=Path, metavar="PATH", help="write raw numbers and summary as JSON")
    return parser


def nats_server_version() -> str:
    """``nats-server --version`` of the binary Legion finds, or ``nats-server ?``."""
    try:
        done = subprocess.run(
            [str(find_nats_server()), "--version"], check=False, capture_output=True, text=True, timeout=10
        )
    except (OSError, subprocess.SubprocessError):
        return "nats-server ?"
    return done.stdout.strip() or "nats-server ?"


@dataclasses.dataclass(frozen=True)
class Clock:
    """Started with the benchmark; :meth:`meta` gives the machine's figures for the report's header."""

    load_before: float = dataclasses.field(default_factory=lambda: os.getloadavg()[0])
    started: float = dataclasses.field(default_factory=time.monotonic)

    def meta(self, *, nats_server: bool = False) -> dict[str, Any]:
        """Python version, CPU count, duration and the 1-min load average at start and now (and nats-server's)."""
        return {
            **({"nats_server": nats_server_version()} if nats_server else {}),
            "python": platform.python_version(),
            "cpus": os.cpu_count(),
            "duration_s": time.monotonic() - self.started,
            "loadavg_1min": [round(self.load_before, 2), round(os.getloadavg()[0], 2)],
        }


def start_run(*, quiet_logs: bool = True, sigterm: bool = True) -> Clock:
    """:func:`configure_logging` and :func:`unwind_on_sigterm` (each unless turned off); a started :class:`Clock`."""
    if quiet_logs:
        configure_logging()
    if sigterm:
        unwind_on_sigterm()
    return Clock()


def finish(text: str, path: Path | None, meta: Any, summary: Any, raw: Any) -> int:
    """Print the table to stdout and :func:`write_json`; main's exit code."""
    print(text)
    write_json(path, meta, summary, raw)
    return 0


def header(meta: Mapping[str, Any]) -> str:
    """``{cpus} CPUs, {duration} s, 1-min load average {x} at start, {y} at end`` from :meth:`Clock.meta`."""
    return (
        f"{meta['cpus']} CPUs, {meta['duration_s']:.0f} s, 1-min load average {meta['loadavg_1min'][0]:.1f} "
        f"at start, {meta['loadavg_1min'][1]:.1f} at end"
    )


def finite(obj: Any) -> Any:
    """JSON has no NaN: replace it with null."""
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {k: finite(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [finite(v) for v in obj]
    return obj


def write_json(path: Path | None, meta: Any, summary: Any, raw: Any) -> None:
    """Meta, summary and raw numbers as one JSON document at ``path`` (nothing when ``path`` is None)."""
    if path is None:
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    doc = {"meta": meta, "summary": summary, "raw": raw}
    path.write_text(json.dumps(finite(doc), indent=2, sort_keys=True) + "\n", encoding="utf-8")
    progress(f"wrote {path}")


def proc_status(pid: int) -> dict[str, str]:
    """``/proc/<pid>/status`` as a dict of its fields (values unparsed, e.g. ``'  1234 kB'``)."""
    fields: dict[str, str] = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, sep, value = line.partition(":")
        if sep:
            fields[key] = value
    return fields


# -- statistics ----------------------------------------------------------------------------------------


def median(xs: Sequence[float]) -> float:
    return statistics.median(xs) if xs else math.nan


def percentile(sorted_values: Sequence[float], q: float) -> float:
    """Linear-interpolated percentile (``q`` in 0..100) of an already sorted sequence."""
    if not sorted_values:
        return math.nan
    pos = (len(sorted_values) - 1) * q / 100
    lo, hi = math.floor(pos), math.ceil(pos)
    return sorted_values[lo] + (sorted_values[hi] - sorted_values[lo]) * (pos - lo)


def latency_stats(samples_ns: Sequence[int]) -> dict[str, float]:
    xs = sorted(samples_ns)
    us = [x / 1000 for x in xs]
    return {
        "n": len(xs),
        "p50_us": percentile(us, 50),
        "p90_us": percentile(us, 90),
        "p99_us": percentile(us, 99),
        "max_us": us[-1],
        "mean_us": statistics.fmean(us),
        "ops_per_s": len(xs) / (sum(xs) / 1e9),
    }


# -- the table -----------------------------------------------------------------------------------------


def table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    """Header, rule and rows; the first column left-aligned, the others right-aligned."""
    widths = [max(len(str(c)) for c in col) for col in zip(headers, *rows, strict=True)]
    fmt = ["<" if i == 0 else ">" for i in range(len(headers))]

    def line(cells: Sequence[str]) -> str:
        return "  ".join(f"{c:{a}{w}}" for c, a, w in zip(cells, fmt, widths, strict=True))

    return [line(headers), line(["-" * w for w in widths]), *(line(r) for r in rows)]


def indented(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    """:func:`table`, each line indented by three spaces as under a numbered section title."""
    return ["   " + x for x in table(headers, rows)]
