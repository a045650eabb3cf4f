"""Broker benchmark: Legion's broker paths against an unauthenticated nats-server, in one run.

    .venv/bin/python bench/broker_bench.py [--quick] [--json PATH] [--reps N]

Sections (DESIGN.md sections 2-4):

1. publish-to-consume throughput into an agent's inbox, consumed with the agent's credential by
   ``PullConsumer`` over the ``JSL.API`` service import, against the same code on a plain server,
   and against nats-py's own ``pull_subscribe(...).fetch(batch)`` loop there;
2. request/reply latency (p50/p99) through the vault's service import, against plain request/reply;
3. JetStream publish-ack latency (``Broker.js_publish``, sequential) with agent credentials;
4. replay of a 100k-event stream into an SQLite projection;
5. sections 2 and 3 under asyncio and under uvloop, interleaved per repetition.

The machine is assumed shared and noisy: every figure is a median over repetitions, variants run
back to back inside each repetition (their order rotates), and ratios are computed per repetition.
Both nats-server processes live on 127.0.0.1 with random ports and temp store dirs, and are stopped
(and the dirs removed) whatever happens. Progress goes to stderr, the table to stdout.
"""

from __future__ import annotations

import asyncio
import dataclasses
import sys
import tempfile
from collections.abc import Callable, Coroutine
from importlib.metadata import version
from pathlib import Path
from typing import Any, TypeVar

import uvloop
from _common import arg_parser, finish, latency_stats, progress, start_run
from _harness import BenchServers, ServerHost
from _replay import replay_fill, replay_round
from _report import render, summarize
from _sections import Env, Sizes, latency_round, throughput_round

T = TypeVar("T")

FULL = Sizes(
    reps=5, tp_msgs=20_000, rr_requests=2_000, rr_warmup=200, pub_count=2_000, replay_events=100_000, replay_reps=3
)
QUICK = Sizes(
    reps=1, tp_msgs=300, rr_requests=100, rr_warmup=20, pub_count=100, replay_events=500, replay_reps=1, timeout_s=30
)

LOOPS: dict[str, Callable[[], asyncio.AbstractEventLoop] | None] = {
    "asyncio": None,  # the default loop
    "uvloop": uvloop.new_event_loop,
}


def run_in(loop: str, coro: Coroutine[Any, Any, T]) -> T:
    """Run ``coro`` in a fresh event loop of kind ``loop``."""
    with asyncio.Runner(loop_factory=LOOPS[loop]) as runner:
        return runner.run(coro)


def bench(env: Env) -> dict[str, Any]:
    s = env.sizes
    raw: dict[str, Any] = {}

    tp: dict[str, dict[str, list[float]]] = {}
    for rep in range(s.reps):
        progress(f"1/4 throughput, repetition {rep + 1}/{s.reps}")
        rates = run_in("asyncio", throughput_round(env, rep, lambda m: progress("    " + m)))
        for variant, figures in rates.items():
            for key, value in figures.items():
                tp.setdefault(variant, {}).setdefault(key, []).append(value)
    raw["throughput"] = tp

    raw["request_reply"] = {loop: {} for loop in LOOPS}
    raw["js_publish"] = {loop: {} for loop in LOOPS}
    for rep in range(s.reps):
        order = list(LOOPS) if rep % 2 == 0 else list(reversed(LOOPS))
        for loop in order:
            progress(f"2-3/4 request/reply and js publish, repetition {rep + 1}/{s.reps}, {loop}")
            samples_by_section = run_in(loop, latency_round(env, rep))
            for section, variants in samples_by_section.items():
                for variant, samples in variants.items():
                    st = latency_stats(samples)
                    raw[section][loop].setdefault(variant, []).append(st)
                    progress(f"    {variant}: p50 {st['p50_us']:,.0f} us, p99 {st['p99_us']:,.0f} us")

    progress(f"4/4 replay: filling LEDGER with {s.replay_events:,} events")
    data = run_in("asyncio", replay_fill(env))
    progress(f"    filled at {data.fill_per_s:,.0f} events/s")
    replay: dict[str, list[float]] = {}
    for rep in range(s.replay_reps):
        progress(f"4/4 replay, repetition {rep + 1}/{s.replay_reps}")
        for variant, rate in run_in("asyncio", replay_round(env, data, rep, lambda m: progress("    " + m))).items():
            replay.setdefault(variant, []).append(rate)
    raw["replay"] = {"events": data.events, "fill_events_per_s": data.fill_per_s, "variants": replay}
    return raw


def main(argv: list[str] | None = None) -> int:
    parser = arg_parser(__doc__, quick="tiny smoke run: a few hundred messages, 1 repetition")
    parser.add_argument("--reps", type=int, help="repetitions (default 5, --quick 1)")
    args = parser.parse_args(argv)
    sizes = QUICK if args.quick else FULL
    if args.reps:
        sizes = dataclasses.replace(sizes, reps=args.reps)
    clock = start_run()
    with tempfile.TemporaryDirectory(prefix="legion-bench-") as tmp:
        root = Path(tmp)
        host = ServerHost()
        servers = BenchServers(root=root, host=host)
        try:
            progress("starting the legion and baseline nats-servers")
            servers.start()
            work = root / "work"
            work.mkdir()
            env = Env.create(
                legion_url=servers.legion_url,
                baseline_url=servers.baseline_url,
                admin_creds=servers.admin_creds,
                auth=servers.auth,
                work_dir=work,
                sizes=sizes,
            )
            progress(f"legion {env.legion_url}, baseline {env.baseline_url}")
            raw = bench(env)
        finally:
            try:
                servers.stop()
            finally:
                host.close()
            progress("servers stopped")
    meta = {
        **clock.meta(nats_server=True),
        "nats_py": version("nats-py"),
        "uvloop": version("uvloop"),
        "quick": args.quick,
        "sizes": dataclasses.asdict(sizes),
    }
    summary = summarize(raw)
    return finish(render(raw, summary, meta), args.json, meta, summary, raw)


if __name__ == "__main__":
    sys.exit(main())
