"""Events from external systems (``legion.ext.<source>.<type>``) and their rejection record."""

from __future__ import annotations

from typing import Any

import msgspec

from legion.contracts.base import Event

__all__ = ["ExternalEvent", "IngestRejected"]


class ExternalEvent(Event, frozen=True, kw_only=True, tag="external.event.v1"):
    """A generic event published by an external system with an ingest credential."""

    kind: str
    data: dict[str, Any] = msgspec.field(default_factory=dict)
    id: str = ""
    occurred_at: str = ""


class IngestRejected(Event, frozen=True, kw_only=True, tag="ingest.rejected.v1"):
    """An external message failed validation where it was consumed; it was kept, not processed."""

    subject: str
    sequence: int = 0
    reason: str
    message_type: str = ""
