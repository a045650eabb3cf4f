"""The scheduler's clock, injected: the system clock in production, a manual one in tests.

The scheduler never sleeps on its own: it asks the clock to wait until a time or until ``wake`` is
set (the table changed). :class:`ManualClock` only moves when a test moves it, so tests cross a
daily boundary, a DST change or an hour of downtime without waiting.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Protocol

__all__ = ["Clock", "ManualClock", "SystemClock"]

_MAX_SLEEP_S = 30.0
"""The system clock re-reads the time at least this often (it may be stepped by NTP or by hand)."""


class Clock(Protocol):
    def now_ns(self) -> int: ...

    async def wait(self, until_ns: int | None, wake: asyncio.Event) -> None:
        """Return at ``until_ns`` (None: no deadline), when ``wake`` is set, or earlier; callers re-check."""
        ...


class SystemClock:
    def now_ns(self) -> int:
        return time.time_ns()

    async def wait(self, until_ns: int | None, wake: asyncio.Event) -> None:
        delay = _MAX_SLEEP_S if until_ns is None else min(_MAX_SLEEP_S, (until_ns - time.time_ns()) / 1e9)
        if delay <= 0:
            return
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(delay):
                await wake.wait()


class ManualClock:
    """A clock that moves only with :meth:`advance` or :meth:`set`; every waiter then re-checks."""

    def __init__(self, start_ns: int) -> None:
        self._now = start_ns
        self._moved = asyncio.Event()

    def now_ns(self) -> int:
        return self._now

    def set(self, now_ns: int) -> None:
        self._now = now_ns
        moved, self._moved = self._moved, asyncio.Event()
        moved.set()

    def advance(self, seconds: float) -> int:
        self.set(self._now + int(seconds * 1_000_000_000))
        return self._now

    async def wait(self, until_ns: int | None, wake: asyncio.Event) -> None:
        if until_ns is not None and self._now >= until_ns:
            return
        moved = self._moved
        waits = {asyncio.ensure_future(moved.wait()), asyncio.ensure_future(wake.wait())}
        try:
            await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for w in waits:
                w.cancel()
