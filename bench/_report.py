"""Statistics and the stdout table of the broker benchmark.

Every figure is a median over repetitions. Ratios are paired: the ratio is computed inside each
repetition (where variant and baseline ran back to back on the same, possibly busy, machine) and
the median of those ratios is reported. Latency percentiles are computed per repetition first.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from _common import header, indented, latency_stats, median
from _replay import REPLAY_DECODE, REPLAY_VARIANTS
from _sections import (
    PUB_ADMIN,
    PUB_AGENT,
    PUB_BASE,
    PUB_BASE_NATS,
    RR_BASE,
    RR_BASE_NC,
    RR_LEGION,
    RR_LEGION_NC,
    THROUGHPUT_VARIANTS,
    TP_BASE,
)

__all__ = ["latency_stats", "render", "summarize"]

LATENCY_BASELINE = {
    RR_LEGION: RR_BASE,
    RR_LEGION_NC: RR_BASE_NC,
    RR_BASE: RR_BASE,
    RR_BASE_NC: RR_BASE,
    PUB_AGENT: PUB_BASE,
    PUB_ADMIN: PUB_BASE,
    PUB_BASE: PUB_BASE,
    PUB_BASE_NATS: PUB_BASE,
}
LATENCY_SECTIONS = ("request_reply", "js_publish")


def _paired(xs: Sequence[float], base: Sequence[float]) -> float:
    return median([x / b for x, b in zip(xs, base, strict=True) if b])


def _gain(
    asyncio_reps: Sequence[Mapping[str, float]],
    uvloop_reps: Sequence[Mapping[str, float]],
    key: str,
    *,
    lower_is_better: bool,
) -> float:
    """uvloop's gain over asyncio in %, positive when uvloop is better, from paired repetitions."""
    ratio = _paired([r[key] for r in uvloop_reps], [r[key] for r in asyncio_reps])  # uvloop / asyncio
    return (1 - ratio) * 100 if lower_is_better else (ratio - 1) * 100


def summarize(raw: Mapping[str, Any]) -> dict[str, Any]:
    """Medians and paired ratios from the per-repetition raw numbers."""
    out: dict[str, Any] = {}
    tp = raw["throughput"]
    out["throughput"] = {
        v: {
            **{f"{m}_msgs_per_s": median(tp[v][m]) for m in ("e2e", "drain", "publish")},
            **{f"{m}_vs_baseline": _paired(tp[v][m], tp[TP_BASE][m]) for m in ("e2e", "drain")},
        }
        for v in THROUGHPUT_VARIANTS
    }
    for section in LATENCY_SECTIONS:
        per_loop: dict[str, Any] = {}
        for loop, variants in raw[section].items():
            per_loop[loop] = {}
            for v, reps in variants.items():
                base = variants[LATENCY_BASELINE[v]]
                per_loop[loop][v] = {
                    "p50_us": median([r["p50_us"] for r in reps]),
                    "p99_us": median([r["p99_us"] for r in reps]),
                    "ops_per_s": median([r["ops_per_s"] for r in reps]),
                    "baseline": LATENCY_BASELINE[v],
                    "p50_vs_baseline": _paired([r["p50_us"] for r in reps], [b["p50_us"] for b in base]),
                    "p99_vs_baseline": _paired([r["p99_us"] for r in reps], [b["p99_us"] for b in base]),
                }
        out[section] = per_loop
    uv: dict[str, Any] = {}
    for section in LATENCY_SECTIONS:
        a, u = raw[section].get("asyncio", {}), raw[section].get("uvloop", {})
        uv[section] = {
            v: {
                "asyncio_p50_us": median([r["p50_us"] for r in a[v]]),
                "uvloop_p50_us": median([r["p50_us"] for r in u[v]]),
                "p50_gain_pct": _gain(a[v], u[v], "p50_us", lower_is_better=True),
                "p99_gain_pct": _gain(a[v], u[v], "p99_us", lower_is_better=True),
                "ops_gain_pct": _gain(a[v], u[v], "ops_per_s", lower_is_better=False),
            }
            for v in sorted(a.keys() & u.keys())
        }
    out["uvloop"] = uv
    rp = raw["replay"]
    out["replay"] = {
        "events": rp["events"],
        "fill_events_per_s": rp["fill_events_per_s"],
        **{
            v: {
                "events_per_s": median(rp["variants"][v]),
                "vs_decode_only": _paired(rp["variants"][v], rp["variants"][REPLAY_DECODE]),
            }
            for v in REPLAY_VARIANTS
        },
    }
    return out


# -- the table ------------------------------------------------------------------------------------------


def _n(x: float) -> str:
    return f"{x:,.0f}"


def _x(x: float) -> str:
    return f"{x:.2f}x"


def _spread(xs: Sequence[float]) -> str:
    return f"{min(xs):,.0f}..{max(xs):,.0f}" if xs else ""


def render(raw: Mapping[str, Any], summary: Mapping[str, Any], meta: Mapping[str, Any]) -> str:
    s = meta["sizes"]
    out = [
        "Legion broker benchmark",
        f"  {meta['nats_server']}, nats-py {meta['nats_py']}, uvloop {meta['uvloop']}, Python {meta['python']}, "
        + header(meta),
        f"  medians of {s['reps']} repetitions; ratios are per-repetition (paired) ratios, median",
        "",
        f"1. publish-to-consume throughput, msgs/s ({s['tp_msgs']:,} msgs of ~200 B, batch {s['batch']}, "
        f"{s['window']} PubAcks in flight)",
        "   e2e: admin publishes while the consumer consumes; drain: the inbox is filled first, then consumed",
        "   legion: agent credential, agent's inbox durable via JSL.API; baseline: no auth, $JS.API",
    ]
    tp, tps = raw["throughput"], summary["throughput"]
    rows = [
        [
            v,
            _n(tps[v]["e2e_msgs_per_s"]),
            _spread(tp[v]["e2e"]),
            _x(tps[v]["e2e_vs_baseline"]),
            _n(tps[v]["drain_msgs_per_s"]),
            _spread(tp[v]["drain"]),
            _x(tps[v]["drain_vs_baseline"]),
            _n(tps[v]["publish_msgs_per_s"]),
        ]
        for v in THROUGHPUT_VARIANTS
    ]
    heads = ["variant", "e2e", "min..max", "vs base", "drain", "min..max", "vs base", "fill publish"]
    out += indented(heads, rows)
    titles = {
        "request_reply": f"2. request/reply latency ({s['rr_requests']:,} sequential requests per repetition, "
        "~200 B each way; legion: agent -> legion.vault.<agent>.llm service import -> LEGION responder)",
        "js_publish": f"3. JetStream publish-ack latency ({s['pub_count']:,} sequential publishes of UsageRecorded "
        "per repetition; legion agent: legion.events.<agent>.> via service import)",
    }
    for section in LATENCY_SECTIONS:
        out += ["", titles[section]]
        rows = []
        for loop, variants in summary[section].items():
            for v, st in variants.items():
                rows.append(
                    [
                        v,
                        loop,
                        f"{st['p50_us']:,.0f}",
                        f"{st['p99_us']:,.0f}",
                        _n(st["ops_per_s"]),
                        _x(st["p50_vs_baseline"]),
                        _x(st["p99_vs_baseline"]),
                        st["baseline"],
                    ]
                )
        heads = ["variant", "loop", "p50 us", "p99 us", "ops/s", "p50 vs", "p99 vs", "baseline"]
        out += indented(heads, rows)
    rp = summary["replay"]
    out += [
        "",
        f"4. replay of {rp['events']:,} UsageRecorded events from LEDGER seq 1 into a projection, events/s, "
        f"median of {s['replay_reps']} "
        f"(filled at {_n(rp['fill_events_per_s'])} events/s)",
        f"   admin-made durable, PullConsumer, legion.contracts.decode; SQLite (aiosqlite, WAL) with one "
        f"transaction per {s['batch']} events holding rows, totals and the last applied sequence",
    ]
    rows = [
        [v, _n(rp[v]["events_per_s"]), _spread(raw["replay"]["variants"][v]), _x(rp[v]["vs_decode_only"])]
        for v in REPLAY_VARIANTS
    ]
    out += indented(["variant", "events/s", "min..max", "vs decode only"], rows)
    out += ["", "5. uvloop vs asyncio (gain: positive = uvloop better; paired per repetition)"]
    rows = []
    for section in LATENCY_SECTIONS:
        for v, g in sorted(summary["uvloop"][section].items()):
            rows.append(
                [
                    v,
                    f"{g['asyncio_p50_us']:,.0f}",
                    f"{g['uvloop_p50_us']:,.0f}",
                    f"{g['p50_gain_pct']:+.1f}%",
                    f"{g['p99_gain_pct']:+.1f}%",
                    f"{g['ops_gain_pct']:+.1f}%",
                ]
            )
    heads = ["variant", "asyncio p50 us", "uvloop p50 us", "p50 gain", "p99 gain", "ops/s gain"]
    out += indented(heads, rows)
    return "\n".join(out)
