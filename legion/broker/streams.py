"""Stream, KV and consumer specs: the JetStream layout of a fleet, declared once."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final, Literal

from legion.broker.permissions import agent_events_durable, agent_inbox_durable, bucket_name
from legion.contracts import subjects as subj
from legion.contracts.errors import ConfigError

__all__ = [
    "EVENTS",
    "INBOX",
    "INBOX_MAX_DEPTH",
    "LEDGER",
    "MAX_MSG_BYTES",
    "ConsumerSpec",
    "StreamSpec",
    "agent_events_consumer",
    "agent_inbox_consumer",
    "default_streams",
    "kv_stream_name",
]


MAX_MSG_BYTES: Final = 1024 * 1024
"""The largest message a Legion stream stores (and the embedded server's max_payload)."""


@dataclass(frozen=True, slots=True)
class StreamSpec:
    name: str
    subjects: tuple[str, ...]
    retention: Literal["limits", "workqueue", "interest"] = "limits"
    max_age_s: float = 0.0  # 0: keep forever
    max_bytes: int = -1
    max_msg_size: int = MAX_MSG_BYTES
    max_msgs_per_subject: int = -1  # with discard_new_per_subject: a cap that refuses the next message
    discard_new_per_subject: bool = False
    duplicate_window_s: float = 120.0
    allow_direct: bool = True
    description: str = ""


@dataclass(frozen=True, slots=True)
class ConsumerSpec:
    """A durable pull consumer. ``filter_subjects`` (nats-server 2.10+), when given, replaces
    ``filter_subject``; the filters must not overlap (the server refuses overlapping ones)."""

    stream: str
    durable: str
    filter_subject: str
    ack_wait_s: float = 30.0
    max_deliver: int = 20  # a backstop: consumers terminate poison messages themselves well before
    max_ack_pending: int = 1000
    deliver_policy: Literal["all", "new"] = "all"
    description: str = ""
    filter_subjects: tuple[str, ...] = ()

    def filters(self) -> tuple[str, ...]:
        """Every filter of this consumer, whichever field holds them."""
        return self.filter_subjects or ((self.filter_subject,) if self.filter_subject else ())


EVENTS: Final = "EVENTS"
INBOX: Final = "INBOX"
LEDGER: Final = "LEDGER"


INBOX_MAX_DEPTH: Final = 10_000
"""Messages waiting in one agent's inbox (its subject) before the next one is refused."""


def default_streams(*, events_max_age_s: float = 0.0, inbox_max_depth: int = INBOX_MAX_DEPTH) -> tuple[StreamSpec, ...]:
    """EVENTS, INBOX and LEDGER. Each agent's inbox is one subject of INBOX, so ``inbox_max_depth``
    caps every agent's queue on its own: past it, publishing to that agent is refused (the sender gets
    a typed error) while other agents' inboxes take work as before."""
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
            max_msgs_per_subject=inbox_max_depth,
            discard_new_per_subject=True,
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


def agent_events_consumer(agent: str, filters: tuple[str, ...], *, ack_wait_s: float = 30.0) -> ConsumerSpec:
    """The durable ``<agent>_events`` on EVENTS, delivering what legion.yaml's ``subscribe`` lists.

    It starts with the events published after it was created (deliver policy "new"): an agent added
    later does not receive the whole history. Filters that another filter covers are dropped;
    filters that overlap only in part are refused, since the server refuses them too.
    """
    kept = _without_covered(filters)
    return ConsumerSpec(
        stream=EVENTS,
        durable=agent_events_durable(agent),
        filter_subject="",
        filter_subjects=kept,
        ack_wait_s=ack_wait_s,
        deliver_policy="new",
        description=f"events for agent {agent}",
    )


def _without_covered(filters: tuple[str, ...]) -> tuple[str, ...]:
    unique = tuple(dict.fromkeys(filters))
    kept = tuple(f for f in unique if not any(o != f and _covers(o, f) for o in unique))
    for i, a in enumerate(kept):
        for b in kept[i + 1 :]:
            if _overlap(a, b):
                raise ConfigError(
                    f"subscribe filters {a!r} and {b!r} overlap, which JetStream refuses in one consumer; "
                    "replace them with one filter that covers both, or with filters that do not overlap"
                )
    return kept


def _covers(wide: str, narrow: str) -> bool:
    """Every subject that ``narrow`` matches also matches ``wide`` (NATS token terms)."""
    w, n = wide.split("."), narrow.split(".")
    for i, part in enumerate(w):
        if part == ">":
            return len(n) > i
        if i >= len(n) or n[i] == ">":
            return False
        if part not in ("*", n[i]):
            return False
    return len(w) == len(n)


def _overlap(a: str, b: str) -> bool:
    """Some subject matches both ``a`` and ``b``."""
    x, y = a.split("."), b.split(".")
    for i in range(max(len(x), len(y))):
        s = x[i] if i < len(x) else None
        t = y[i] if i < len(y) else None
        if ">" in (s, t):
            return s is not None and t is not None
        if s is None or t is None:
            return False
        if s != t and "*" not in (s, t):
            return False
    return True
