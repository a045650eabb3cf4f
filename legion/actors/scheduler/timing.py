"""When slots are: a :class:`ScheduleSpec` compiled into a :class:`Timer`. Pure: no clock, no I/O.

All times are integers, nanoseconds since the Unix epoch (UTC).

- cron: parsed and walked by cronsim in the schedule's IANA zone. DST follows Debian cron, which
  cronsim mimics for expressions with a fixed minute and hour: a wall time that does not exist (02:30
  on a spring-forward day) fires once, at the first minute after the gap (03:00); a wall time that
  exists twice (01:30 on a fall-back day) fires once, at its first occurrence. Expressions whose
  minute or hour is a wildcard (``*/15 * * * *``) run on real time and fire in both repeated hours.
- every: real elapsed time, slots at ``epoch + offset + k * every`` (no wall clock, no DST).
- at: one slot.

Jitter is derived, not drawn: a hash of (agent, schedule id, slot) picks the delay, so every
scheduler instance and every restart computes the same fire time.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Final
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from cronsim import CronSim, CronSimError

from legion.contracts.errors import ConfigError
from legion.contracts.scheduler import ScheduleSpec, parse_duration

__all__ = ["CRON_ALIASES", "NS", "Timer", "compile_spec", "jitter_ns", "parse_duration", "zone"]

NS: Final = 1_000_000_000

CRON_ALIASES: Final = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}
"""The usual aliases (cronsim reads five or six fields only); the same table as ADR-51's."""


def zone(name: str) -> ZoneInfo:
    """The IANA zone ``name``; ConfigError naming it if this host's tz database does not know it."""
    unknown = ConfigError(
        f"time zone {name!r} is unknown; use an IANA name such as 'UTC', 'Europe/Berlin' or 'America/New_York'"
    )
    if not name or name != name.strip() or name.startswith(("/", ".")) or ".." in name:
        raise unknown
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        raise unknown from None


def _cron_expr(text: str) -> str:
    expr = " ".join(text.split())
    expr = CRON_ALIASES.get(expr.lower(), expr)
    if expr.startswith("@"):
        raise ConfigError(f"cron alias {text!r} is unknown; use one of {', '.join(sorted(CRON_ALIASES))}")
    fields = expr.split(" ")
    if len(fields) != 5:
        raise ConfigError(
            f"cron expression {text!r} has {len(fields)} fields; write five: minute hour day-of-month month "
            "day-of-week (e.g. '30 2 * * *'), or an alias such as '@hourly'"
        )
    names = ("minute", "hour", "day-of-month", "month", "day-of-week")
    for name, field in zip(names, fields, strict=True):
        if re.search(r"/0*(?:,|$)", field):
            raise ConfigError(f"cron expression {text!r}: the {name} step {field!r} is zero; a step must be >= 1")
    try:
        CronSim(expr, datetime(2000, 1, 1, tzinfo=UTC))
    except (CronSimError, ValueError) as exc:
        raise ConfigError(
            f"cron expression {text!r} is invalid ({exc}); fields are minute 0-59, hour 0-23, day 1-31, "
            "month 1-12 or jan-dec, day-of-week 0-7 or sun-sat"
        ) from None
    return expr


def _to_ns(dt: datetime) -> int:
    return int(dt.timestamp()) * NS + dt.microsecond * 1000


def _parse_at(text: str, tz: ZoneInfo) -> int:
    try:
        dt = datetime.fromisoformat(text.strip())
    except ValueError:
        raise ConfigError(
            f"at {text!r} is not an ISO 8601 time; write e.g. '2026-12-24T18:00' (read in the schedule's tz) "
            "or '2026-12-24T18:00:00+01:00'"
        ) from None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=tz)
    return _to_ns(dt)


@dataclass(frozen=True, slots=True)
class Timer:
    """A compiled spec: :meth:`next_after` gives the first slot strictly after a time."""

    kind: str  # "cron" | "every" | "at"
    tz: ZoneInfo
    cron: str = ""
    every_ns: int = 0
    offset_ns: int = 0
    at_ns: int = 0
    jitter_ns: int = 0

    def next_after(self, after_ns: int) -> int | None:
        """The first slot > ``after_ns``, or None if there is none (a one-shot already past)."""
        if self.kind == "every":
            k = (after_ns - self.offset_ns) // self.every_ns + 1
            return self.offset_ns + k * self.every_ns
        if self.kind == "at":
            return self.at_ns if self.at_ns > after_ns else None
        start = datetime.fromtimestamp(after_ns // NS, tz=UTC).astimezone(self.tz)
        it = CronSim(self.cron, start)
        for _ in range(4):  # cronsim may hand back a slot <= start across a fall-back (fold) boundary
            try:
                slot = _to_ns(next(it))
            except StopIteration:
                return None
            if slot > after_ns:
                return slot
        return None

    def last_at_or_before(self, t_ns: int) -> int | None:
        """The latest slot <= ``t_ns`` (None: there is none), without walking the slots before it."""
        if self.kind == "every":
            return self.offset_ns + ((t_ns - self.offset_ns) // self.every_ns) * self.every_ns
        if self.kind == "at":
            return self.at_ns if self.at_ns <= t_ns else None
        start = datetime.fromtimestamp(t_ns // NS + 1, tz=UTC).astimezone(self.tz)
        it = CronSim(self.cron, start, reverse=True)
        for _ in range(4):
            try:
                slot = _to_ns(next(it))
            except StopIteration:
                return None
            if slot <= t_ns:
                return slot
        return None

    def slots(self, after_ns: int, until_ns: int, limit: int) -> list[int]:
        """Up to ``limit`` slots in (after_ns, until_ns], oldest first."""
        out: list[int] = []
        t = after_ns
        while len(out) < limit:
            slot = self.next_after(t)
            if slot is None or slot > until_ns:
                break
            out.append(slot)
            t = slot
        return out

    def min_gap_s(self, from_ns: int, samples: int = 64) -> float | None:
        """The smallest distance between consecutive slots over the next ``samples`` slots (None: < 2 slots)."""
        if self.kind == "every":
            return self.every_ns / NS
        if self.kind == "at":
            return None
        gaps: list[int] = []
        prev = self.next_after(from_ns)
        for _ in range(samples):
            if prev is None:
                break
            nxt = self.next_after(prev)
            if nxt is None:
                break
            gaps.append(nxt - prev)
            prev = nxt
        return min(gaps) / NS if gaps else None


def compile_spec(spec: ScheduleSpec) -> Timer:
    """The spec's timer; ConfigError naming the bad value and how to fix it."""
    kinds = [k for k, v in (("cron", spec.cron), ("every", spec.every), ("at", spec.at)) if v.strip()]
    if len(kinds) != 1:
        raise ConfigError(
            f"a schedule needs exactly one of cron, every and at; got {kinds or 'none'} "
            "(e.g. cron: '0 9 * * 1-5', every: '30m' or at: '2026-12-24T18:00')"
        )
    tz = zone(spec.tz)
    jitter = spec.jitter_s
    if not (jitter >= 0 and jitter <= 3600):  # also refuses NaN
        raise ConfigError(f"jitter_s {jitter!r} must be between 0 and 3600 seconds")
    if spec.offset and kinds[0] != "every":
        raise ConfigError(f"offset {spec.offset!r} applies only to 'every' schedules; remove it or use every")
    kind = kinds[0]
    if kind == "cron":
        return Timer(kind=kind, tz=tz, cron=_cron_expr(spec.cron), jitter_ns=int(jitter * NS))
    if kind == "every":
        every = parse_duration(spec.every, what="every")
        offset = parse_duration(spec.offset, what="offset") if spec.offset else 0
        if offset >= every:
            raise ConfigError(f"offset {spec.offset!r} must be shorter than every {spec.every!r}")
        if jitter >= every:
            raise ConfigError(f"jitter_s {jitter:g} must be shorter than the interval every {spec.every!r}")
        return Timer(kind=kind, tz=tz, every_ns=every * NS, offset_ns=offset * NS, jitter_ns=int(jitter * NS))
    return Timer(kind=kind, tz=tz, at_ns=_parse_at(spec.at, tz), jitter_ns=int(jitter * NS))


def jitter_ns(agent: str, schedule_id: str, slot_ns: int, max_ns: int) -> int:
    """The slot's delay in [0, max_ns]: a hash of (agent, schedule id, slot), the same on every instance."""
    if max_ns <= 0:
        return 0
    digest = hashlib.blake2b(f"{agent}/{schedule_id}/{slot_ns}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") % (max_ns + 1)
