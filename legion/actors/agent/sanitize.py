"""Strip invisible Unicode before text reaches the model: Unicode tag characters (U+E0000-U+E007F,
which can spell out hidden instructions), zero-width characters, bidi embeddings, overrides and
isolates, variation selectors, and other default-ignorable format characters. Ordinary text,
emoji and right-to-left scripts are kept; newlines and tabs are kept.
"""

from __future__ import annotations

import re
from typing import Any, Final

__all__ = ["INVISIBLE", "strip_invisible", "strip_invisible_deep"]

INVISIBLE: Final = re.compile(
    "["
    "\u00ad"  # soft hyphen
    "\u034f"  # combining grapheme joiner
    "\u061c"  # Arabic letter mark
    "\u115f\u1160\u3164\uffa0"  # Hangul fillers
    "\u17b4\u17b5"  # Khmer inherent vowels
    "\u180b-\u180f"  # Mongolian variation selectors and vowel separator
    "\u200b-\u200f"  # zero-width space, (non-)joiner, LRM, RLM
    "\u202a-\u202e"  # bidi embeddings and overrides
    "\u2060-\u206f"  # word joiner, invisible operators, bidi isolates, deprecated format chars
    "\ufe00-\ufe0f"  # variation selectors
    "\ufeff"  # zero-width no-break space (BOM)
    "\ufff0-\ufff8"  # unassigned specials
    "\U0001d173-\U0001d17a"  # musical format characters
    "\U000e0000-\U000e007f"  # tag characters
    "\U000e0100-\U000e01ef"  # variation selectors supplement
    "]"
)


def strip_invisible(text: str) -> str:
    """``text`` without invisible format characters (see the module docstring)."""
    return INVISIBLE.sub("", text)


def strip_invisible_deep(value: Any) -> Any:
    """Strip every string inside ``value`` (dicts, lists and tuples are rebuilt; keys too)."""
    if isinstance(value, str):
        return strip_invisible(value)
    if isinstance(value, dict):
        return {strip_invisible_deep(k): strip_invisible_deep(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [strip_invisible_deep(v) for v in value]
    return value
