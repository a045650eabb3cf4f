"""What every section of legion.yaml shares: strict frozen models and validated name tokens."""

from __future__ import annotations

from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict

from legion.contracts.errors import ConfigError
from legion.contracts.names import validate_token

__all__ = ["Strict", "Token", "token"]


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
