"""Who is calling: the agent token of the subject, cross-checked with the server's ``Nats-Request-Info``.

AGENTS reaches ``legion.vault.>`` only through a service import with ``share: true``, so the server
stamps every imported request with a JSON ``Nats-Request-Info`` header describing the requester and
overwrites any copy the client sent. Verified against nats-server 2.15.1 (tests/actors/vault/test_vault_caller.py);
the fields are::

    start, host, id, acc, user, name, lang, ver, rtt, server, jwt, issuer_key, name_tag, tags, kind, client_type

``acc`` is the requester's account public key (AGENTS), ``user`` its user public key, ``name_tag``
the ``name`` claim of its user JWT (the agent name the launcher minted), ``tags`` the JWT's tags.
``name`` is the *connection* name, which the client chooses: it is never trusted here.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import msgspec

from legion.contracts import headers as h
from legion.contracts import subjects as subj
from legion.contracts.errors import Refused

__all__ = ["Caller", "CallerDenied", "RequestInfo", "identify_caller"]


class RequestInfo(msgspec.Struct, frozen=True, kw_only=True):
    """The fields of ``Nats-Request-Info`` the vault relies on (others are ignored)."""

    acc: str = ""
    user: str = ""
    name_tag: str = ""
    tags: list[str] = msgspec.field(default_factory=list)
    kind: str = ""


_info = msgspec.json.Decoder(RequestInfo)


@dataclass(frozen=True, slots=True)
class Caller:
    agent: str
    account: str
    user: str


class CallerDenied(Refused):
    """The request cannot be attributed to the agent whose subject it arrived on."""

    def __init__(self, reason: str, *, agent: str = "", claimed: str = "") -> None:
        super().__init__(reason)
        self.reason = reason
        self.agent = agent
        self.claimed = claimed


def identify_caller(
    subject: str,
    headers: Mapping[str, str],
    *,
    agents_account: str | None,
    template: subj.SubjectTemplate = subj.VAULT_LLM,
) -> Caller:
    """The calling agent, or :class:`CallerDenied` saying why the request is not attributable.

    ``agents_account`` pins the AGENTS account public key; None accepts any account that reached the
    vault through a share import (in the fleet layout only AGENTS does). ``template`` is the subject
    served (``VAULT_LLM``, or ``VAULT_HTTP`` for the HTTP proxy); its ``agent`` token is the caller.
    """
    parsed = template.parse(subject)
    if parsed is None:
        raise CallerDenied(f"{subject!r} does not match {template.pattern!r}")
    agent = parsed["agent"]
    raw = headers.get(h.REQUEST_INFO)
    if not raw:
        raise CallerDenied(
            f"no {h.REQUEST_INFO} header: the request did not come through the AGENTS service import",
            agent=agent,
        )
    try:
        info = _info.decode(raw)
    except (msgspec.DecodeError, msgspec.ValidationError):
        raise CallerDenied(f"unreadable {h.REQUEST_INFO} header", agent=agent) from None
    if not info.acc or (agents_account is not None and info.acc != agents_account):
        raise CallerDenied(f"caller account {info.acc!r} is not the AGENTS account", agent=agent, claimed=info.name_tag)
    if info.name_tag != agent:
        raise CallerDenied(
            f"caller {info.name_tag!r} asked on the subject of agent {agent!r}", agent=agent, claimed=info.name_tag
        )
    return Caller(agent=agent, account=info.acc, user=info.user)
