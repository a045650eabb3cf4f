"""Cheap probes: does a stream hold something new for this schedule? Two JetStream requests, no model.

Heartbeats that wake an agent every few minutes cost a model call each time, whether or not there
is anything to do. A probe (``SchedulePolicy.probe``) lets the scheduler decide first: the slot fires
only if ``stream`` stored a message matching ``subject`` after the last firing (after the schedule's
creation before its first firing); otherwise the slot is skipped as ``quiet``.

The check: ``STREAM.INFO`` gives the stream's last sequence L, then one direct get finds the first
matching message after what the last firing saw (``seq`` + ``next_by_subj``; by ``start_time`` before
the first firing). Something at or before L: fire and record L; messages after L are the next
probe's. Nothing: quiet.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime

import msgspec

from legion.broker import Broker
from legion.contracts import subjects as subj
from legion.contracts.errors import ConfigError, Unavailable
from legion.contracts.scheduler import ScheduleProbe

__all__ = ["check_probe", "probe"]

_STREAM = re.compile(r"[A-Za-z0-9_-]{1,255}")


def check_probe(p: ScheduleProbe) -> None:
    """ConfigError naming the value if the probe cannot be run."""
    if _STREAM.fullmatch(p.stream) is None:
        raise ConfigError(f"probe stream {p.stream!r} is not a stream name (letters, digits, '_' or '-')")
    tokens = p.subject.split(".")
    if not p.subject or any(t == "" or " " in t for t in tokens) or ">" in tokens[:-1]:
        example = subj.EXT.wildcard(source="github")
        raise ConfigError(
            f"probe subject {p.subject!r} is not a subject filter; write e.g. {example!r} "
            "('*' for one token, '>' only last)"
        )


def _rfc3339(ns: int) -> str:
    when = datetime.fromtimestamp(ns // 1_000_000_000, tz=UTC).strftime("%Y-%m-%dT%H:%M:%S")
    return f"{when}.{ns % 1_000_000_000:09d}Z"


async def probe(broker: Broker, p: ScheduleProbe, *, seen_seq: int, since_ns: int, timeout: float = 5.0) -> int | None:
    """The stream's last sequence if something new matches (fire), None if not (quiet).

    ``seen_seq``: what the last firing saw (0: never fired, then ``since_ns`` bounds the search).
    """
    info = await broker.js_api(f"STREAM.INFO.{p.stream}", timeout=timeout)
    last = int(info.get("state", {}).get("last_seq", 0))
    if last <= seen_seq:
        return None
    query: dict[str, object] = {"next_by_subj": p.subject}
    if seen_seq:
        query["seq"] = seen_seq + 1
    else:
        query["start_time"] = _rfc3339(since_ns)
    msg = await broker.request_raw(
        f"{broker.js_api_prefix}.DIRECT.GET.{p.stream}", msgspec.json.encode(query), timeout=timeout
    )
    headers = msg.headers or {}
    status = headers.get("Status")
    if status == "404":
        return None
    if status is not None:
        raise Unavailable(f"probe of {p.stream} failed: {status} {headers.get('Description', '')}")
    found = int(headers.get("Nats-Sequence", "0"))
    return last if 0 < found <= last else None
