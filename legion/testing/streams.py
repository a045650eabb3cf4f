"""Read what a stream stored, for assertions (every message, or those after a sequence)."""

from __future__ import annotations

import contextlib

from nats.aio.msg import Msg
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

from legion.broker import Broker

__all__ = ["read_stream"]


async def read_stream(admin: Broker, stream: str, filter_subject: str = "", *, after_seq: int = 0) -> list[Msg]:
    """Every message of ``stream`` stored after ``after_seq`` (matching ``filter_subject``), read with an
    ephemeral consumer by a credential allowed to create one (the admin). Bounded: it stops when the
    consumer reports nothing pending."""
    config = ConsumerConfig(
        ack_policy=AckPolicy.NONE,
        deliver_policy=DeliverPolicy.BY_START_SEQUENCE if after_seq else DeliverPolicy.ALL,
        opt_start_seq=after_seq + 1 if after_seq else None,
        inactive_threshold=30.0,
    )
    sub = await admin.js.pull_subscribe(filter_subject, stream=stream, config=config)
    out: list[Msg] = []
    try:
        while True:
            info = await sub.consumer_info()
            if not info.num_pending:
                return out
            out.extend(await sub.fetch(min(info.num_pending, 256), timeout=5))
    finally:
        with contextlib.suppress(Exception):
            await sub.unsubscribe()
