"""The account layout of DESIGN.md section 3, as signed JWTs, and user credential minting.

- LEGION holds JetStream and the trusted actors; it exports to AGENTS and INGEST only what they need.
- AGENTS holds one user per agent and reaches LEGION only through service imports, whose replies
  the server rewrites to private ``_R_.`` subjects: that closes reply-subject injection.
- INGEST holds external publishers; it imports only ``legion.ext.>``.
- SYSTEM is the server's system account; no user of it is ever minted.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from legion.broker.jwt import KeyPair, encode_jwt, format_creds, new_keypair
from legion.broker.keys import FleetKeys
from legion.broker.permissions import JS_LOCAL_PREFIX, Permissions
from legion.contracts import subjects as subj

__all__ = ["AccountLayout", "MintedUser", "mint_user"]

_UNLIMITED = {
    "subs": -1,
    "data": -1,
    "payload": -1,
    "imports": -1,
    "exports": -1,
    "wildcards": True,
    "conn": -1,
    "leaf": -1,
}
_JETSTREAM = {"mem_storage": -1, "disk_storage": -1, "streams": -1, "consumer": -1}

# JetStream API subjects LEGION exports to AGENTS (imported there under JSL.API). Never stream
# create/delete/purge, consumer create/delete, list/names or MSG.GET. No CONSUMER.CREATE: the server
# does not restrict a push consumer's deliver_subject, so an agent that may create a consumer, even
# on its own bucket, can have its values (with forged headers) delivered to any LEGION subscriber,
# e.g. legion.svc.ledger.release. The launcher creates every consumer; agents use direct gets.
_JS_EXPORTS: tuple[tuple[str, str], ...] = (
    ("$JS.API.DIRECT.GET.>", "Stream"),  # batch direct gets answer with several messages
    ("$JS.API.STREAM.INFO.>", "Singleton"),
    ("$JS.API.CONSUMER.INFO.>", "Singleton"),  # the agent's own inbox durable only (user permissions)
    ("$JS.API.CONSUMER.MSG.NEXT.>", "Stream"),
)
_PLAIN_SERVICE_EXPORTS: tuple[tuple[str, str], ...] = (
    (subj.VAULT_ALL, "Singleton"),
    (subj.SCHEDULER_ALL, "Singleton"),
    (subj.EVENTS_ALL, "Singleton"),
    # agents' inboxes (legion.yaml can_message): a js publish lands in INBOX and its PubAck comes back
    # through the import. Which inboxes an agent may publish is its user permissions. No share: JetStream
    # strips Nats-Request-Info before storing, so the receiver could not read the sender from it anyway.
    (subj.INBOX_ALL, "Singleton"),
    ("$KV.>", "Singleton"),
    ("$JS.ACK.>", "Singleton"),
    # no $JS.FC.>: flow control is for push consumers, and agents have none
)


def _service_export(subject: str, response_type: str) -> dict[str, Any]:
    return {"name": subject, "subject": subject, "type": "service", "response_type": response_type}


@dataclass(slots=True)
class AccountLayout:
    """Builds the operator and account JWTs the server preloads. Revocations are per account."""

    keys: FleetKeys
    revocations: dict[str, dict[str, int]] = field(default_factory=dict)
    _operator_jwt: str | None = None

    def operator_jwt(self) -> str:
        """Signed once per layout: the server refuses a reload whose operator JWT changed."""
        if self._operator_jwt is None:
            self._operator_jwt = self._sign_operator()
        return self._operator_jwt

    def _sign_operator(self) -> str:
        op = self.keys.operator
        return encode_jwt(
            issuer=op,
            subject=op.public_key,
            name="legion",
            nats={"type": "operator", "system_account": self.keys.system.public_key},
        )

    def account_jwts(self) -> dict[str, str]:
        """Public key -> signed account JWT, for ``resolver_preload``."""
        k = self.keys
        legion_pub = k.legion.public_key
        exports = [_service_export(s, rt) for s, rt in (*_PLAIN_SERVICE_EXPORTS, *_JS_EXPORTS)]
        exports.append(_service_export(subj.EXT_ALL, "Singleton"))
        exports.append({"name": "inboxes", "subject": "_INBOX.>", "type": "stream"})

        agent_imports: list[dict[str, Any]] = []
        for subject, _rt in _PLAIN_SERVICE_EXPORTS:
            imp: dict[str, Any] = {"name": subject, "subject": subject, "account": legion_pub, "type": "service"}
            if subject in (subj.VAULT_ALL, subj.SCHEDULER_ALL):
                imp["share"] = True  # the server stamps Nats-Request-Info: the vault sees the real caller
            agent_imports.append(imp)
        for subject, _rt in _JS_EXPORTS:
            local = JS_LOCAL_PREFIX + subject.removeprefix("$JS.API")
            agent_imports.append(
                {"name": subject, "subject": subject, "local_subject": local, "account": legion_pub, "type": "service"}
            )
        agent_imports.append({"name": "inboxes", "subject": "_INBOX.>", "account": legion_pub, "type": "stream"})

        ingest_imports = [
            {"name": "ext", "subject": subj.EXT_ALL, "account": legion_pub, "type": "service", "share": True}
        ]
        return {
            k.system.public_key: self._account(k.system, "SYS", limits=_UNLIMITED, exports=[]),
            legion_pub: self._account(k.legion, "LEGION", limits={**_UNLIMITED, **_JETSTREAM}, exports=exports),
            k.agents.public_key: self._account(k.agents, "AGENTS", limits=_UNLIMITED, imports=agent_imports),
            k.ingest.public_key: self._account(k.ingest, "INGEST", limits=_UNLIMITED, imports=ingest_imports),
        }

    def revoke(self, account: KeyPair, user_public_key: str, *, at: int | None = None) -> None:
        """Revoke every JWT of ``user_public_key`` issued before ``at`` (now). Takes effect on reload."""
        self.revocations.setdefault(account.public_key, {})[user_public_key] = at or int(time.time()) + 1

    def _account(
        self,
        acc: KeyPair,
        name: str,
        *,
        limits: Mapping[str, Any],
        exports: list[dict[str, Any]] | None = None,
        imports: list[dict[str, Any]] | None = None,
    ) -> str:
        nats: dict[str, Any] = {"type": "account", "limits": dict(limits)}
        if exports:
            nats["exports"] = exports
        if imports:
            nats["imports"] = imports
        revoked = self.revocations.get(acc.public_key)
        if revoked:
            nats["revocations"] = dict(revoked)
        return encode_jwt(issuer=self.keys.operator, subject=acc.public_key, name=name, nats=nats)


@dataclass(frozen=True, slots=True)
class MintedUser:
    name: str
    public_key: str
    jwt: str
    creds: str = field(repr=False)
    expires_at: int | None


def mint_user(
    account: KeyPair, name: str, permissions: Permissions, *, expires_in: float | None = 3600.0
) -> MintedUser:
    """A fresh user key and JWT signed by ``account``; no server change is needed."""
    user = new_keypair("user")
    nats: dict[str, Any] = {
        "type": "user",
        "subs": permissions.max_subs,
        "data": -1,
        "payload": permissions.max_payload,
        **permissions.to_jwt(),
    }
    if permissions.tags:
        nats["tags"] = list(permissions.tags)
    token = encode_jwt(issuer=account, subject=user.public_key, name=name, nats=nats, expires_in=expires_in)
    expires_at = int(time.time() + expires_in) if expires_in is not None else None
    return MintedUser(
        name=name, public_key=user.public_key, jwt=token, creds=format_creds(token, user.seed), expires_at=expires_at
    )
