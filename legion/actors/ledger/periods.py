"""UTC period keys of stream timestamps: ``day`` -> ``2025-01-31``, ``month`` -> ``2025-01``.

Pure and cached per day, so folding 100k events does not build 100k datetimes.
"""

from __future__ import annotations

from datetime import date, timedelta
from functools import lru_cache

from legion.actors.ledger.budgets import Period

__all__ = ["DAY_NS", "day_of", "period_key", "period_keys"]

DAY_NS = 86_400 * 1_000_000_000
_EPOCH = date(1970, 1, 1)


@lru_cache(maxsize=1024)
def _keys_of_day(day_index: int) -> tuple[str, str]:
    day = (_EPOCH + timedelta(days=day_index)).isoformat()
    return day, day[:7]


def period_keys(ts_ns: int) -> tuple[str, str]:
    """(day key, month key) of a timestamp in nanoseconds since the epoch, in UTC."""
    return _keys_of_day(ts_ns // DAY_NS)


def period_key(period: Period, ts_ns: int) -> str:
    day, month = period_keys(ts_ns)
    return day if period == "day" else month


def day_of(ts_ns: int) -> str:
    return period_keys(ts_ns)[0]
