"""How ledger events sit on the LEDGER stream: subjects, message ids, headers, and decoding.

Subjects are ``legion.ledger.<agent>.<op>`` with op ``reserve``, ``commit``, ``release``, ``usage``
or ``alert`` (a BudgetExceeded that was raised, so a rebuilt projection does not raise it again).
Message ids: a Commit uses the reservation id itself (the vault publishes Commits straight into
the stream with that id when the ledger is down, and the two must de-duplicate); the others add
a suffix so they never collide with it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import Final

import msgspec

from legion.contracts import headers as h
from legion.contracts import subjects as subj
from legion.contracts.codec import peek_tag
from legion.contracts.ledger import BudgetExceeded, Commit, Release, Reserve, UsageRecorded

__all__ = [
    "EXPECTED_LAST_SEQUENCE",
    "OP_ALERT",
    "OP_COMMIT",
    "OP_RELEASE",
    "OP_RESERVE",
    "PERIOD_KEY",
    "Entry",
    "LedgerEvent",
    "StreamRecord",
    "alert_msg_id",
    "entry_of",
    "ledger_subject",
    "release_msg_id",
    "reserve_msg_id",
]

# header names live in legion.contracts.headers (STYLE.md 9); re-exported for this package
EXPECTED_LAST_SEQUENCE: Final = h.EXPECTED_LAST_SEQUENCE
PERIOD_KEY: Final = h.PERIOD_KEY

OP_RESERVE: Final = "reserve"
OP_COMMIT: Final = "commit"
OP_RELEASE: Final = "release"
OP_ALERT: Final = "alert"

LedgerEvent = Reserve | Commit | Release | UsageRecorded | BudgetExceeded
_EVENT_TYPES = (Reserve, Commit, Release, UsageRecorded, BudgetExceeded)


@dataclass(frozen=True, slots=True)
class StreamRecord:
    """One stored message as read from the stream, before decoding."""

    seq: int
    ts_ns: int
    subject: str
    headers: Mapping[str, str] | None
    data: bytes


@dataclass(frozen=True, slots=True)
class Entry:
    """A decoded stream message: the fold's only input. ``event`` is None for skipped messages."""

    seq: int
    ts_ns: int
    event: LedgerEvent | None
    subject_agent: str = ""
    period_key: str = ""
    skipped: str = ""


_DECODERS: Final[dict[str, msgspec.json.Decoder[LedgerEvent]]] = {
    cls.contract_tag(): msgspec.json.Decoder(cls) for cls in _EVENT_TYPES
}


@lru_cache(maxsize=4096)
def _agent_of(subject: str) -> str | None:
    parts = subj.LEDGER.parse(subject)
    return None if parts is None else parts["agent"]


def entry_of(record: StreamRecord) -> Entry:
    """Decode leniently: unknown tags, bad bodies and foreign subjects become skipped entries.

    Decodes like :func:`legion.contracts.codec.decode` for the five ledger contracts, with decoders
    looked up here by tag (the codec's registry lookup cost more than the whole fold).
    """
    agent = _agent_of(record.subject)
    if agent is None:
        return Entry(seq=record.seq, ts_ns=record.ts_ns, event=None, skipped=f"subject {record.subject!r}")
    tag = peek_tag(record.data, record.headers)
    decoder = _DECODERS.get(tag)
    if decoder is None:
        return Entry(seq=record.seq, ts_ns=record.ts_ns, event=None, skipped=f"tag {tag!r}")
    try:
        message = decoder.decode(record.data)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        return Entry(seq=record.seq, ts_ns=record.ts_ns, event=None, skipped=f"invalid {tag!r} message: {exc}")
    period_key = (record.headers or {}).get(PERIOD_KEY, "")
    return Entry(seq=record.seq, ts_ns=record.ts_ns, event=message, subject_agent=agent, period_key=period_key)


def ledger_subject(agent: str, op: str) -> str:
    return subj.LEDGER.render(agent=agent, op=op)


def reserve_msg_id(reservation_id: str) -> str:
    return f"{reservation_id}:reserve"


def release_msg_id(reservation_id: str, reserved_seq: int) -> str:
    """Unique per reservation (its Reserve's sequence), so a reused id cannot be de-duplicated away."""
    return f"{reservation_id}:release:{reserved_seq}"


def alert_msg_id(scope: str, name: str, period: str, key: str, level: str) -> str:
    return f"budget:{scope}:{name}:{period}:{key}:{level}"
