"""What every section of legion.yaml shares: strict frozen models and validated name tokens."""

from __future__ import annotations

from decimal import Decimal
from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from legion.contracts.errors import ConfigError
from legion.contracts.names import validate_token

__all__ = ["MAX_USD", "Strict", "Token", "Usd", "token"]

MAX_USD = Decimal(1_000_000_000)
"""No budget or price in legion.yaml is larger: a bigger number is a typo (``1e400``), not a budget."""


def token(kind: str) -> AfterValidator:
    def check(value: str) -> str:
        try:
            return validate_token(value, kind=kind)
        except ConfigError as exc:  # pydantic reports ValueErrors with their key path
            raise ValueError(str(exc)) from None

    return AfterValidator(check)


Token = Annotated[str, token("name")]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


Usd = Annotated[Decimal, Field(ge=0, le=MAX_USD, allow_inf_nan=False)]
"""An amount in USD: finite, not negative, at most :data:`MAX_USD`."""
