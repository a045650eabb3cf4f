"""Start-up benchmark: ``legion up -d`` / ``legion down`` of whole fleets, through real subprocesses.

    .venv/bin/python bench/up_bench.py [--quick] [--agents 1,10,50] [--reps N] [--json PATH]

For each fleet size N (default 1, 10 and 50 agents; --quick: 1 and 5) and for the baseline, N = 0
(nats-server, ledger and vault only), measured in the same run:

1. the wall time of ``legion up -d DIR`` from start until it returns (it returns once every actor is
   healthy), cold: ``DIR/.legion`` is wiped before each repetition (new keys, credentials and an empty
   JetStream store); split into phases from state.json (CLI and launcher boot; NATS, provisioning,
   ledger and vault; the agents); then the time of ``legion down DIR``. For the warm size (10, else the
   largest) one more ``up -d`` / ``down`` on the existing ``.legion`` follows the cold repetitions;
2. the memory of every process right after ``up -d`` returned, pids from ``.legion/run/state.json``:
   VmRSS (``/proc/<pid>/status``), and PSS and USS (private pages) from ``/proc/<pid>/smaps_rollup``:
   the agents are separate interpreters that share only file-backed pages, which PSS splits fairly.

Fleets come from ``legion init --template starter`` with legion.yaml rewritten: agents a0..aN-1, each a
copy of the starter agent on the template's offline model alias (no key, no network), all in the
template's one project. Repetitions rotate the order of the sizes. Every fleet is stopped (``legion
down``, then any process naming its directory) and the temp dir removed, whatever happens. Progress
goes to stderr, the table to stdout.
"""

from __future__ import annotations

import argparse
import math
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml
from _common import MB, arg_parser, finish, header, indented, median, proc_status, progress, start_run

from legion.runtime.fleet.backends.process import pid_of
from legion.runtime.fleet.procs import wait_gone
from legion.runtime.fleet.run import stop_fleet_leftovers
from legion.runtime.fleet.state import launcher_alive, read_launcher_pid, read_state

LEGION = [sys.executable, "-m", "legion"]
TEMPLATE = "starter"  # its agent entry is copied N times
OFFLINE_MODEL = "legion/offline"
FULL_AGENTS = (1, 10, 50)
QUICK_AGENTS = (1, 5)
WARM_N = 10
UP_TIMEOUT_S = 400.0  # `legion up -d` itself gives up after 300 s
DOWN_TIMEOUT_S = 120.0


def legion(*args: str, timeout: float) -> float:
    """Run ``legion ARGS``; its wall time in seconds. A non-zero exit is an error with its output."""
    t0 = time.perf_counter()
    done = subprocess.run([*LEGION, *args], capture_output=True, text=True, timeout=timeout, check=False)
    elapsed = time.perf_counter() - t0
    if done.returncode != 0:
        raise RuntimeError(f"legion {' '.join(args)} exited {done.returncode}:\n{done.stdout}\n{done.stderr}")
    return elapsed


# -- fleets ----------------------------------------------------------------------------------------------


def make_fleet(root: Path, n: int) -> Path:
    """``legion init`` the starter template, then N copies of its agent (a0..aN-1) in legion.yaml."""
    fleet = root / f"fleet{n}"
    legion("init", str(fleet), "--template", TEMPLATE, timeout=60)
    path = fleet / "legion.yaml"
    cfg = yaml.safe_load(path.read_text(encoding="utf-8"))
    starter = cfg["agents"].pop(TEMPLATE)
    offline = next(alias for alias, m in cfg["models"].items() if m.get("model") == OFFLINE_MODEL)
    project = next(iter(cfg["projects"]))
    cfg["fleet"] = f"upbench{n}"
    cfg["agents"] = {f"a{i}": {**starter, "model": offline, "projects": [project]} for i in range(n)}
    path.write_text(yaml.safe_dump(cfg, sort_keys=False), encoding="utf-8")
    src = fleet / "agents" / TEMPLATE
    for i in range(n):
        dst = fleet / "agents" / f"a{i}"
        dst.mkdir(parents=True)
        for f in src.iterdir():
            (dst / f.name).write_text(re.sub(rf"\b{TEMPLATE}\b", f"a{i}", f.read_text(encoding="utf-8")))
    shutil.rmtree(src)
    return fleet


def stop_fleet(fleet: Path) -> None:
    """Whatever state the fleet is in, nothing of it runs afterwards."""
    try:
        pid = read_launcher_pid(fleet)
        if pid is not None and launcher_alive(pid):
            subprocess.run(
                [*LEGION, "-C", str(fleet), "down"], capture_output=True, timeout=DOWN_TIMEOUT_S, check=False
            )
    finally:
        if left := stop_fleet_leftovers(fleet.resolve(), read_state(fleet.resolve())):
            progress(f"    stopped leftover processes of {fleet.name}: {left}")


# -- what the OS shows of a process ----------------------------------------------------------------------


def memory_kb(pid: int) -> dict[str, int]:
    """VmRSS from /proc/<pid>/status; Pss and USS (Private_Clean + Private_Dirty) from smaps_rollup if readable."""
    status = proc_status(pid)
    out = {"rss": int(status["VmRSS"].split()[0])}
    try:
        rollup = Path(f"/proc/{pid}/smaps_rollup").read_text()
    except OSError:
        return out
    fields = {m.group(1): int(m.group(2)) for m in re.finditer(r"^(\w+):\s+(\d+) kB", rollup, re.MULTILINE)}
    out["pss"] = fields["Pss"]
    out["uss"] = fields["Private_Clean"] + fields["Private_Dirty"]
    return out


def fleet_memory(fleet: Path) -> dict[str, Any]:
    """kB of each process of the running fleet: launcher, nats, ledger, vault and a list for the agents."""
    state = read_state(fleet)
    if state is None or state.nats.pid is None:
        raise RuntimeError(f"no state.json with a nats-server pid in {fleet}")
    mem: dict[str, Any] = {"launcher": memory_kb(state.launcher_pid), "nats": memory_kb(state.nats.pid), "agents": []}
    for name, rec in sorted(state.actors.items()):
        if rec.ref is None:
            raise RuntimeError(f"actor {name} has no process in state.json")
        if rec.kind == "agent":
            mem["agents"].append(memory_kb(pid_of(rec.ref)))
        else:
            mem[name] = memory_kb(pid_of(rec.ref))
    return mem


# -- one start ------------------------------------------------------------------------------------------


def one_start(fleet: Path, n: int, *, cold: bool) -> dict[str, Any]:
    """``up -d`` (cold: .legion wiped first), phases, memory, then ``down``; checks nothing is left."""
    if cold:
        shutil.rmtree(fleet / ".legion", ignore_errors=True)
    try:
        started = time.time()
        up_s = legion("-C", str(fleet), "up", "-d", timeout=UP_TIMEOUT_S)
        state = read_state(fleet)
        if state is None or state.status != "running":
            raise RuntimeError(f"`legion up -d` returned but state.json does not say running: {state}")
        kinds = [rec.kind for rec in state.actors.values()]
        unhealthy = [name for name, rec in state.actors.items() if rec.state != "healthy"]
        if kinds.count("agent") != n or unhealthy:
            raise RuntimeError(f"expected {n} healthy agents; state.json: {state.actors}")
        agent_starts = [rec.started_at or 0.0 for rec in state.actors.values() if rec.kind == "agent"]
        system_ready = min(agent_starts) if agent_starts else state.updated_at  # agents start once both are healthy
        phases = {
            "boot_s": state.started_at - started,  # the CLI, `legion up` in the background, its imports
            "system_s": system_ready - state.started_at,  # keys, nats-server, provisioning, ledger and vault
            "agents_s": state.updated_at - system_ready,  # spawning every agent until each announced itself
        }
        mem = fleet_memory(fleet)
        pids = [state.launcher_pid, state.nats.pid, *(pid_of(rec.ref) for rec in state.actors.values() if rec.ref)]
        down_s = legion("-C", str(fleet), "down", "--timeout", str(DOWN_TIMEOUT_S), timeout=DOWN_TIMEOUT_S + 30)
        alive = [pid for pid in pids if pid and not wait_gone(pid, 5.0)]
        if alive:
            raise RuntimeError(f"still running after `legion down`: {alive}")
    finally:
        stop_fleet(fleet)
    return {"up_s": up_s, "down_s": down_s, **phases, "memory": mem}


def bench(sizes: Sequence[int], reps: dict[int, int], warm_n: int | None, root: Path) -> dict[str, Any]:
    raw: dict[str, Any] = {"cold": {str(n): [] for n in sizes}, "warm": None}
    fleets = {n: make_fleet(root, n) for n in sizes}
    for r in range(max(reps.values())):
        order = [n for n in sizes if reps[n] > r]
        if r % 2:
            order.reverse()
        for n in order:
            progress(f"{n} agents, cold start {r + 1}/{reps[n]}")
            rec = one_start(fleets[n], n, cold=True)
            raw["cold"][str(n)].append(rec)
            progress(f"    up -d {rec['up_s']:.2f} s, down {rec['down_s']:.2f} s, {_total(rec['memory'], 'rss')}")
    if warm_n is not None:
        progress(f"{warm_n} agents, warm start (the last cold start's .legion kept)")
        rec = one_start(fleets[warm_n], warm_n, cold=False)
        raw["warm"] = {"agents": warm_n, **rec}
        progress(f"    up -d {rec['up_s']:.2f} s, down {rec['down_s']:.2f} s")
    return raw


# -- figures and the table ------------------------------------------------------------------------------


def _procs(mem: dict[str, Any]) -> list[dict[str, int]]:
    return [v for k, v in mem.items() if k != "agents"] + list(mem["agents"])


def _total(mem: dict[str, Any], key: str) -> str:
    return f"fleet {key.upper()} {sum(p.get(key, 0) for p in _procs(mem)) / MB:,.0f} MB"


def _mem_summary(mems: Sequence[dict[str, Any]]) -> dict[str, float]:
    """Medians over repetitions of each figure, in MB; PSS/USS are NaN if smaps_rollup was unreadable."""

    def med(fn: Any) -> float:
        return median([fn(m) for m in mems]) / MB

    def get(p: dict[str, int], key: str) -> float:
        return float(p.get(key, math.nan))

    out: dict[str, float] = {}
    for key in ("rss", "pss", "uss"):
        out[f"total_{key}_mb"] = med(lambda m, k=key: sum(get(p, k) for p in _procs(m)))
        for role in ("launcher", "nats", "ledger", "vault"):
            out[f"{role}_{key}_mb"] = med(lambda m, r=role, k=key: get(m[r], k))
        if mems[0]["agents"]:
            out[f"agent_{key}_median_mb"] = med(lambda m, k=key: median([get(p, k) for p in m["agents"]]))
            out[f"agent_{key}_max_mb"] = med(lambda m, k=key: max(get(p, k) for p in m["agents"]))
            out[f"agents_{key}_sum_mb"] = med(lambda m, k=key: sum(get(p, k) for p in m["agents"]))
    return out


def _times(recs: Sequence[dict[str, Any]]) -> dict[str, Any]:
    return {
        "reps": len(recs),
        "up_s": median([r["up_s"] for r in recs]),
        "up_s_all": [r["up_s"] for r in recs],
        "down_s": median([r["down_s"] for r in recs]),
        **{k: median([r[k] for r in recs]) for k in ("boot_s", "system_s", "agents_s")},
    }


def summarize(raw: dict[str, Any]) -> dict[str, Any]:
    cold: dict[str, Any] = {}
    for key, recs in raw["cold"].items():
        cold[key] = {**_times(recs), "memory": _mem_summary([r["memory"] for r in recs])}
    base, one = cold["0"]["up_s"], cold.get("1", {}).get("up_s", math.nan)
    for key, s in cold.items():
        n = int(key)
        s["up_vs_baseline_s"] = s["up_s"] - base
        s["per_agent_s"] = (s["up_s"] - one) / (n - 1) if n > 1 else math.nan
        s["down_vs_baseline_s"] = s["down_s"] - cold["0"]["down_s"]
    out: dict[str, Any] = {"cold": cold}
    if raw["warm"] is not None:
        w = raw["warm"]
        out["warm"] = {"agents": w["agents"], **_times([w]), "memory": _mem_summary([w["memory"]])}
        out["warm"]["vs_cold_s"] = w["up_s"] - cold[str(w["agents"])]["up_s"]
    return out


def _f(x: float, spec: str = ".2f") -> str:
    return "-" if not math.isfinite(x) else format(x, spec)


def render(summary: dict[str, Any], meta: dict[str, Any]) -> str:
    cold = summary["cold"]
    reps = ", ".join(f"{k} agents: {v['reps']}" for k, v in cold.items())
    out = [
        "Legion start-up benchmark (`legion up -d` / `legion down`, real subprocesses)",
        f"  {meta['nats_server']}, Python {meta['python']}, " + header(meta),
        f"  starter template, N copies of its agent on the offline model; medians of repetitions ({reps})",
        "",
        "1. wall time, s. cold: .legion wiped (new keys, creds, empty JetStream store); warm: second up on it",
        "   boot: CLI and background launcher start; system: keys, nats-server, provisioning, ledger, vault;",
        "   agents: first agent spawned until all announced ActorStarted (from state.json);",
        "   per agent: (t_N - t_1)/(N-1) of the medians",
    ]
    rows = []
    for key, s in cold.items():
        spread = f"{min(s['up_s_all']):.2f}..{max(s['up_s_all']):.2f}"
        rows.append(
            [
                f"{key} agents" + (" (baseline)" if key == "0" else ""),
                "cold",
                str(s["reps"]),
                _f(s["up_s"]),
                spread,
                _f(s["up_vs_baseline_s"], "+.2f"),
                _f(s["per_agent_s"], ".3f"),
                _f(s["boot_s"]),
                _f(s["system_s"]),
                _f(s["agents_s"]),
                _f(s["down_s"]),
            ]
        )
    if w := summary.get("warm"):
        rows.append(
            [
                f"{w['agents']} agents",
                "warm",
                "1",
                _f(w["up_s"]),
                "",
                _f(w["up_s"] - cold["0"]["up_s"], "+.2f"),
                "",
                _f(w["boot_s"]),
                _f(w["system_s"]),
                _f(w["agents_s"]),
                _f(w["down_s"]),
            ]
        )
    heads = ["fleet", "start", "reps", "up -d", "min..max", "vs 0 agents", "per agent", "boot", "system", "agents"]
    out += indented([*heads, "down"], rows)
    if w:
        out.append(f"   warm start of {w['agents']} agents vs its cold median: {w['vs_cold_s']:+.2f} s")
    out += [
        "",
        "2. memory right after `up -d` returned, MB (median over repetitions). RSS: VmRSS; PSS: shared pages split",
        "   between their users (smaps_rollup); USS: private pages only. agent columns: median and max over agents",
    ]
    rows = []
    for key, s in cold.items():
        m = s["memory"]
        for kind in ("rss", "pss", "uss"):
            rows.append(
                [
                    f"{key} agents" if kind == "rss" else "",
                    kind.upper(),
                    _f(m.get(f"agent_{kind}_median_mb", math.nan), ".1f"),
                    _f(m.get(f"agent_{kind}_max_mb", math.nan), ".1f"),
                    _f(m.get(f"agents_{kind}_sum_mb", math.nan), ".0f"),
                    _f(m[f"vault_{kind}_mb"], ".1f"),
                    _f(m[f"ledger_{kind}_mb"], ".1f"),
                    _f(m[f"nats_{kind}_mb"], ".1f"),
                    _f(m[f"launcher_{kind}_mb"], ".1f"),
                    _f(m[f"total_{kind}_mb"], ".0f"),
                ]
            )
    heads = ["fleet", "", "agent med", "agent max", "all agents", "vault", "ledger", "nats", "launcher", "total"]
    out += indented(heads, rows)
    base = cold["0"]["memory"]
    for key, s in cold.items():
        if key != "0":
            m = s["memory"]
            out.append(
                f"   {key} agents: total - baseline = {m['total_rss_mb'] - base['total_rss_mb']:,.0f} MB RSS, "
                f"{m['total_pss_mb'] - base['total_pss_mb']:,.0f} MB PSS "
                f"({(m['total_pss_mb'] - base['total_pss_mb']) / int(key):.1f} MB PSS per agent)"
            )
    return "\n".join(out)


# -- main ---------------------------------------------------------------------------------------------


def _sizes(text: str) -> list[int]:
    sizes = sorted({int(x) for x in text.split(",") if x.strip()})
    if not sizes or sizes[0] < 1:
        raise argparse.ArgumentTypeError(f"--agents {text!r}: comma-separated sizes of 1 or more (0 always runs)")
    return sizes


def main(argv: list[str] | None = None) -> int:
    parser = arg_parser(__doc__, quick="smoke run: 1 and 5 agents, 1 repetition")
    parser.add_argument("--agents", type=_sizes, help="fleet sizes, e.g. 1,10,50 (default; --quick 1,5)")
    parser.add_argument("--reps", type=int, help="cold starts per size (default 3, --quick 1)")
    args = parser.parse_args(argv)
    sizes = [0, *(args.agents or (QUICK_AGENTS if args.quick else FULL_AGENTS))]
    reps = dict.fromkeys(sizes, args.reps or (1 if args.quick else 3))
    warm_n = WARM_N if WARM_N in sizes else max(sizes) if len(sizes) > 1 else None
    clock = start_run(quiet_logs=False)
    with tempfile.TemporaryDirectory(prefix="legion-up-bench-") as tmp:
        root = Path(tmp)
        try:
            raw = bench(sizes, reps, warm_n, root)
        finally:
            for fleet in root.glob("fleet*"):  # a fleet left running by an error or Ctrl-C
                stop_fleet(fleet)
    meta = {
        **clock.meta(nats_server=True),
        "quick": args.quick,
        "sizes": sizes,
        "reps": {str(n): r for n, r in reps.items()},
        "warm_agents": warm_n,
    }
    summary = summarize(raw)
    return finish(render(summary, meta), args.json, meta, summary, raw)


if __name__ == "__main__":
    sys.exit(main())
