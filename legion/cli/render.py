"""Progress while a fleet comes up: a live table on a terminal, one line per change otherwise, nothing
for ``--json``. It renders :class:`FleetState`, so ``legion up`` and ``legion up -d`` (which reads
state.json) show the same thing."""

from __future__ import annotations

import re
import sys
import time
from types import TracebackType
from typing import Any, Literal, TextIO

import msgspec
import typer
from rich.console import Console
from rich.live import Live
from rich.table import Table
from rich.text import Text

from legion.cli.console.events import TailEvent
from legion.contracts import contract_for
from legion.contracts.ledger import CostsReport
from legion.contracts.scheduler import ScheduleInfo, ScheduleList
from legion.runtime.fleet.state import FleetState

__all__ = [
    "DisplayMode",
    "ProgressDisplay",
    "cron_table",
    "display_mode",
    "format_age",
    "print_costs",
    "ps_table",
    "safe",
    "summary_text",
    "tail_lines",
]

DisplayMode = Literal["live", "plain", "quiet"]
_STYLE = {
    "healthy": "green",
    "starting": "yellow",
    "restarting": "yellow",
    "crash-loop": "red",
    "failed": "red",
    "stopped": "dim",
}


def display_mode(as_json: bool, stream: TextIO | None = None) -> DisplayMode:
    if as_json:
        return "quiet"
    return "live" if (stream or sys.stdout).isatty() else "plain"


def format_age(seconds: float | None) -> str:
    if seconds is None or seconds < 0:
        return "-"
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, secs = divmod(int(seconds), 60)
    if minutes < 60:
        return f"{minutes}m{secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m" if hours < 48 else f"{hours // 24}d{hours % 24:02d}h"


def _rows(state: FleetState) -> list[tuple[str, str, str, str, float | None]]:
    """(name, kind, state, pid, started_at) with the NATS server first."""
    nats = state.nats
    rows: list[tuple[str, str, str, str, float | None]] = [
        ("nats", "nats", nats.state, str(nats.pid or "-"), state.started_at)
    ]
    for name, rec in state.actors.items():
        rows.append((name, rec.kind, rec.state, (rec.ref.label or rec.ref.id) if rec.ref else "-", rec.started_at))
    return rows


class ProgressDisplay:
    """``with ProgressDisplay(mode) as show: show(state)`` on every change."""

    def __init__(self, mode: DisplayMode, title: str = "starting") -> None:
        self.mode = mode
        self.title = title
        self._state: FleetState | None = None
        self._seen: dict[str, tuple[str, str]] = {}
        self._live: Live | None = None

    def _table(self) -> Table:
        table = Table(title=f"legion: {self.title}", title_justify="left", box=None, pad_edge=False)
        for col in ("actor", "kind", "state", "id", "elapsed"):
            table.add_column(col, justify="right" if col in ("id", "elapsed") else "left")
        if self._state is not None:
            now = time.time()
            for name, kind, st, pid, since in _rows(self._state):
                age = format_age(now - since) if since else "-"
                table.add_row(name, kind, f"[{_STYLE.get(st, 'white')}]{st}[/]", pid, age)
        return table

    def close(self) -> None:
        """Stop showing (the live table disappears); later states are ignored. Safe to call twice."""
        self.__exit__(None, None, None)
        self.mode = "quiet"

    def __call__(self, state: FleetState) -> None:
        self._state = state
        if self.mode == "live" and self._live is not None:
            self._live.refresh()
        elif self.mode == "plain":
            for name, _kind, st, pid, _since in _rows(state):
                if self._seen.get(name) != (st, pid):
                    self._seen[name] = (st, pid)
                    suffix = f" {pid}" if pid != "-" else ""
                    print(f"  {name:<10} {st}{suffix}", flush=True)

    def __enter__(self) -> ProgressDisplay:
        if self.mode == "live":
            self._live = Live(get_renderable=self._table, console=Console(), refresh_per_second=4, transient=True)
            self._live.__enter__()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        live, self._live = self._live, None
        if live is not None:
            live.__exit__(exc_type, exc, tb)


def summary_text(state: FleetState) -> list[str]:
    """The human summary once a fleet is up (the same facts as ``summary()``'s JSON)."""
    nats = state.nats
    where = f"{nats.url}{' (embedded)' if nats.embedded else ''}"
    lines = [f"legion: fleet {state.fleet} healthy  nats {where}  launcher pid {state.launcher_pid}"]
    lines += [f"  stream {name:<7} {count} messages" for name, count in state.streams.items()]
    lines += [f"  bucket {bucket}" for bucket in state.buckets]
    for name, rec in state.actors.items():
        label = "agent " if rec.kind == "agent" else "actor "
        where = f" ({state.backend} {rec.ref.label or rec.ref.id})" if rec.ref else ""
        lines.append(f"  {label} {name}: {rec.state}{where}")
    created = state.provisioned.get("created") or []
    if created:
        lines.append(f"  created: {', '.join(created)}")
    return lines


def ps_table(rows: list[tuple[str, str, str, str, str, str]]) -> Table:
    """``legion ps``: (name, kind, state, id, restarts, uptime) per row."""
    table = Table(box=None, pad_edge=False)
    for col in ("ACTOR", "KIND", "STATE", "ID", "RESTARTS", "UPTIME"):
        table.add_column(col, justify="right" if col in ("ID", "RESTARTS", "UPTIME") else "left")
    for name, kind, st, pid, restarts, uptime in rows:
        table.add_row(name, kind, f"[{_STYLE.get(st, 'red')}]{st}[/]", pid, restarts, uptime)
    return table


# -- text from outside -----------------------------------------------------------------------------
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def safe(text: str) -> str:
    """``text`` with control characters (terminal escapes: ESC, title and erase sequences, C1
    controls) shown as ``\\xNN``, so event fields, logs and model output cannot drive the terminal.
    Newlines and tabs stay."""
    return _CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}", text)


# -- legion tail -----------------------------------------------------------------------------------
_SUMMARY_FIELDS = 4
_SUMMARY_VALUE = 40
_SUMMARY_LINE = 120
_json = msgspec.json.Encoder(decimal_format="string")


def _short(value: Any) -> str:
    text = value if isinstance(value, str) else _json.encode(value).decode()
    text = " ".join(text.split())
    return text if len(text) <= _SUMMARY_VALUE else text[: _SUMMARY_VALUE - 1] + "…"


def _summary(data: Any) -> str:
    if isinstance(data, dict):
        items = [(k, v) for k, v in data.items() if k != "type"][:_SUMMARY_FIELDS]
        line = " ".join(f"{k}={_short(v)}" for k, v in items)
    else:
        line = _short(data)
    return line if len(line) <= _SUMMARY_LINE else line[: _SUMMARY_LINE - 1] + "…"


def _text_line(ev: TailEvent, color: bool) -> str:
    when = ev.time.replace("T", " ")
    tag = safe(ev.type or "?")
    trace = safe(ev.trace[:8] or "-")
    if color:
        when = typer.style(when, dim=True)
        source = typer.style(f"{ev.source:<12}", fg="cyan")
        tag_s = typer.style(f"{tag:<22}", fg="yellow" if contract_for(ev.type) is None else "green")
        trace = typer.style(trace, fg="magenta")
        return f"{when} {source} {tag_s} {trace:<8} {safe(_summary(ev.data))}"
    return safe(f"{when} {ev.source:<12} {tag:<22} {trace:<8} {_summary(ev.data)}")


def tail_lines(events: list[TailEvent], *, as_json: bool, color: bool) -> list[str]:
    """One line per event: the event as JSON, or time, source, type, trace and a field summary."""
    if as_json:
        return [_json.encode(e).decode() for e in events]
    return [_text_line(e, color) for e in events]


# -- legion costs ----------------------------------------------------------------------------------
def print_costs(report: CostsReport, console: Console, *, by: str = "day") -> None:
    """A table of the rows (one per period, agent, project and model) and a total line."""
    if not report.rows:
        console.print("no spend recorded yet (the ledger has no usage for this query)")
        return
    table = Table(title=f"costs by {by}", show_footer=True)
    calls = sum(r.calls for r in report.rows)
    prompt = sum(r.prompt_tokens for r in report.rows)
    completion = sum(r.completion_tokens for r in report.rows)
    table.add_column(by, footer="total")
    table.add_column("agent")
    table.add_column("project")
    table.add_column("model")
    table.add_column("calls", justify="right", footer=str(calls))
    table.add_column("prompt tok", justify="right", footer=str(prompt))
    table.add_column("completion tok", justify="right", footer=str(completion))
    table.add_column("cost USD", justify="right", footer=str(report.total_usd))
    for r in report.rows:
        table.add_row(
            r.period,
            r.agent,
            r.project or "-",
            r.model or "-",
            str(r.calls),
            str(r.prompt_tokens),
            str(r.completion_tokens),
            str(r.cost_usd),
        )
    console.print(table)


# -- legion cron -------------------------------------------------------------------------------------
def _when(info: ScheduleInfo) -> str:
    spec = info.spec
    if spec.cron:
        text = f"cron {spec.cron}"
    elif spec.every:
        text = f"every {spec.every}" + (f" +{spec.offset}" if spec.offset else "")
    else:
        text = f"at {spec.at}"
    if spec.tz != "UTC":
        text += f" ({spec.tz})"
    return text + (f" ~{spec.jitter_s:g}s" if spec.jitter_s else "")


def _next(info: ScheduleInfo, now: float) -> str:
    if info.invalid:
        return "invalid"
    if info.paused:
        return "paused"
    if info.next_fire_ns is None:
        return "-"
    stamp = time.strftime("%Y-%m-%d %H:%M", time.gmtime(info.next_fire_ns / 1e9))
    return f"{stamp}Z (in {format_age(info.next_fire_ns / 1e9 - now)})"


def cron_table(listed: ScheduleList, now: float | None = None) -> Table:
    """``legion cron ls``: one row per schedule (agent, name, when, next fire, last task, by, note)."""
    now = time.time() if now is None else now
    title = "schedules (the whole fleet is PAUSED: `legion cron resume --all`)" if listed.fleet_paused else None
    table = Table(box=None, pad_edge=False, title=title)
    for col in ("AGENT", "NAME", "WHEN", "NEXT", "LAST TASK", "BY", "NOTE"):
        table.add_column(col)
    for info in listed.schedules:
        nxt = _next(info, now)
        style = "red" if info.invalid else "dim" if info.paused else "green"
        last = info.running_task_id + " (running)" if info.running_task_id else info.last_task_id or "-"
        note = info.invalid or info.note
        cells = (info.agent, info.schedule_id, _when(info), nxt, last, info.created_by or "-", note)
        # Text, not markup: names, notes and errors come from agents and files
        table.add_row(*(Text(safe(c), style=style if i == 3 else "") for i, c in enumerate(cells)))
    return table
