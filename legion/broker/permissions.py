"""The permission compiler: who may publish and subscribe to what, in NATS subject terms.

Patterns are NATS patterns (``*`` is exactly one token, ``>`` the rest), never globs. The agent
set is DESIGN.md section 3's minimal set without its ``CONSUMER.CREATE``, ``CONSUMER.INFO`` and
``$JS.FC`` rights on buckets: agents create no consumers (docs/security.md, "Agents create no
consumers"). Note that an empty allow list restricts nothing in NATS, so "nothing" is always
written as ``deny: [">"]``.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Final

from legion.contracts import subjects as subj
from legion.contracts.names import validate_token

__all__ = [
    "JS_LOCAL_PREFIX",
    "LEGION_INBOX_PREFIX",
    "Permissions",
    "admin_permissions",
    "agent_events_durable",
    "agent_inbox_durable",
    "agent_inbox_prefix",
    "agent_permissions",
    "agent_state_bucket",
    "bucket_name",
    "ingest_inbox_prefix",
    "ingest_permissions",
    "service_permissions",
]

JS_LOCAL_PREFIX = "JSL.API"
"""Where AGENTS reaches LEGION's JetStream API (every account without JetStream answers $JS.API itself)."""
LEGION_INBOX_PREFIX = "_LEGION_INBOX"
"""Inbox prefix of LEGION-account users, so their replies never flow into AGENTS via the _INBOX export."""


def bucket_name(project: str) -> str:
    """The KV bucket of a blackboard namespace: one bucket per project (a shared bucket leaks)."""
    return f"bb_{validate_token(project, kind='project name')}"


def agent_state_bucket(agent: str) -> str:
    """The agent's private KV bucket (session records, so a restarted agent resumes; DESIGN.md section 5)."""
    return f"ag_{validate_token(agent, kind='agent name')}"


def agent_inbox_durable(agent: str) -> str:
    return f"{validate_token(agent, kind='agent name')}_inbox"


def agent_events_durable(agent: str) -> str:
    """The durable on EVENTS that delivers the events an agent subscribes to (legion.yaml ``subscribe``)."""
    return f"{validate_token(agent, kind='agent name')}_events"


def agent_inbox_prefix(agent: str) -> str:
    return f"_INBOX.{validate_token(agent, kind='agent name')}"


def ingest_inbox_prefix(source: str) -> str:
    return f"_INBOX.{validate_token(source, kind='source name')}"


@dataclass(frozen=True, slots=True)
class Permissions:
    """Publish/subscribe allow and deny lists, plus whether replies to requesters are allowed."""

    pub_allow: tuple[str, ...] = ()
    pub_deny: tuple[str, ...] = ()
    sub_allow: tuple[str, ...] = ()
    sub_deny: tuple[str, ...] = ()
    allow_responses: bool = False
    tags: tuple[str, ...] = field(default=())
    max_subs: int = -1  # subscriptions one connection may hold (-1: no limit)
    max_payload: int = -1  # bytes per message this user may publish (-1: the server's max_payload)

    def to_jwt(self) -> dict[str, Any]:
        """The ``pub``/``sub``/``resp`` part of a user JWT's ``nats`` claims."""
        out: dict[str, Any] = {
            "pub": _block(self.pub_allow, self.pub_deny),
            "sub": _block(self.sub_allow, self.sub_deny),
        }
        if self.allow_responses:
            out["resp"] = {"max": 1, "ttl": 0}
        return out


def _block(allow: Iterable[str], deny: Iterable[str]) -> dict[str, list[str]]:
    block: dict[str, list[str]] = {}
    allow = list(allow)
    deny = list(deny)
    if allow:
        block["allow"] = allow
    if deny:
        block["deny"] = deny
    if not allow and not deny:
        block["deny"] = [">"]  # an empty allow list would allow everything
    return block


def agent_permissions(
    agent: str,
    *,
    projects: Iterable[str] = (),
    can_message: Iterable[str] = (),
    subscribes: bool = False,
) -> Permissions:
    """The minimal set for one agent: its vault and scheduler calls, its own events, its inbox, its
    private state bucket and its projects' buckets.

    On a bucket an agent may put (``$KV``), direct-get and read stream info, nothing more: no
    consumer create or info and no flow control. A consumer it created could deliver to any
    subject (the server does not check a push consumer's ``deliver_subject`` against anything).


    ``can_message``: agents whose inbox it may send work to (through the INBOX service import).
    ``subscribes``: it may fetch from and ack its own events durable ``<agent>_events``, which the
    launcher creates with the filters of legion.yaml's ``subscribe``.
    """
    durable = agent_inbox_durable(agent)
    js = JS_LOCAL_PREFIX
    pub = [
        subj.VAULT_LLM.wildcard(agent=agent).rsplit(".", 1)[0] + ".>",  # legion.vault.<agent>.>
        subj.SCHEDULER.wildcard(agent=agent).rsplit(".", 1)[0] + ".>",  # legion.scheduler.<agent>.>
        subj.EVENTS.wildcard(source=agent),
        f"{js}.CONSUMER.MSG.NEXT.INBOX.{durable}",
        f"{js}.CONSUMER.INFO.INBOX.{durable}",
        f"$JS.ACK.INBOX.{durable}.>",
    ]
    for other in sorted(set(can_message)):
        pub.append(subj.AGENT_INBOX.render(agent=other))
    if subscribes:
        events = agent_events_durable(agent)
        pub += [
            f"{js}.CONSUMER.MSG.NEXT.EVENTS.{events}",
            f"{js}.CONSUMER.INFO.EVENTS.{events}",
            f"$JS.ACK.EVENTS.{events}.>",
        ]
    buckets = [agent_state_bucket(agent), *(bucket_name(p) for p in sorted(set(projects)))]
    for b in buckets:
        pub += [
            f"$KV.{b}.>",
            f"{js}.DIRECT.GET.KV_{b}",
            f"{js}.DIRECT.GET.KV_{b}.>",
            f"{js}.STREAM.INFO.KV_{b}",
        ]
    return Permissions(
        pub_allow=tuple(pub),
        sub_allow=(f"{agent_inbox_prefix(agent)}.>",),
        tags=(f"legion-inbox:{agent_inbox_prefix(agent)}", f"legion-js:{js}", "legion-kind:agent"),
        max_subs=AGENT_MAX_SUBS,
        max_payload=MAX_USER_PAYLOAD,
    )


AGENT_MAX_SUBS: Final = 64
"""Subscriptions one agent (or ingest) connection may hold: it needs a handful (its request inbox,
its consumers' deliveries); a bound keeps one compromised agent from loading the server with them."""
MAX_USER_PAYLOAD: Final = 1024 * 1024
"""Bytes per message an agent or ingest credential may publish (the streams' message size)."""


def ingest_permissions(source: str) -> Permissions:
    """An external system: publish its own ``legion.ext.<source>.>`` and read its PubAcks."""
    return Permissions(
        pub_allow=(subj.EXT.wildcard(source=source),),
        sub_allow=(f"{ingest_inbox_prefix(source)}.>",),
        tags=(f"legion-inbox:{ingest_inbox_prefix(source)}", "legion-kind:ingest"),
        max_subs=AGENT_MAX_SUBS,
        max_payload=MAX_USER_PAYLOAD,
    )


def admin_permissions() -> Permissions:
    """The launcher and CLI: everything in LEGION, with a private inbox prefix."""
    return Permissions(
        pub_allow=(">",),
        sub_allow=(">",),
        tags=(f"legion-inbox:{LEGION_INBOX_PREFIX}", "legion-kind:admin"),
    )


def service_permissions(
    actor: str,
    *,
    serves: Iterable[str] = (),
    publishes: Iterable[str] = (),
    jetstream: Iterable[str] | None = None,
) -> Permissions:
    """A trusted LEGION actor (vault, ledger, scheduler, gateway): its own events, what it serves,
    and the JetStream API it uses.

    ``serves`` are the subjects it subscribes to (requests); replies go through allow_responses.
    ``jetstream`` lists the API subjects it may call (``$JS.API.<...>``, ``$JS.FC.<...>``); None keeps
    the whole API (``$JS.API.>``, ``$JS.ACK.>``, ``$JS.FC.>``) for kinds that have not narrowed theirs.
    Appending to a stream needs no API right: the PubAck comes back on the actor's own inbox.
    """
    inbox = f"{LEGION_INBOX_PREFIX}.{validate_token(actor, kind='actor name')}"
    api = ("$JS.API.>", "$JS.ACK.>", "$JS.FC.>") if jetstream is None else tuple(jetstream)
    return Permissions(
        pub_allow=(
            subj.EVENTS.wildcard(source=actor),
            subj.HEALTH.render(actor=actor),
            *api,
            *publishes,
        ),
        sub_allow=(f"{inbox}.>", subj.CONTROL.wildcard(actor=actor), *serves),
        allow_responses=True,
        tags=(f"legion-inbox:{inbox}", "legion-kind:service"),
    )
