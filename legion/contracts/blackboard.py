"""The blackboard's rules, shared by the agents' tools and ``legion bb``: what a key may look like,
how big a value may be, and how stored bytes read back."""

from __future__ import annotations

import json
import re
from typing import Any, Final

from legion.contracts.errors import ConfigError

__all__ = ["KV_KEY_RULE", "MAX_KV_KEY_CHARS", "MAX_KV_VALUE_BYTES", "decode_kv_value", "validate_kv_key"]

MAX_KV_KEY_CHARS: Final = 256
MAX_KV_VALUE_BYTES: Final = 64 * 1024
KV_KEY_RULE: Final = "keys are dotted tokens of letters, digits and _ = / - (e.g. tasks.t1), without wildcards"
_KEY: Final = re.compile(r"[A-Za-z0-9_=/.-]+")


def validate_kv_key(key: str, *, what: str = "key") -> str:
    """``key`` if it is a valid KV key (it becomes subject tokens), else :class:`ConfigError` naming it."""
    if not key or len(key) > MAX_KV_KEY_CHARS:
        raise ConfigError(f"{what} {key[:40]!r} must have 1 to {MAX_KV_KEY_CHARS} characters; {KV_KEY_RULE}")
    if _KEY.fullmatch(key) is None:
        raise ConfigError(f"{what} {key!r} has a character that is not allowed ('*', '>', space...); {KV_KEY_RULE}")
    if "" in key.split("."):
        raise ConfigError(f"{what} {key!r} has an empty token (leading, trailing or double '.'); {KV_KEY_RULE}")
    return key


def decode_kv_value(data: bytes | None) -> Any:
    """A stored value: JSON if it parses, else the text (values are written as JSON by Legion)."""
    if not data:
        return None
    try:
        return json.loads(data)
    except (json.JSONDecodeError, UnicodeDecodeError):
        return data.decode("utf-8", errors="replace")
