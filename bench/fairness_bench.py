"""Fairness benchmark: one agent's flood of 3,000 concurrent vault calls against another agent's calls.

    .venv/bin/python bench/fairness_bench.py [--quick] [--json PATH] [--flood N] [--samples N]

A real fleet per scenario (``legion up -d`` on a temp dir: the embedded nats-server, the ledger, the
vault and two agents, ``flood`` and ``probe``, on the built-in offline model, which costs 0, so no
budget ever stops a flood). The benchmark connects with each agent's own credential:

1. ``probe`` makes calls one after another on ``legion.vault.probe.llm`` (LlmRequest, offline model),
   timed from request to reply: idle, then while ``flood`` keeps N (3,000) calls outstanding from its
   own process (``bench/_flood.py``: every answered call, reply or refusal, is sent again at once),
   then idle again. Reported: p50 and p99 of each, and the ratio flood / idle (before) of the same
   run. The goal is within 2x.
2. what the flood got during the probe's window: replies, refusals by code, and the fewest calls it
   had outstanding (the flood was real the whole time).

Scenarios: ``burst``, the issue's case: ``flood`` has the default quota (8 in progress, 64 waiting,
50 a second) and sends N calls at once, none again; the window starts with the burst (the flood's
calls outstanding at its end are reported). ``defaults``: the same quota, every answered or refused
call sent again at once: a storm of refusals. ``queued``:
``flood`` may queue all N (``quota: {queue: N, rate_per_s: null}``), so its backlog waits in its own
lane and runs at the vault's full speed on its 8 slots: the fair queue itself. ``probe`` has
``rate_per_s: null`` in both: it calls back to back, faster than the default 50 a second.
Everything is stopped, and the temp dir removed, whatever happens. Progress goes to stderr, the
table to stdout.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml
from _common import arg_parser, finish, header, indented, latency_stats, progress, start_run

from legion.broker import Broker, ConnectSpec
from legion.contracts import LlmError, LlmReply, LlmRequest, decode, encode
from legion.contracts import subjects as subj
from legion.runtime.fleet.backends.process import pid_of
from legion.runtime.fleet.run import stop_fleet_leftovers
from legion.runtime.fleet.state import launcher_alive, read_launcher_pid, read_state

LEGION = [sys.executable, "-m", "legion"]
FLOOD_SCRIPT = Path(__file__).with_name("_flood.py")
MODEL = "offline"
FLOOD, PROBE = "flood", "probe"
SCENARIOS = ("burst", "defaults", "queued")
GOAL_RATIO = 2.0
TICKS = os.sysconf("SC_CLK_TCK")


def legion(*args: str, timeout: float) -> None:
    done = subprocess.run([*LEGION, *args], capture_output=True, text=True, timeout=timeout, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"legion {' '.join(args)} exited {done.returncode}:\n{done.stdout}\n{done.stderr}")


def make_fleet(root: Path, scenario: str, n: int) -> Path:
    fleet = root / scenario
    fleet.mkdir()
    flood: dict[str, Any] = {"model": MODEL}
    if scenario == "queued":
        flood["quota"] = {"queue": n, "rate_per_s": None}
    config = {
        "fleet": f"fairbench-{scenario}",
        "models": {MODEL: {"model": "legion/offline"}},
        "agents": {FLOOD: flood, PROBE: {"model": MODEL, "quota": {"rate_per_s": None}}},
    }
    (fleet / "legion.yaml").write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
    return fleet


def stop_fleet(fleet: Path) -> None:
    try:
        pid = read_launcher_pid(fleet)
        if pid is not None and launcher_alive(pid):
            subprocess.run([*LEGION, "-C", str(fleet), "down"], capture_output=True, timeout=120, check=False)
    finally:
        if left := stop_fleet_leftovers(fleet.resolve(), read_state(fleet.resolve())):
            progress(f"    stopped leftover processes of {fleet.name}: {left}")


async def probe_calls(broker: Broker, count: int) -> list[int]:
    """``count`` calls one after another; each one's latency in ns (a refusal is an error)."""
    subject = subj.VAULT_LLM.render(agent=PROBE)
    out = []
    for i in range(count):
        req = LlmRequest(request_id=uuid.uuid4().hex, model=MODEL, messages=[{"role": "user", "content": f"hi {i}"}])
        data, headers = encode(req)
        t0 = time.perf_counter_ns()
        msg = await broker.request_raw(subject, data, headers=headers, timeout=30)
        elapsed = time.perf_counter_ns() - t0
        reply = decode(msg.data, msg.headers)
        refused = reply if isinstance(reply, LlmError) else None
        if refused is not None:
            raise RuntimeError(f"the probe's call was refused: {refused.code}: {refused.message}")
        assert isinstance(reply, LlmReply), reply
        out.append(elapsed)
    return out


def cpu_s(fleet: Path) -> dict[str, float]:
    """CPU seconds (user + system) each process of the fleet has used so far: nats, ledger, vault, agents."""
    state = read_state(fleet)
    if state is None or state.nats.pid is None:
        raise RuntimeError(f"no state.json with a nats-server pid in {fleet}")
    pids = {"nats": state.nats.pid}
    pids |= {name: pid_of(rec.ref) for name, rec in state.actors.items() if rec.ref is not None}
    out = {}
    for name, pid in pids.items():
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        out[name] = (int(fields[11]) + int(fields[12])) / TICKS
    return out


def start_flood(fleet: Path, url: str, n: int, *, once: bool) -> subprocess.Popen[str]:
    creds = fleet / ".legion" / "creds" / f"{FLOOD}.creds"
    proc = subprocess.Popen(
        [sys.executable, str(FLOOD_SCRIPT), url, str(creds), FLOOD, str(n), MODEL, *(["once"] if once else [])],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    line = proc.stdout.readline().strip()
    if line != "ready":
        proc.kill()
        raise RuntimeError(f"the flood process did not start: {line!r}")
    return proc


def tell(proc: subprocess.Popen[str], command: str) -> None:
    assert proc.stdin is not None
    proc.stdin.write(command + "\n")
    proc.stdin.flush()


async def one_scenario(fleet: Path, n: int, samples: int, warmup: int, *, once: bool) -> dict[str, Any]:
    legion("-C", str(fleet), "up", "-d", timeout=400)
    url = (fleet / ".legion" / "nats.url").read_text(encoding="utf-8").strip()
    broker = await Broker.connect(ConnectSpec(url=url, creds=fleet / ".legion" / "creds" / f"{PROBE}.creds"))
    try:
        await probe_calls(broker, warmup)
        idle = await probe_calls(broker, samples)
        progress(f"    idle: {samples} calls; flooding with {n} outstanding calls")
        proc = start_flood(fleet, url, n, once=once)
        try:
            if not once:
                await asyncio.sleep(1.0)  # the first burst is in; then the window starts
            tell(proc, "mark")
            cpu0, t0 = cpu_s(fleet), time.monotonic()
            flooded = await probe_calls(broker, samples)
            cpu1, window = cpu_s(fleet), time.monotonic() - t0
            tell(proc, "stop")
            assert proc.stdout is not None
            counts = yaml.safe_load(proc.stdout.readline())
        finally:
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
        progress(f"    flood: {counts}")
        after = await probe_calls(broker, samples)
    finally:
        await broker.close()
    busy = {name: round((cpu1[name] - cpu0[name]) / window, 2) for name in cpu0}
    return {"idle_ns": idle, "flood_ns": flooded, "idle_after_ns": after, "flood": counts, "cpu_busy": busy}


def summarize(raw: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for scenario, rec in raw.items():
        idle, flood, after = (latency_stats(rec[k]) for k in ("idle_ns", "flood_ns", "idle_after_ns"))
        out[scenario] = {
            "idle": idle,
            "flood": flood,
            "idle_after": after,
            "p50_ratio": flood["p50_us"] / idle["p50_us"],
            "p99_ratio": flood["p99_us"] / idle["p99_us"],
            "flood_counts": rec["flood"],
            "cpu_busy": rec["cpu_busy"],
            "window_s": sum(rec["flood_ns"]) / 1e9,
        }
    return out


def render(summary: dict[str, Any], meta: dict[str, Any]) -> str:
    out = [
        f"Vault fairness: probe's call latency, idle vs flood's {meta['flood']} outstanding calls "
        f"(offline model); {header(meta)}",
        "",
        "1. probe's latency, ms (one call at a time); ratio = under flood / idle before",
    ]
    rows = []
    for scenario, s in summary.items():
        for label, key in (("idle", "idle"), ("under flood", "flood"), ("idle after", "idle_after")):
            st = s[key]
            rows.append(
                [f"{scenario}: {label}", str(st["n"]), f"{st['p50_us'] / 1000:.2f}", f"{st['p99_us'] / 1000:.2f}"]
            )
        ok = "yes" if s["p99_ratio"] <= GOAL_RATIO else "NO"
        rows.append([f"{scenario}: ratio", "", f"{s['p50_ratio']:.2f}x", f"{s['p99_ratio']:.2f}x (within 2x: {ok})"])
    out += indented(["", "n", "p50", "p99"], rows)
    out += ["", "2. what the flood got during the probe's window"]
    rows = []
    for scenario, s in summary.items():
        c = s["flood_counts"]
        answered = ", ".join(f"{k} {v}" for k, v in sorted(c["answered"].items())) or "none"
        rate = sum(c["answered"].values()) / s["window_s"]
        cpu = ", ".join(f"{k} {v:.2f}" for k, v in sorted(s["cpu_busy"].items()))
        outstanding = f"{c['outstanding_low']} / {c['outstanding_at_stop']}"
        rows.append([scenario, answered, f"{rate:.0f}/s", outstanding, cpu])
    headers = ["scenario", "answered (by outcome)", "rate", "outstanding: fewest / at end", "CPU busy (cores)"]
    out += indented(headers, rows)
    return "\n".join(out)


def main(argv: Sequence[str] | None = None) -> int:
    parser = arg_parser(__doc__, quick="smoke run: 300 flood calls, 30 samples, the queued scenario only")
    parser.add_argument("--flood", type=int, help="calls the flood keeps outstanding (default 3000; --quick 300)")
    parser.add_argument("--samples", type=int, help="probe calls per phase (default 300; --quick 30)")
    args = parser.parse_args(argv)
    n = args.flood or (300 if args.quick else 3000)
    samples = args.samples or (30 if args.quick else 300)
    scenarios = ("queued",) if args.quick else SCENARIOS
    clock = start_run(quiet_logs=True)
    raw: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="legion-fairness-bench-") as tmp:
        root = Path(tmp)
        for scenario in scenarios:
            fleet = make_fleet(root, scenario, n)
            progress(f"{scenario}: legion up -d")
            try:
                once = scenario == "burst"
                raw[scenario] = asyncio.run(one_scenario(fleet, n, samples, warmup=min(50, samples), once=once))
            finally:
                stop_fleet(fleet)
    meta = {**clock.meta(nats_server=True), "quick": args.quick, "flood": n, "samples": samples}
    summary = summarize(raw)
    return finish(render(summary, meta), args.json, meta, summary, raw)


if __name__ == "__main__":
    sys.exit(main())
