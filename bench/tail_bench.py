"""Throughput of ``legion tail``: fill EVENTS with N events, then time full reads.

    .venv/bin/python bench/tail_bench.py [--events 100000] [--reps 3] [--quick] [--json PATH]

Starts a fleet's NATS side (embedded nats-server, :class:`legion.runtime.FleetNats`) in a temp dir and
publishes N ``task.started.v1`` events from ten sources with the admin credential: core publishes with
a reply inbox, so the PubAcks come back to one subscription and at most WINDOW publishes are un-acked
at a time (pipelined, no round trip per event); the fill ends when every PubAck is in and the stream
holds N. Then, per repetition, it runs ``legion tail --json --from-seq 1`` as a subprocess with stdout
to /dev/null, and, as the baseline measured in the same run, the same command on an empty range (one
past the last sequence): process start, imports, connect and consumer creation. Reported: events/s
with the start-up, events/s without it (the read alone: elapsed minus the median start-up), the fill
time and rate, and the peak RSS of the tail processes. An untimed last run prints into a file whose
lines are counted and the first and last parsed: the reads printed every event.

1M events (``--events 1000000``) take about a minute and a half on two busy cores and ~0.7 GB of
temp disk (the stream and the checked output); the default stays at 100k. Progress goes to stderr,
the table to stdout.
"""

from __future__ import annotations

import asyncio
import json
import math
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from _common import MB, arg_parser, finish, header, median, progress, start_run
from nats.aio.msg import Msg

from legion.contracts import TaskStarted, encode, subjects
from legion.runtime import FleetNats

WINDOW = 2000  # un-acked publishes in flight
SOURCES = [f"agent-{i}" for i in range(10)]
STARTUP_RUNS = 3
TAIL_TIMEOUT_S = 600.0


async def fill(fleet: FleetNats, n: int) -> int:
    """Publish ``n`` events, at most WINDOW un-acked at a time; returns when every PubAck is in.
    Returns the number of PubAcks that carried an error (the stream refused the event)."""
    admin = fleet.admin
    assert admin is not None
    inbox = admin.nc.new_inbox()
    acked = errors = 0
    room = asyncio.Semaphore(WINDOW)
    done = asyncio.Event()

    async def on_ack(msg: Msg) -> None:
        nonlocal acked, errors
        acked += 1
        errors += b'"error"' in msg.data
        room.release()
        if acked == n:
            done.set()

    sub = await admin.nc.subscribe(inbox, cb=on_ack, pending_msgs_limit=-1)
    every = max(n // 5, 1)
    targets = [(source, subjects.EVENTS.render(source=source, type="task.started")) for source in SOURCES]
    for i in range(n):
        source, subject = targets[i % len(targets)]  # rendered once: render() costs more than encode()
        body, hdrs = encode(TaskStarted(task_id=f"t{i}", agent=source))
        hdrs["Legion-Trace"] = f"{i:032x}"
        await room.acquire()
        await admin.nc.publish(subject, body, reply=inbox, headers=hdrs)
        if (i + 1) % every == 0:
            progress(f"    published {i + 1:,}")
    async with asyncio.timeout(120):  # only the last WINDOW acks are outstanding here
        await done.wait()
    await sub.unsubscribe()
    return errors


async def timed(cmd: list[str], cwd: Path) -> float:
    """Wall time of ``cmd`` with stdout to /dev/null; a non-zero exit ends the benchmark."""
    t0 = time.perf_counter()
    proc = await asyncio.create_subprocess_exec(*cmd, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    async with asyncio.timeout(TAIL_TIMEOUT_S):
        _, err = await proc.communicate()
    elapsed = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed ({proc.returncode}): {err.decode()}")
    return elapsed


def _read_back(out: Path) -> tuple[int, int, bytes, bytes]:
    """Lines, bytes, first and last line of ``out``, which is removed."""
    lines = 0
    size = out.stat().st_size
    with out.open("rb") as f:
        first = f.readline()
        f.seek(0)
        while chunk := f.read(1 << 20):
            lines += chunk.count(b"\n")
        f.seek(max(size - (1 << 16), 0))
        last = f.read().rstrip(b"\n").rsplit(b"\n", 1)[-1]
    out.unlink()
    return lines, size, first, last


async def check_output(cmd: list[str], cwd: Path, out: Path, stored: int) -> dict[str, Any]:
    """Run ``cmd`` once into ``out``; count its lines and parse the first and the last."""
    with out.open("wb") as f:
        proc = await asyncio.create_subprocess_exec(*cmd, cwd=cwd, stdout=f, stderr=subprocess.PIPE)
        async with asyncio.timeout(TAIL_TIMEOUT_S):
            _, err = await proc.communicate()
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed ({proc.returncode}): {err.decode()}")
    lines, size, first, last = _read_back(out)
    if not first:
        raise SystemExit("legion tail printed nothing")
    head, tail = json.loads(first), json.loads(last)
    if lines != stored or head.get("seq") != 1 or tail.get("seq") != stored:
        raise SystemExit(f"legion tail printed {lines} lines (seq {head.get('seq')}..{tail.get('seq')}), not {stored}")
    return {"lines": lines, "bytes": size}


async def run(n: int, reps: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="legion-tail-bench-") as tmp:
        fleet_dir = Path(tmp)
        fleet = FleetNats(fleet_dir)
        await fleet.start()
        try:
            progress(f"filling EVENTS with {n:,} events ({WINDOW} PubAcks in flight)")
            t0 = time.perf_counter()
            errors = await fill(fleet, n)
            fill_s = time.perf_counter() - t0
            stored = (await fleet.health()).streams["EVENTS"]
            progress(f"    filled with {stored:,} events in {fill_s:.1f} s = {stored / fill_s:,.0f} events/s")
            if errors or stored != n:
                raise SystemExit(f"the stream holds {stored} events, not {n}; {errors} PubAcks carried an error")
            cmd = [sys.executable, "-m", "legion", "tail", "--json", "--from-seq"]
            startup: list[float] = []
            for i in range(STARTUP_RUNS):  # the baseline: the same command on an empty range
                startup.append(await timed([*cmd, str(stored + 1)], fleet_dir))
                progress(f"start-up run {i + 1}/{STARTUP_RUNS}: {startup[-1]:.2f} s")
            full: list[float] = []
            for rep in range(reps):
                full.append(await timed([*cmd, "1"], fleet_dir))
                progress(f"full read {rep + 1}/{reps}: {full[-1]:.2f} s = {stored / full[-1]:,.0f} events/s")
            peak_kb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss  # only tail processes were waited for
            progress("checking the output of one more (untimed) full read")
            checked = await check_output([*cmd, "1"], fleet_dir, fleet_dir / "tail.jsonl", stored)
        finally:
            await fleet.stop()
    return {
        "events": stored,
        "fill_s": fill_s,
        "startup_s": startup,
        "full_s": full,
        "tail_peak_rss_kb": peak_kb,
        "checked": checked,
    }


def summarize(raw: dict[str, Any]) -> dict[str, float]:
    n, startup = raw["events"], median(raw["startup_s"])
    reads = [n / (t - startup) for t in raw["full_s"] if t > startup]  # none when lost in the start-up's noise
    return {
        "events": n,
        "fill_s": raw["fill_s"],
        "fill_events_per_s": n / raw["fill_s"],
        "startup_s": startup,
        "full_s": median(raw["full_s"]),
        "events_per_s": median([n / t for t in raw["full_s"]]),
        "events_per_s_without_startup": median(reads) if reads else math.nan,
        "tail_peak_rss_mb": raw["tail_peak_rss_kb"] / MB,
        "output_bytes_per_event": raw["checked"]["bytes"] / n,
    }


def render(s: dict[str, float], raw: dict[str, Any], meta: dict[str, Any]) -> str:
    full = raw["full_s"]
    return "\n".join(
        [
            f"legion tail --json --from-seq 1 over {s['events']:,} events (stdout to /dev/null)",
            f"  Python {meta['python']}, {header(meta)}; "
            f"medians of {len(full)} reads, start-up: median of {len(raw['startup_s'])} runs on an empty range",
            f"  fill:                  {s['fill_s']:.1f} s = {s['fill_events_per_s']:,.0f} events/s "
            f"({WINDOW} PubAcks in flight)",
            f"  full read:             {s['full_s']:.2f} s (min..max {min(full):.2f}..{max(full):.2f})",
            f"  with start-up:         {s['events_per_s']:,.0f} events/s",
            f"  start-up (baseline):   {s['startup_s']:.2f} s (process start, imports, connect, consumer)",
            f"  without start-up:      {_rate(s['events_per_s_without_startup'])}",
            f"  tail peak RSS:         {s['tail_peak_rss_mb']:.1f} MB",
            f"  output checked:        {raw['checked']['lines']:,} lines, {s['output_bytes_per_event']:.0f} B/event",
        ]
    )


def _rate(x: float) -> str:
    if not math.isfinite(x):
        return "- (the full read took no longer than the start-up)"
    return f"{x:,.0f} events/s (full read minus the start-up)"


def main(argv: list[str] | None = None) -> int:
    parser = arg_parser(__doc__, quick="smoke run: 2000 events, 1 read")
    parser.add_argument("--events", type=int, help="events to publish (default 100000, --quick 2000)")
    parser.add_argument("--reps", type=int, help="timed full reads (default 3, --quick 1)")
    args = parser.parse_args(argv)
    n = args.events or (2_000 if args.quick else 100_000)
    reps = args.reps or (1 if args.quick else 3)
    clock = start_run(sigterm=False)
    raw = asyncio.run(run(n, reps))
    meta = {**clock.meta(), "window": WINDOW}
    summary = summarize(raw)
    return finish(render(summary, raw, meta), args.json, meta, summary, raw)


if __name__ == "__main__":
    sys.exit(main())
