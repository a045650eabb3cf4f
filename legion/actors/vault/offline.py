"""The built-in offline model: ``model: legion/offline`` in legion.yaml, answered by the vault itself.

It lets a fleet run end to end (agents, tasks, chat, billing) before any provider key exists: no
network, no key, price 0, and a deterministic reply that says what it is. The reply never holds a
tool call, so an agent's task loop ends after one round. It goes through the same path as every
model (policy, ledger reservation and commit at 0 USD, ``ModelCalled``, streaming); only the
provider call is replaced. Tokens are estimated at four characters each so usage is still recorded.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any, Final

__all__ = [
    "LABEL",
    "OFFLINE_MODEL",
    "estimate_prompt_tokens",
    "estimate_tokens",
    "is_offline",
    "offline_reply",
    "split_deltas",
]

OFFLINE_MODEL: Final = "legion/offline"
"""The ``model:`` of an alias the vault answers itself."""
LABEL: Final = "[offline model] "
"""Every reply's content starts with this."""
_MAX_ECHO = 1000
_CHUNKS = 4


def is_offline(model: str) -> bool:
    return model.strip().lower() == OFFLINE_MODEL


def estimate_tokens(text: str) -> int:
    """About four characters per token (no tokenizer: the model has none)."""
    return (len(text) + 3) // 4 if text else 0


def estimate_prompt_tokens(messages: Sequence[Mapping[str, Any]], tools: Sequence[Any] | None) -> int:
    text = json.dumps(list(messages), default=str, sort_keys=True)
    if tools:
        text += json.dumps(list(tools), default=str, sort_keys=True)
    return max(1, estimate_tokens(text))


def _text_of(content: Any) -> str:
    """The text of a message's content: a string, or the text parts of a list of content parts."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = [p.get("text", "") for p in content if isinstance(p, dict) and isinstance(p.get("text"), str)]
        return " ".join(p for p in parts if p)
    return ""


def _last_user_text(messages: Sequence[Mapping[str, Any]]) -> str:
    for message in reversed(messages):
        if message.get("role") == "user":
            return " ".join(_text_of(message.get("content")).split())
    return ""


def offline_reply(messages: Sequence[Mapping[str, Any]]) -> str:
    """The reply to a conversation: a pure function of its last user message."""
    said = _last_user_text(messages)
    if len(said) > _MAX_ECHO:
        said = said[: _MAX_ECHO - 1] + "…"
    echo = f"You said: {said}." if said else "You said nothing."
    return (
        f"{LABEL}I am Legion's built-in offline model; no provider key is configured, so I cannot think. "
        f"{echo} Configure a model in legion.yaml (see docs/operations.md) to get real answers."
    )


def split_deltas(text: str, parts: int = _CHUNKS) -> list[str]:
    """``text`` in about ``parts`` deltas cut at spaces (a stream of a few chunks); joined they are ``text``."""
    words = text.split(" ")
    size = max(1, -(-len(words) // parts))
    out = []
    for i in range(0, len(words), size):
        piece = " ".join(words[i : i + size])
        out.append(piece if i == 0 else " " + piece)
    return out
