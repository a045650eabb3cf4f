"""Read what a stream stored, for assertions (every message, or those after a sequence)."""

from __future__ import annotations

from nats.aio.msg import Msg

from legion.broker import Broker
from legion.broker.reader import ReadSpec, read_all

__all__ = ["read_stream"]


async def read_stream(admin: Broker, stream: str, filter_subject: str = "", *, after_seq: int = 0) -> list[Msg]:
    """Every message of ``stream`` stored after ``after_seq`` (matching ``filter_subject``), read with
    the one stream reader by a credential allowed to create a consumer (the admin). Bounded: it stops
    at the end of the stream."""
    filters = (filter_subject,) if filter_subject else ()
    return await read_all(admin, ReadSpec(stream=stream, filters=filters, from_seq=after_seq + 1))
