"""``runtime.vault`` and ``agents.<a>.quota``: how much of the vault one agent may hold at once.

The vault admits each agent's calls through its own lane per API (``llm``, ``http``, ``budget``):
at most ``concurrency`` in progress, at most ``queue`` waiting for a turn, started at most
``rate_per_s`` a second on average with bursts of ``burst``. ``runtime.vault.agent_quota`` is every
agent's default; ``agents.<a>.quota`` overrides it key by key (:meth:`Quota.merged`). A call past
the queue is refused at once (``busy`` or ``rate_limited``, retryable).
"""

from __future__ import annotations

from typing import Final

from pydantic import Field, field_validator, model_validator

from legion.runtime.config.base import Strict

__all__ = ["MAX_CONCURRENCY", "Quota", "VaultConfig"]

MAX_CONCURRENCY: Final = 4096
_MAX_QUEUE: Final = 100_000


def _whole(value: int, *, low: int, high: int, meaning: str, fix: str) -> int:
    if isinstance(value, bool) or not low <= value <= high:
        raise ValueError(f"must be a whole number from {low} to {high} ({meaning}); {fix}")
    return value


class Quota(Strict):
    """One agent's share of the vault, per API. Unset keys of an agent's ``quota`` take the fleet's default."""

    concurrency: int = Field(default=8, description="its calls in progress at once")
    queue: int = Field(default=64, description="its calls waiting for a turn; one more is refused (busy)")
    rate_per_s: float | None = Field(default=50.0, description="calls started per second on average; null: no limit")
    burst: int = Field(default=100, description="calls started at once after a quiet spell (the bucket's size)")

    @field_validator("concurrency")
    @classmethod
    def _concurrency(cls, value: int) -> int:
        return _whole(
            value,
            low=1,
            high=MAX_CONCURRENCY,
            meaning="calls of one agent in progress at once",
            fix="e.g. 8; remove the key to take the default",
        )

    @field_validator("queue")
    @classmethod
    def _queue(cls, value: int) -> int:
        return _whole(
            value,
            low=0,
            high=_MAX_QUEUE,
            meaning="calls of one agent waiting for a turn; 0 refuses any call that cannot start at once",
            fix="e.g. 64",
        )

    @field_validator("rate_per_s")
    @classmethod
    def _rate(cls, value: float | None) -> float | None:
        if value is not None and not value > 0:
            raise ValueError("must be a positive number of calls per second, e.g. 50; null turns the rate limit off")
        return value

    @field_validator("burst")
    @classmethod
    def _burst(cls, value: int) -> int:
        return _whole(
            value,
            low=1,
            high=_MAX_QUEUE,
            meaning="calls started at once after a quiet spell",
            fix="e.g. twice rate_per_s",
        )

    def merged(self, override: Quota | None) -> Quota:
        """This default with the keys ``override`` sets (an agent's ``quota``) replaced."""
        if override is None:
            return self
        return self.model_copy(update={k: getattr(override, k) for k in override.model_fields_set})


class VaultConfig(Strict):
    """How the vault shares itself among agents (each vault instance on its own)."""

    concurrency: int = Field(default=64, description="calls in progress at once in one vault, all agents together")
    agent_quota: Quota = Field(default_factory=Quota, description="every agent's default; agents.<a>.quota overrides")

    @field_validator("concurrency")
    @classmethod
    def _concurrency(cls, value: int) -> int:
        return _whole(
            value,
            low=1,
            high=MAX_CONCURRENCY,
            meaning="calls in progress at once in one vault, all agents together",
            fix="e.g. 64",
        )

    @model_validator(mode="after")
    def _agent_fits(self) -> VaultConfig:
        if self.agent_quota.concurrency > self.concurrency:
            raise ValueError(
                f"runtime.vault.agent_quota.concurrency ({self.agent_quota.concurrency}) is more than "
                f"runtime.vault.concurrency ({self.concurrency}), which no agent can exceed; "
                "lower the first or raise the second"
            )
        return self
