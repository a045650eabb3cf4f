"""Prices in exact Decimal USD per token: ``models.<alias>.price`` first, else LiteLLM's price map.

A model with neither fails closed: the vault refuses to call what it cannot bill. The built-in
offline model (``legion/offline``) costs nothing, whatever ``price:`` says.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Literal

from legion.actors.vault._litellm import litellm
from legion.actors.vault.offline import is_offline
from legion.runtime.config import ModelConfig

__all__ = ["TokenPrice", "price_of"]

_MILLION = Decimal(1_000_000)


@dataclass(frozen=True, slots=True)
class TokenPrice:
    input_per_token: Decimal
    output_per_token: Decimal
    source: Literal["config", "litellm", "builtin"]

    def cost(self, prompt_tokens: int, completion_tokens: int) -> Decimal:
        return self.input_per_token * prompt_tokens + self.output_per_token * completion_tokens


def _decimal(value: object) -> Decimal | None:
    if isinstance(value, bool) or not isinstance(value, int | float | str | Decimal):
        return None
    try:
        out = Decimal(str(value))
    except ArithmeticError:
        return None
    return out if out.is_finite() and out >= 0 else None


def price_of(model: ModelConfig) -> TokenPrice | None:
    """The price of one alias, or None when neither legion.yaml nor LiteLLM knows it."""
    if is_offline(model.model):
        return TokenPrice(input_per_token=Decimal(0), output_per_token=Decimal(0), source="builtin")
    if model.price is not None:
        return TokenPrice(
            input_per_token=model.price.input_per_mtok / _MILLION,
            output_per_token=model.price.output_per_mtok / _MILLION,
            source="config",
        )
    try:
        info = litellm.get_model_info(model=model.model)
    except Exception:  # noqa: BLE001 - LiteLLM raises a bare Exception for an unmapped model
        return None
    given = _decimal(info.get("input_cost_per_token"))
    taken = _decimal(info.get("output_cost_per_token"))
    if given is None or taken is None:
        return None
    return TokenPrice(input_per_token=given, output_per_token=taken, source="litellm")
