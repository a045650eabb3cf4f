"""``models:``: aliases the vault passes to LiteLLM, with their key name, price and failover chain."""

from __future__ import annotations

from typing import Any

from pydantic import Field

from legion.runtime.config.base import Strict, Token, Usd

__all__ = ["ModelConfig", "Price"]


class Price(Strict):
    """USD per million tokens; overrides LiteLLM's price table (required for unknown models)."""

    input_per_mtok: Usd
    output_per_mtok: Usd


class ModelConfig(Strict):
    """A model alias: what the vault passes to LiteLLM, and the key it uses (never given to agents)."""

    model: str = Field(
        min_length=1, pattern=r"\S", description="LiteLLM model name, e.g. openai/gpt-4o-mini (not empty)"
    )
    api_base: str | None = Field(default=None, description="OpenAI-compatible endpoint, e.g. a local server")
    key: str | None = Field(default=None, description="key name: the vault reads LEGION_SYSTEM_<KEY>")
    params: dict[str, Any] = Field(default_factory=dict, description="extra LiteLLM parameters")
    price: Price | None = None
    fallbacks: list[Token] = Field(default_factory=list, description="aliases tried in order when this one fails")
    max_tokens: int | None = Field(default=None, gt=0)
    timeout_s: float = Field(default=120.0, gt=0)
    context_window: int = Field(default=128_000, gt=0, description="tokens; agents compact at ~70 %")
