"""Encode and decode contracts by the ``Legion-Type`` header.

Production decoding is lenient: an unknown tag becomes :class:`UnknownEvent` and is kept. Tests
decode strictly, so an unknown tag or a body that does not match its contract raises.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypeVar, overload

import msgspec

from legion.contracts import headers as h
from legion.contracts.base import Message, UnknownEvent, contract_for
from legion.contracts.errors import ContractError

__all__ = ["Codec", "decode", "encode", "peek_tag"]

M = TypeVar("M", bound=Message)

_encoder = msgspec.json.Encoder(decimal_format="string")
_decoders: dict[type[Message], msgspec.json.Decoder[Any]] = {}


def _decoder(cls: type[Message]) -> msgspec.json.Decoder[Any]:
    dec = _decoders.get(cls)
    if dec is None:
        dec = _decoders[cls] = msgspec.json.Decoder(cls)
    return dec


class _Peek(msgspec.Struct):
    type: str = ""


_peek = msgspec.json.Decoder(_Peek)


def peek_tag(data: bytes, headers: Mapping[str, str] | None) -> str:
    """The contract tag of a message: the header, else the body's ``type`` field, else ''."""
    if headers:
        tag = headers.get(h.TYPE)
        if tag:
            return tag
    try:
        return _peek.decode(data).type
    except (msgspec.DecodeError, msgspec.ValidationError):
        return ""


def encode(msg: Message) -> tuple[bytes, dict[str, str]]:
    """JSON body and the ``Legion-Type`` header of ``msg``."""
    return _encoder.encode(msg), {h.TYPE: msg.contract_tag()}


@overload
def decode(data: bytes, headers: Mapping[str, str] | None, *, strict: bool = ..., type: type[M]) -> M: ...
@overload
def decode(
    data: bytes, headers: Mapping[str, str] | None, *, strict: bool = ..., type: None = ...
) -> Message | UnknownEvent: ...


def decode(
    data: bytes,
    headers: Mapping[str, str] | None,
    *,
    strict: bool = False,
    type: type[Message] | None = None,
) -> Message | UnknownEvent:
    """Decode by tag. With ``type``, the message must be exactly that contract.

    Lenient (default): an unknown tag yields :class:`UnknownEvent`. Strict: it raises
    :class:`ContractError`. A known tag with an invalid body always raises ContractError (the
    consumer decides whether that is poison), naming the tag and the field.
    """
    tag = peek_tag(data, headers)
    cls = contract_for(tag) if tag else None
    if type is not None:
        if cls is not type:
            raise ContractError(f"expected a {type.contract_tag()!r} message, got {tag or 'no Legion-Type'!r}", tag=tag)
    elif cls is None:
        if strict:
            raise ContractError(f"unknown contract tag {tag!r}; is the sender newer than this build?", tag=tag)
        return UnknownEvent(tag=tag, data=bytes(data), headers=dict(headers or {}))
    try:
        msg: Message = _decoder(cls).decode(data)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise ContractError(f"invalid {tag!r} message: {exc}", tag=tag) from exc
    return msg


class Codec:
    """A codec with a fixed mode: ``Codec(strict=True)`` in tests, lenient in production."""

    __slots__ = ("strict",)

    def __init__(self, *, strict: bool = False) -> None:
        self.strict = strict

    def encode(self, msg: Message) -> tuple[bytes, dict[str, str]]:
        return encode(msg)

    def decode(self, data: bytes, headers: Mapping[str, str] | None) -> Message | UnknownEvent:
        return decode(data, headers, strict=self.strict)
