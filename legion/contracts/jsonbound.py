"""JSON from outside, decoded with bounds: strict UTF-8, a size cap and a nesting cap.

msgspec stops at about 1,000 levels with a ``RecursionError`` (not a ``DecodeError``), which crashed
``legion tail`` on one deep event and ``legion publish`` on a deep file. Here every such input is a
:class:`~legion.contracts.errors.ContractError` that names what is wrong, and nesting is bounded
well below the interpreter's limit so nothing that reads a stored event can be made to recurse.
"""

from __future__ import annotations

from typing import Any, Final

import msgspec

from legion.contracts.errors import ContractError

__all__ = ["MAX_DEPTH", "depth_of", "loads"]

MAX_DEPTH: Final = 64
"""Deepest nesting of arrays and objects accepted in an event or a payload."""
_decoder = msgspec.json.Decoder()


def depth_of(value: Any, *, stop_at: int = MAX_DEPTH + 1) -> int:
    """How deeply ``value`` nests lists and dicts (iterative; stops counting at ``stop_at``)."""
    deepest = 0
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, level = stack.pop()
        if isinstance(item, dict | list):
            deepest = max(deepest, level)
            if deepest >= stop_at:
                return deepest
            children = item.values() if isinstance(item, dict) else item
            stack.extend((child, level + 1) for child in children)
    return deepest


def loads(data: bytes, *, what: str = "the payload", max_bytes: int | None = None, max_depth: int = MAX_DEPTH) -> Any:
    """Decode ``data`` as JSON, or raise ContractError saying why not (size, UTF-8, syntax, depth)."""
    if max_bytes is not None and len(data) > max_bytes:
        raise ContractError(f"{what} is {len(data)} bytes; at most {max_bytes} bytes are accepted")
    try:
        data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ContractError(f"{what} is not UTF-8: byte 0x{data[exc.start]:02x} at offset {exc.start}") from None
    try:
        value = _decoder.decode(data)
    except RecursionError:
        raise ContractError(f"{what} nests arrays or objects deeper than {max_depth} levels") from None
    except msgspec.DecodeError as exc:
        raise ContractError(f"{what} is not valid JSON: {exc}") from None
    if depth_of(value, stop_at=max_depth + 1) > max_depth:
        raise ContractError(f"{what} nests arrays or objects deeper than {max_depth} levels")
    return value
