"""Agent benchmark: one real agent process (``python -m legion.actors.agent``) on a test fleet.

    .venv/bin/python bench/agent_bench.py [--quick] [--json PATH] [--turns N]

Starts its own nats-server (:class:`legion.testing.NatsTestServer`, temp dir, free port) and a fake
OpenAI-compatible model (latency 0, always the same short text), runs the real ledger and vault in
this process (``legion/testing/fleet.py``) and the agent as its own OS process. Measures:

1. the agent process's memory: VmRSS right after its ActorStarted, after a few warm-up turns, after
   N chat turns (one conversation) and after N one-step tasks, the growth per turn; for scale the RSS of
   bare ``python`` processes that import ``nats, msgspec``, the agent's module, and ``litellm``; and what
   the agent process's memory map shows about LiteLLM (it must never import it);
2. per-turn overhead without the model's latency: ChatMessage published to the agent's inbox (admin)
   until its ChatReplied arrives, against the same model call made straight to the vault with the
   agent's credential (an LlmRequest on ``legion.vault.<agent>.llm`` with the messages, tools and
   streaming of the agent's last request, as the fake model received it); the same for AssignTask until
   TaskCompleted. The difference is the agent's own work: inbox delivery, session records to KV and
   EVENTS, the tools schema, the event publish.

Every agent sample is paired with a baseline sample taken right before or after it (the order
alternates), so a busy moment of the shared machine hits both; differences and ratios are paired.
Everything is stopped, and the temp dir removed, whatever happens. Progress goes to stderr, the table
to stdout.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import gc
import json
import os
import re
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any

from _common import (
    MB,
    arg_parser,
    finish,
    header,
    indented,
    latency_stats,
    median,
    proc_status,
    progress,
    start_run,
)
from nats.aio.msg import Msg

from legion.broker import Broker
from legion.contracts import ChatMessage, LlmReply, LlmRequest, Message, decode
from legion.contracts import subjects as subj
from legion.contracts.agent_events import ChatReplied, TaskCompleted, TaskFailed
from legion.testing import FakeLlmServer, NatsTestServer, Reply, TestFleet

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")  # the vault imports LiteLLM: no price-map fetch
from legion.testing.fleet import AgentFleet, agent_fleet

REPLY = "Noted, thank you."
CHAT_SESSION = "bench"
BASE_SESSION = "benchbase"  # the baseline's streamed calls go to legion.stream.<agent>.benchbase
TIMEOUT_S = 30.0

# Run by fresh interpreters for scale: import the modules named in argv, then report own RSS and mapped .so files
_SCALE_PROBE = """
import json, re, sys
for name in sys.argv[1:]:
    __import__(name)
status = dict(line.split(':', 1) for line in open('/proc/self/status'))
found = (re.search(r'site-packages/([^/]+?)/', line) for line in open('/proc/self/maps'))
libs = sorted({m.group(1) for m in found if m})
print(json.dumps({'rss_kb': int(status['VmRSS'].split()[0]), 'libs': libs}))
"""
SCALE = {"python": [], "nats_msgspec": ["nats", "msgspec"], "agent_module": ["legion.actors.agent.actor"]}
SCALE_LITELLM = ["litellm"]


class BenchFailure(Exception):
    """The agent or the vault did not answer as a benchmark sample needs (a failed turn, an error reply)."""


@dataclasses.dataclass(frozen=True)
class Sizes:
    turns: int = 100
    warmup: int = 5


# -- what the OS shows of a process ------------------------------------------------------------------


def memory_kb(pid: int) -> dict[str, int]:
    """VmRSS, VmHWM (peak RSS) and RssAnon of ``pid``, in kB."""
    status = proc_status(pid)
    return {k: int(status[k].split()[0]) for k in ("VmRSS", "VmHWM", "RssAnon")}


def mapped(pid: int) -> tuple[set[str], list[str]]:
    """Top-level site-packages entries with a mapped file (native extensions), and every path naming litellm."""
    libs: set[str] = set()
    litellm: list[str] = []
    for line in Path(f"/proc/{pid}/maps").read_text().splitlines():
        if m := re.search(r"site-packages/([^/]+?)/", line):
            libs.add(m.group(1))
        if "litellm" in line.lower():
            litellm.append(line.split()[-1])
    return libs, sorted(set(litellm))


def scale_probe(modules: Sequence[str]) -> dict[str, Any]:
    done = subprocess.run(
        [sys.executable, "-c", _SCALE_PROBE, *modules], capture_output=True, text=True, timeout=120, check=True
    )
    return dict(json.loads(done.stdout.strip().splitlines()[-1]))


# -- one sample of each variant ------------------------------------------------------------------------


class Outcomes:
    """ChatReplied, TaskCompleted and TaskFailed of one agent, each with the time it arrived here.

    A core subscription of its own on the agent's events: the rig's probe keeps every event and rescans
    them all on each arrival, a cost that would grow into the samples over a long run.
    """

    def __init__(self) -> None:
        self.arrived: asyncio.Queue[tuple[int, Message]] = asyncio.Queue()

    async def on_msg(self, msg: Msg) -> None:
        at = time.perf_counter_ns()
        event = decode(msg.data, msg.headers)
        if isinstance(event, ChatReplied | TaskCompleted | TaskFailed):
            self.arrived.put_nowait((at, event))

    async def next(self, match: Callable[[Message], bool]) -> tuple[int, Message]:
        async with asyncio.timeout(TIMEOUT_S):
            while True:
                at, event = await self.arrived.get()
                if match(event):
                    return at, event


@dataclasses.dataclass
class Bench:
    rig: AgentFleet
    llm: FakeLlmServer
    client: Broker  # the agent's credential, a connection of its own: the baseline's
    outcomes: Outcomes
    templates: dict[str, dict[str, Any]] = dataclasses.field(default_factory=dict)

    def _remember(self, kind: str) -> None:
        """The body of the agent's last model request, as the fake model received it: the baseline's call."""
        self.templates[kind] = dict(self.llm.requests[-1].body)

    async def chat(self) -> int:
        started = time.perf_counter_ns()
        await self.rig.send(ChatMessage(session=CHAT_SESSION, text="Please note this down.", sender="bench"))
        at, reply = await self.outcomes.next(lambda e: isinstance(e, ChatReplied) and e.session == CHAT_SESSION)
        assert isinstance(reply, ChatReplied)
        if reply.error:
            raise BenchFailure(f"chat turn failed: {reply.error}")
        self._remember("chat")
        return at - started

    async def task(self) -> int:
        task_id = uuid.uuid4().hex[:12]
        started = time.perf_counter_ns()
        await self.rig.assign("Say that you are done.", task_id=task_id)
        at, ended = await self.outcomes.next(
            lambda e: isinstance(e, TaskCompleted | TaskFailed) and e.task_id == task_id
        )
        if isinstance(ended, TaskFailed):
            raise BenchFailure(f"task failed: {ended.reason}")
        self._remember("task")
        return at - started

    async def vault_call(self, kind: str) -> int:
        body = self.templates[kind]
        stream = bool(body.get("stream"))
        req = LlmRequest(
            request_id=uuid.uuid4().hex,
            model=self.rig.config.agents[self.rig.agent.name].model,
            messages=list(body["messages"]),
            tools=body.get("tools"),
            max_tokens=body.get("max_tokens"),
            stream=stream,
            session=BASE_SESSION if stream else "",
            project=self.rig.project,
        )
        started = time.perf_counter_ns()
        reply = await self.client.request(subj.VAULT_LLM.render(agent=self.rig.agent.name), req, timeout=TIMEOUT_S)
        elapsed = time.perf_counter_ns() - started
        if not isinstance(reply, LlmReply):
            raise BenchFailure(f"baseline vault call failed: {reply!r}")
        return elapsed


async def paired(
    label: str, agent: Callable[[], Awaitable[int]], base: Callable[[], Awaitable[int]], reps: int, *, every: int = 0
) -> tuple[list[int], list[int]]:
    """``reps`` pairs of samples, the order alternating per pair."""
    a: list[int] = []
    b: list[int] = []
    for rep in range(reps):
        if rep % 2 == 0:
            a.append(await agent())
            b.append(await base())
        else:
            b.append(await base())
            a.append(await agent())
        if every and (rep + 1) % every == 0:
            progress(f"    {label} {rep + 1}/{reps}: agent {a[-1] / 1e6:.1f} ms, vault {b[-1] / 1e6:.1f} ms")
    return a, b


async def measure(rig: AgentFleet, llm: FakeLlmServer, client: Broker, sizes: Sizes) -> dict[str, Any]:
    raw: dict[str, Any] = {"memory": {}}
    mem = raw["memory"]
    proc = await rig.spawn()
    pid = proc.pid
    mem["idle"] = memory_kb(pid)
    progress(f"agent {rig.agent.name} started as pid {pid}, VmRSS {mem['idle']['VmRSS'] / MB:.1f} MB")
    gc.collect()  # the vault (LiteLLM) lives in this process: keep full collections out of the samples,
    gc.freeze()  # as legion.runtime.host.process does for every actor process
    outcomes = Outcomes()
    await rig.fleet.admin.subscribe(subj.EVENTS.wildcard(source=rig.agent.name), outcomes.on_msg)
    bench = Bench(rig=rig, llm=llm, client=client, outcomes=outcomes)
    every = max(1, sizes.turns // 5)
    for kind, agent in (("chat", bench.chat), ("task", bench.task)):
        progress(f"{kind}: {sizes.warmup} warm-up pairs, then {sizes.turns} pairs (agent, vault call)")
        await agent()  # the first sample leaves a request body for the baseline to copy
        base = functools.partial(bench.vault_call, kind)
        await paired(kind, agent, base, sizes.warmup)
        mem[f"{kind}_warm"] = memory_kb(pid)
        a, b = await paired(kind, agent, base, sizes.turns, every=every)
        mem[f"after_{kind}"] = memory_kb(pid)
        raw[kind] = {"agent_ns": a, "vault_ns": b}
        progress(f"    VmRSS after {sizes.turns} {kind} turns: {mem[f'after_{kind}']['VmRSS'] / MB:.1f} MB")
    libs, litellm_paths = mapped(pid)
    raw["agent_maps"] = {"libs": sorted(libs), "litellm_paths": litellm_paths}
    return raw


async def run(sizes: Sizes, root: Path) -> dict[str, Any]:
    raw: dict[str, Any] = {"scale": {}}
    for name, modules in {**SCALE, "litellm": SCALE_LITELLM}.items():
        progress(f"scale: RSS of python importing {', '.join(modules) or 'nothing'}")
        raw["scale"][name] = scale_probe(modules)
    server = NatsTestServer(state_dir=root / "nats")
    llm = FakeLlmServer(latency=0.0)
    admin: Broker | None = None
    fleet: TestFleet | None = None
    try:
        progress("starting nats-server and the fake model")
        await server.start()
        await llm.start()
        llm.always(Reply(text=REPLY))
        admin = await server.admin("bench-admin")
        fleet = TestFleet(server=server, admin=admin)
        fleet_dir = root / "fleet"
        fleet_dir.mkdir()
        async with agent_fleet(fleet, llm, fleet_dir, start=False) as rig:
            client = await fleet.connect(rig.agent.creds, name="bench-baseline")
            raw |= await measure(rig, llm, client, sizes)
            progress("stopping the agent")
    finally:
        try:
            if fleet is not None:
                await fleet.close()
            if admin is not None:
                await admin.close()
            await llm.stop()
        finally:
            await server.stop()
            progress("servers stopped")
    return raw


# -- figures and the table ------------------------------------------------------------------------------


def summarize(raw: dict[str, Any], sizes: Sizes) -> dict[str, Any]:
    mem = raw["memory"]

    def mb(point: str, key: str = "VmRSS") -> float:
        return float(mem[point][key]) / MB

    scale = raw["scale"]
    # native extensions that importing LiteLLM maps and merely importing the agent's own code does not
    markers = sorted(set(scale["litellm"]["libs"]) - set(scale["agent_module"]["libs"]))
    seen = raw["agent_maps"]
    found = sorted(set(markers) & set(seen["libs"]))
    out: dict[str, Any] = {
        "memory": {
            "python_bare_mb": scale["python"]["rss_kb"] / MB,
            "python_nats_msgspec_mb": scale["nats_msgspec"]["rss_kb"] / MB,
            "python_agent_module_mb": scale["agent_module"]["rss_kb"] / MB,
            "python_litellm_mb": scale["litellm"]["rss_kb"] / MB,
            "agent_idle_mb": mb("idle"),
            "agent_chat_warm_mb": mb("chat_warm"),
            "agent_after_chat_mb": mb("after_chat"),
            "agent_task_warm_mb": mb("task_warm"),
            "agent_after_task_mb": mb("after_task"),
            "agent_peak_mb": mb("after_task", "VmHWM"),
            "chat_growth_kb_per_turn": (mem["after_chat"]["VmRSS"] - mem["chat_warm"]["VmRSS"]) / sizes.turns,
            "task_growth_kb_per_turn": (mem["after_task"]["VmRSS"] - mem["task_warm"]["VmRSS"]) / sizes.turns,
        },
        "litellm": {
            "never_imported": not seen["litellm_paths"] and not found and bool(markers),
            "litellm_paths_mapped": seen["litellm_paths"],
            "marker_libs": markers,
            "marker_libs_mapped": found,
        },
    }
    k = max(3, sizes.turns // 10)
    for kind in ("chat", "task"):
        a, b = raw[kind]["agent_ns"], raw[kind]["vault_ns"]
        sa, sb = latency_stats(a), latency_stats(b)
        out[kind] = {
            "agent_p50_ms": sa["p50_us"] / 1000,
            "agent_p90_ms": sa["p90_us"] / 1000,
            "vault_p50_ms": sb["p50_us"] / 1000,
            "vault_p90_ms": sb["p90_us"] / 1000,
            "overhead_p50_ms": median([(x - y) / 1e6 for x, y in zip(a, b, strict=True)]),
            "overhead_p90_ms": (sa["p90_us"] - sb["p90_us"]) / 1000,
            "ratio_p50": median([x / y for x, y in zip(a, b, strict=True) if y]),
            # the chat turns are one growing conversation: how the first and the last tenth of the pairs compare
            "first_tenth": {"agent_p50_ms": median(a[:k]) / 1e6, "vault_p50_ms": median(b[:k]) / 1e6},
            "last_tenth": {"agent_p50_ms": median(a[-k:]) / 1e6, "vault_p50_ms": median(b[-k:]) / 1e6},
        }
    return out


def render(summary: dict[str, Any], meta: dict[str, Any]) -> str:
    n = meta["sizes"]["turns"]
    m, lit = summary["memory"], summary["litellm"]
    out = [
        "Legion agent benchmark",
        f"  {meta['nats_server']}, Python {meta['python']}, " + header(meta),
        f"  {n} measured pairs per section after {meta['sizes']['warmup'] + 1} warm-up turns; fake model, latency 0",
        "",
        "1. agent process memory (VmRSS, MB)",
    ]
    rows = [
        ["python, nothing imported", f"{m['python_bare_mb']:.1f}"],
        ["python -c 'import nats, msgspec'", f"{m['python_nats_msgspec_mb']:.1f}"],
        ["python -c 'import legion.actors.agent.actor'", f"{m['python_agent_module_mb']:.1f}"],
        ["python -c 'import litellm'", f"{m['python_litellm_mb']:.1f}"],
        ["agent, idle after ActorStarted", f"{m['agent_idle_mb']:.1f}"],
        ["agent, after chat warm-up", f"{m['agent_chat_warm_mb']:.1f}"],
        [f"agent, after {n} chat turns", f"{m['agent_after_chat_mb']:.1f}"],
        [f"agent, after {n} one-step tasks", f"{m['agent_after_task_mb']:.1f}"],
        ["agent, peak (VmHWM)", f"{m['agent_peak_mb']:.1f}"],
    ]
    out += indented(["process", "MB"], rows)
    out += [
        f"   growth: {m['chat_growth_kb_per_turn']:+.1f} kB per chat turn (one conversation), "
        f"{m['task_growth_kb_per_turn']:+.1f} kB per task",
        f"   LiteLLM in the agent: {'never imported' if lit['never_imported'] else 'SEE BELOW'}; paths naming "
        f"litellm mapped: {len(lit['litellm_paths_mapped'])}; native libs only `import litellm` maps "
        f"({', '.join(lit['marker_libs']) or 'none found'}) mapped: {', '.join(lit['marker_libs_mapped']) or 'none'}",
        "",
        "2. per-turn latency, ms: agent = inbox publish -> ChatReplied / TaskCompleted seen; "
        "vault = the agent's model call made directly",
        "   chat: every turn in one session (the prompt grows by two messages a turn); task: a new session each",
        "   overhead = agent - vault (median of paired differences; p90: difference of p90s), ratio paired",
    ]
    rows = [
        [
            kind,
            f"{s['agent_p50_ms']:.2f}",
            f"{s['agent_p90_ms']:.2f}",
            f"{s['vault_p50_ms']:.2f}",
            f"{s['vault_p90_ms']:.2f}",
            f"{s['overhead_p50_ms']:.2f}",
            f"{s['overhead_p90_ms']:.2f}",
            f"{s['ratio_p50']:.2f}x",
        ]
        for kind, s in (("chat turn", summary["chat"]), ("one-step task", summary["task"]))
    ]
    heads = ["variant", "agent p50", "agent p90", "vault p50", "vault p90", "overhead p50", "overhead p90", "ratio"]
    out += indented(heads, rows)
    for kind, title in (("chat", "chat turns (one conversation, its history grows)"), ("task", "tasks")):
        first, last = summary[kind]["first_tenth"], summary[kind]["last_tenth"]
        out.append(
            f"   {title}, p50 of the first vs the last tenth of the pairs: agent {first['agent_p50_ms']:.1f} -> "
            f"{last['agent_p50_ms']:.1f} ms, vault {first['vault_p50_ms']:.1f} -> {last['vault_p50_ms']:.1f} ms"
        )
    return "\n".join(out)


# -- main ---------------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = arg_parser(__doc__, quick="smoke run: 10 turns per section, 2 warm-up pairs")
    parser.add_argument("--turns", type=int, help="measured chat turns and tasks (default 100, --quick 10)")
    args = parser.parse_args(argv)
    sizes = Sizes(turns=10, warmup=2) if args.quick else Sizes()
    if args.turns:
        sizes = dataclasses.replace(sizes, turns=args.turns)
    clock = start_run()
    with tempfile.TemporaryDirectory(prefix="legion-agent-bench-") as tmp:
        raw = asyncio.run(run(sizes, Path(tmp)))
    meta = {
        **clock.meta(nats_server=True),
        "quick": args.quick,
        "sizes": dataclasses.asdict(sizes),
    }
    summary = summarize(raw, sizes)
    return finish(render(summary, meta), args.json, meta, summary, raw)


if __name__ == "__main__":
    sys.exit(main())
