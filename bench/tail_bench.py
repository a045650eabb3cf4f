"""Throughput of ``legion tail``: fill EVENTS with N events, then time a full read.

    .venv/bin/python bench/tail_bench.py [--events 100000]

Starts a fleet (embedded nats-server) in a temp dir, publishes N ``task.started.v1`` events with
the admin credential (acked, a window of in-flight publishes), then runs
``legion tail --json --from-seq 1`` as a subprocess with stdout to /dev/null and reports events/s.
"""

from __future__ import annotations

import argparse
import asyncio
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from nats.aio.msg import Msg

from legion.contracts import TaskStarted, encode, subjects
from legion.runtime import FleetNats

WINDOW = 2000


async def fill(fleet: FleetNats, n: int) -> None:
    """Publish ``n`` events, at most WINDOW un-acked at a time; returns when all are stored."""
    admin = fleet.admin
    assert admin is not None
    inbox = admin.nc.new_inbox()
    acked = 0
    room = asyncio.Semaphore(WINDOW)
    done = asyncio.Event()

    async def on_ack(_msg: Msg) -> None:
        nonlocal acked
        acked += 1
        room.release()
        if acked == n:
            done.set()

    sub = await admin.nc.subscribe(inbox, cb=on_ack, pending_msgs_limit=-1)
    sources = [f"agent-{i}" for i in range(10)]
    for i in range(n):
        body, hdrs = encode(TaskStarted(task_id=f"t{i}", agent=sources[i % 10]))
        hdrs["Legion-Trace"] = f"{i:032x}"
        await room.acquire()
        await admin.nc.publish(
            subjects.EVENTS.render(source=sources[i % 10], type="task.started"), body, reply=inbox, headers=hdrs
        )
    async with asyncio.timeout(120):
        await done.wait()
    await sub.unsubscribe()


async def main(n: int) -> None:
    with tempfile.TemporaryDirectory(prefix="legion-tail-bench-") as tmp:
        fleet_dir = Path(tmp)
        fleet = FleetNats(fleet_dir)
        await fleet.start()
        try:
            t0 = time.perf_counter()
            await fill(fleet, n)
            fill_s = time.perf_counter() - t0
            stored = (await fleet.health()).streams["EVENTS"]
            print(f"filled EVENTS with {stored} events in {fill_s:.1f} s", file=sys.stderr)
            cmd = [sys.executable, "-m", "legion", "tail", "--json", "--from-seq", "1"]
            t0 = time.perf_counter()
            proc = await asyncio.create_subprocess_exec(
                *cmd, cwd=fleet_dir, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
            )
            _, err = await proc.communicate()
            elapsed = time.perf_counter() - t0
            if proc.returncode != 0:
                raise SystemExit(f"legion tail failed ({proc.returncode}): {err.decode()}")
            # the same command on an empty range: process start, imports, connect, consumer create
            t0 = time.perf_counter()
            empty = await asyncio.create_subprocess_exec(*cmd[:-1], str(stored + 1), cwd=fleet_dir)
            await empty.wait()
            startup = time.perf_counter() - t0
            rate = stored / elapsed
            print(f"legion tail --json --from-seq 1: {stored} events in {elapsed:.2f} s = {rate:,.0f} events/s")
            steady = stored / max(elapsed - startup, 1e-9)
            print(f"without the {startup:.2f} s of process start and connect: {steady:,.0f} events/s")
        finally:
            await fleet.stop()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=100_000, help="events to publish (default 100000)")
    asyncio.run(main(parser.parse_args().events))
