"""Waiting for a stream reader to have applied a sequence: what the ledger's and the scheduler's
feeds hand out as ``wait_applied(seq)`` (a request is answered once its own append was applied)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable

from legion.contracts.errors import LegionError, Unavailable

__all__ = ["AppliedWaiters"]


class AppliedWaiters:
    """Futures of callers waiting for "applied up to N"; the feed calls :meth:`release` as it applies."""

    def __init__(self) -> None:
        self._waiters: list[tuple[int, asyncio.Future[None]]] = []

    def __bool__(self) -> bool:
        return bool(self._waiters)

    def release(self, applied: int) -> None:
        """Wake everyone waiting for ``applied`` or less."""
        keep: list[tuple[int, asyncio.Future[None]]] = []
        for seq, fut in self._waiters:
            if seq <= applied:
                if not fut.done():
                    fut.set_result(None)
            else:
                keep.append((seq, fut))
        self._waiters = keep

    def fail(self, exc: LegionError) -> None:
        """Every waiter gets ``exc`` (the feed stopped or could not apply a record)."""
        waiters, self._waiters = self._waiters, []
        for _, fut in waiters:
            if not fut.done():
                fut.set_exception(exc)

    async def wait(self, seq: int, timeout: float, *, late: Callable[[], str]) -> None:
        """Until :meth:`release` reaches ``seq``; Unavailable with ``late()`` after ``timeout``."""
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        entry = (seq, fut)
        self._waiters.append(entry)
        try:
            async with asyncio.timeout(timeout):
                await fut
        except TimeoutError:
            raise Unavailable(late()) from None
        finally:
            with contextlib.suppress(ValueError):
                self._waiters.remove(entry)
