"""The vault's fair scheduler: every agent its own lane per API, served round-robin.

A call is admitted by the agent the server vouched for (``identify_caller``), never by a field of
the request. Each (agent, API) lane has its own limits (:class:`Limits`, from ``runtime.vault`` and
``agents.<a>.quota``): at most ``concurrency`` calls in progress, at most ``queue`` waiting, and a
token bucket of ``burst`` tokens refilled at ``rate_per_s``. All lanes share the vault's own cap
(``runtime.vault.concurrency``). When a call ends, the freed slot goes to the next lane in
round-robin order that has a call waiting, a slot of its own and a token: one call per lane per
turn, so one agent's backlog never stands in front of another agent's call.

A call that can neither start nor wait (its lane's queue is full) is refused at once with
:class:`QuotaRefused`: ``busy`` when the agent's own cap or the vault's cap is what holds it,
``rate_limited`` when its token bucket is, each retryable and naming the legion.yaml key to raise.

    async with scheduler.admit(agent, "llm"):
        ...  # the call
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Final, Literal

import structlog

from legion.contracts.errors import Refused
from legion.runtime.config import FleetConfig

__all__ = ["API", "Limits", "QuotaRefused", "Scheduler", "limits_from"]

API = Literal["llm", "http", "budget"]
QuotaCode = Literal["busy", "rate_limited"]
_NO_RATE: Final = float("inf")
_LOG_EVERY_S: Final = 1.0

log = structlog.get_logger("legion.actors.vault.scheduler")

# log event names
QUOTA_REFUSED: Final = "vault.quota.refused"


@dataclass(frozen=True, slots=True)
class Limits:
    concurrency: int
    queue: int
    rate_per_s: float | None
    burst: int
    where: str = "runtime.vault.agent_quota"
    """The legion.yaml key these came from, named in refusals."""


def limits_from(config: FleetConfig) -> Callable[[str], Limits]:
    """Each agent's :class:`Limits` from legion.yaml (asked once per lane; an unknown agent gets the default)."""

    def of(agent: str) -> Limits:
        quota = config.quota_of(agent)
        own = config.agents.get(agent)
        return Limits(
            concurrency=quota.concurrency,
            queue=quota.queue,
            rate_per_s=quota.rate_per_s,
            burst=quota.burst,
            where=f"agents.{agent}.quota" if own is not None and own.quota is not None else "runtime.vault.agent_quota",
        )

    return of


class QuotaRefused(Refused):
    """A call the agent's lane could not take; retryable."""

    retryable = True

    def __init__(self, code: QuotaCode, message: str) -> None:
        super().__init__(message)
        self.code: QuotaCode = code
        self.message = message


@dataclass(slots=True, eq=False)
class _Lane:
    agent: str
    api: str
    limits: Limits
    tokens: float
    stamp: float
    running: int = 0
    waiting: deque[asyncio.Future[None]] = field(default_factory=deque)
    queued: bool = False  # in the scheduler's round-robin ring
    refused: int = 0  # since the last log line
    logged_at: float = float("-inf")

    def refill(self, now: float) -> None:
        rate = self.limits.rate_per_s
        if rate is None:
            self.tokens = _NO_RATE
        else:
            self.tokens = min(float(self.limits.burst), self.tokens + (now - self.stamp) * rate)
        self.stamp = now

    def token_in(self) -> float:
        """Seconds until one token is there (0 now)."""
        rate = self.limits.rate_per_s
        if rate is None or self.tokens >= 1:
            return 0.0
        return (1 - self.tokens) / rate

    def can_start(self) -> bool:
        return self.running < self.limits.concurrency and self.tokens >= 1


class Scheduler:
    """Admits calls per (agent, API) lane with a vault-wide cap; see the module docstring."""

    def __init__(
        self, limits_of: Callable[[str], Limits], *, concurrency: int, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._limits_of = limits_of
        self.concurrency = concurrency
        self._clock = clock
        self._lanes: dict[tuple[str, str], _Lane] = {}
        self._ring: deque[_Lane] = deque()  # lanes with calls waiting, in round-robin order
        self.running = 0
        self._timer: asyncio.TimerHandle | None = None

    def _lane(self, agent: str, api: str) -> _Lane:
        lane = self._lanes.get((agent, api))
        if lane is None:
            limits = self._limits_of(agent)
            lane = _Lane(agent, api, limits, tokens=float(limits.burst), stamp=self._clock())
            self._lanes[(agent, api)] = lane
        return lane

    def waiting(self, agent: str, api: API) -> int:
        """Calls of the lane waiting for a turn (for logs and heartbeats)."""
        lane = self._lanes.get((agent, api))
        return len(lane.waiting) if lane is not None else 0

    @contextlib.asynccontextmanager
    async def admit(self, agent: str, api: API) -> AsyncIterator[None]:
        """Hold one of the lane's slots for the block; wait for it in the lane's queue, or raise QuotaRefused."""
        lane = self._lane(agent, api)
        lane.refill(self._clock())
        if not lane.waiting and lane.can_start() and self.running < self.concurrency:
            self._start(lane)
        else:
            await self._wait(lane)
        try:
            yield
        finally:
            self._finish(lane)

    def _start(self, lane: _Lane) -> None:
        lane.running += 1
        lane.tokens -= 1
        self.running += 1

    def _finish(self, lane: _Lane) -> None:
        lane.running -= 1
        self.running -= 1
        self._dispatch()

    async def _wait(self, lane: _Lane) -> None:
        if len(lane.waiting) >= lane.limits.queue:
            refusal = self._refusal(lane)
            self._log_refusal(lane, refusal)
            raise refusal
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        lane.waiting.append(future)
        if not lane.queued:
            lane.queued = True
            self._ring.append(lane)
        self._dispatch()  # e.g. a slot is free but the lane's token comes later: set the timer
        try:
            await future
        except asyncio.CancelledError:
            if future.done() and not future.cancelled():
                self._finish(lane)  # granted, then cancelled before it ran: give the slot back
            else:
                with contextlib.suppress(ValueError):
                    lane.waiting.remove(future)
            raise

    def _dispatch(self) -> None:
        """Give free slots to waiting lanes, one call per lane per turn; wake up later for a token."""
        now = self._clock()
        wake: float | None = None
        blocked: list[_Lane] = []
        while self._ring and self.running < self.concurrency:
            lane = self._ring.popleft()
            if not lane.waiting:
                lane.queued = False
                continue
            lane.refill(now)
            if not lane.can_start():
                if lane.running < lane.limits.concurrency:  # waiting for a token, not for a call to end
                    due = lane.token_in()
                    wake = due if wake is None else min(wake, due)
                blocked.append(lane)
                continue
            future = lane.waiting.popleft()
            if future.done():  # cancelled while waiting
                self._ring.appendleft(lane)
                continue
            self._start(lane)
            future.set_result(None)
            self._ring.append(lane)  # round-robin: to the back of the ring
        self._ring.extendleft(reversed(blocked))  # keep their turn
        if wake is not None:
            self._set_timer(wake)

    def _set_timer(self, delay: float) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._timer = asyncio.get_running_loop().call_later(max(delay, 0.001), self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        self._dispatch()

    def _log_refusal(self, lane: _Lane, refusal: QuotaRefused) -> None:
        """At most one line a second per lane, with the number refused since the last one."""
        lane.refused += 1
        now = self._clock()
        if now - lane.logged_at >= _LOG_EVERY_S:
            log.warning(
                QUOTA_REFUSED,
                agent=lane.agent,
                api=lane.api,
                code=refusal.code,
                refused=lane.refused,
                running=lane.running,
                waiting=len(lane.waiting),
                reason=refusal.message,
            )
            lane.refused, lane.logged_at = 0, now

    def _refusal(self, lane: _Lane) -> QuotaRefused:
        limits, who, where, waiting = lane.limits, f"agent {lane.agent!r}", lane.limits.where, len(lane.waiting)
        if lane.running < limits.concurrency and lane.tokens < 1 and limits.rate_per_s is not None:
            retry = (waiting + 1 - lane.tokens) / limits.rate_per_s  # when the queue ahead has had its tokens
            return QuotaRefused(
                "rate_limited",
                f"{who} is over its rate limit for {lane.api} calls: {limits.rate_per_s:g} a second "
                f"(bursts of {limits.burst}) and {limits.queue} already waiting; retry in {retry:.1f} s, "
                f"or raise {where}.rate_per_s / {where}.burst in legion.yaml",
            )
        if lane.running >= limits.concurrency:
            return QuotaRefused(
                "busy",
                f"{who} has {lane.running} {lane.api} calls in progress (its cap, {where}.concurrency) and "
                f"{waiting} waiting ({where}.queue); retry when one ends, or raise these in legion.yaml",
            )
        return QuotaRefused(
            "busy",
            f"the vault has {self.running} calls in progress (its cap, runtime.vault.concurrency) and "
            f"{waiting} of {who}'s {lane.api} calls waiting ({where}.queue); retry later, "
            "or raise runtime.vault.concurrency in legion.yaml or run another vault",
        )
