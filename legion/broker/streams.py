"""Stream, KV and consumer specs: the JetStream layout of a fleet, declared once."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final, Literal

from legion.broker.permissions import agent_inbox_durable, bucket_name
from legion.contracts import subjects as subj

__all__ = [
    "EVENTS",
    "INBOX",
    "LEDGER",
    "ConsumerSpec",
    "StreamSpec",
    "agent_inbox_consumer",
    "default_streams",
    "kv_stream_name",
]


@dataclass(frozen=True, slots=True)
class StreamSpec:
    name: str
    subjects: tuple[str, ...]
    retention: Literal["limits", "workqueue", "interest"] = "limits"
    max_age_s: float = 0.0  # 0: keep forever
    max_bytes: int = -1
    max_msg_size: int = 1024 * 1024
    duplicate_window_s: float = 120.0
    allow_direct: bool = True
    description: str = ""


@dataclass(frozen=True, slots=True)
class ConsumerSpec:
    stream: str
    durable: str
    filter_subject: str
    ack_wait_s: float = 30.0
    max_deliver: int = 20  # a backstop: consumers terminate poison messages themselves well before
    max_ack_pending: int = 1000
    deliver_policy: Literal["all", "new"] = "all"
    description: str = ""


EVENTS: Final = "EVENTS"
INBOX: Final = "INBOX"
LEDGER: Final = "LEDGER"


def default_streams(*, events_max_age_s: float = 0.0) -> tuple[StreamSpec, ...]:
    return (
        StreamSpec(
            name=EVENTS,
            subjects=(subj.EVENTS_ALL, subj.EXT_ALL),
            max_age_s=events_max_age_s,
            description="Everything that happened: actor events and events from external systems",
        ),
        StreamSpec(
            name=INBOX,
            subjects=(subj.INBOX_ALL,),
            retention="workqueue",
            description="Work for agents: tasks, chat turns, steer and cancel commands",
        ),
        StreamSpec(
            name=LEDGER,
            subjects=(subj.LEDGER_ALL,),
            description="Budget reservations and usage: the ledger's source of truth",
        ),
    )


def agent_inbox_consumer(agent: str, *, ack_wait_s: float = 30.0) -> ConsumerSpec:
    return ConsumerSpec(
        stream=INBOX,
        ack_wait_s=ack_wait_s,
        durable=agent_inbox_durable(agent),
        filter_subject=subj.AGENT_INBOX.render(agent=agent),
        description=f"inbox of agent {agent}",
    )


def kv_stream_name(project: str) -> str:
    return f"KV_{bucket_name(project)}"
