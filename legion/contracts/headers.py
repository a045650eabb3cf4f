"""Header names. Every message carries TYPE and TRACE; publishers set MSG_ID for dedupe."""

from __future__ import annotations

from typing import Final

__all__ = ["EXPECTED_LAST_SEQUENCE", "MSG_ID", "PERIOD_KEY", "REQUEST_INFO", "ROLLUP", "SOURCE", "TRACE", "TYPE"]

TYPE: Final = "Legion-Type"
"""The contract tag of the body, e.g. ``task.assign.v1``."""
TRACE: Final = "Legion-Trace"
"""Trace id, propagated from cause to effect."""
SOURCE: Final = "Legion-Source"
"""The actor that published the message (informational; subjects carry the authoritative source)."""
MSG_ID: Final = "Nats-Msg-Id"
"""JetStream de-duplication id."""
REQUEST_INFO: Final = "Nats-Request-Info"
"""Stamped by the server on service-imported requests (the caller's account and user)."""
ROLLUP: Final = "Nats-Rollup"
EXPECTED_LAST_SEQUENCE: Final = "Nats-Expected-Last-Sequence"
"""Optimistic concurrency on a stream: stored only if the stream's last sequence is this one."""
PERIOD_KEY: Final = "Legion-Period-Key"
"""The budget period (``2026-11-21`` or ``2026-11``) a ledger alert is about."""
