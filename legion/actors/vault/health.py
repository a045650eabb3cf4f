"""Per-model health: a failing model alias cools down and is skipped until the cooldown ends.

- transient failures (429, 5xx, timeouts, dropped connections): 60 s, then 300 s, then 1500 s;
- auth or billing failures (401, 402, 403): 1 h at once (a new key needs a restart anyway);
- a request the provider rejects as invalid (400, 404...) says nothing about the model: no cooldown.

A success clears the strikes, and so does an hour without failures. Failures reported while the
model is already cooling down (calls that were in flight together) do not escalate it. The clock
is injected (monotonic seconds), so tests advance time instead of sleeping.

Health is per vault instance: several vaults each learn it on their own, which costs at most one
failed call per instance and model.
"""

from __future__ import annotations

import enum
import time
from collections.abc import Callable
from dataclasses import dataclass

__all__ = ["AUTH_COOLDOWN_S", "TRANSIENT_COOLDOWNS_S", "Clock", "FailureKind", "ModelHealth"]

Clock = Callable[[], float]
"""Monotonic seconds."""

TRANSIENT_COOLDOWNS_S: tuple[float, ...] = (60.0, 300.0, 1500.0)
AUTH_COOLDOWN_S = 3600.0
_QUIET_RESET_S = 3600.0


class FailureKind(enum.Enum):
    TRANSIENT = "transient"
    AUTH = "auth"
    REQUEST = "request"


@dataclass(slots=True)
class _State:
    strikes: int = 0
    until: float = 0.0
    last_failure: float = 0.0


class ModelHealth:
    def __init__(self, clock: Clock = time.monotonic) -> None:
        self._clock = clock
        self._states: dict[str, _State] = {}

    def cooldown_left(self, alias: str) -> float:
        """Seconds until ``alias`` may be called again (0: available)."""
        state = self._states.get(alias)
        if state is None:
            return 0.0
        return max(0.0, state.until - self._clock())

    def available(self, alias: str) -> bool:
        return self.cooldown_left(alias) == 0.0

    def record_success(self, alias: str) -> None:
        self._states.pop(alias, None)

    def record_failure(self, alias: str, kind: FailureKind) -> float:
        """Note a failure; returns the cooldown now in force for ``alias`` (0 for none)."""
        if kind is FailureKind.REQUEST:
            return self.cooldown_left(alias)
        now = self._clock()
        state = self._states.setdefault(alias, _State())
        if now < state.until:  # already cooling down: a concurrent call failed too
            return state.until - now
        if state.last_failure and now - state.last_failure > _QUIET_RESET_S:
            state.strikes = 0
        state.strikes += 1
        state.last_failure = now
        if kind is FailureKind.AUTH:
            cooldown = AUTH_COOLDOWN_S
        else:
            cooldown = TRANSIENT_COOLDOWNS_S[min(state.strikes, len(TRANSIENT_COOLDOWNS_S)) - 1]
        state.until = now + cooldown
        return cooldown
