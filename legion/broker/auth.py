"""A fleet's authentication state: keys, account JWTs, issued users and their credential files.

Decentralized JWT auth (operator mode, MEMORY resolver). Users are minted by the launcher with
the account seeds and need no server change; removing a user revokes its key in the account JWT
and reloads the server, which disconnects it. Credential files are written with mode 0600 under
``<state>/creds/<actor>.creds`` (ingest sources under ``creds/ingest/<source>.creds``).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

from legion.broker.accounts import AccountLayout, MintedUser, mint_user
from legion.broker.jwt import KeyPair
from legion.broker.keys import FleetKeys, write_private
from legion.broker.permissions import (
    Permissions,
    admin_permissions,
    agent_permissions,
    ingest_permissions,
    service_permissions,
)
from legion.contracts.errors import NotFound
from legion.contracts.names import validate_token

__all__ = ["ADMIN", "FleetAuth", "UserKind"]

UserKind = Literal["agent", "service", "admin", "ingest"]
ADMIN = "admin"
DEFAULT_EXPIRY_S = 3600.0


class FleetAuth:
    """Owns ``<state>/keys`` and ``<state>/creds``. Not thread-safe; the launcher is its only user."""

    def __init__(self, state_dir: Path) -> None:
        self.state_dir = state_dir
        self.keys_dir = state_dir / "keys"
        self.creds_dir = state_dir / "creds"
        self.keys = FleetKeys.load_or_create(self.keys_dir)
        # "<kind>:<actor>" -> public keys issued to it (the newest last), so removal can revoke them
        self._users: dict[str, list[str]] = self._load_json("users.json")
        self.layout = AccountLayout(
            self.keys,
            revocations=self._load_json("revocations.json"),
            _operator_jwt=self._load_operator_jwt(),
        )
        if not (self.keys_dir / "operator.jwt").exists():
            self._save()  # the operator JWT must never change once a server has seen it

    def _load_json(self, name: str) -> dict[str, Any]:
        path = self.keys_dir / name
        if not path.exists():
            return {}
        data = json.loads(path.read_text(encoding="utf-8"))
        return data if isinstance(data, dict) else {}

    def _load_operator_jwt(self) -> str | None:
        """The operator JWT is signed once and kept: a running server refuses a reload that changes it."""
        path = self.keys_dir / "operator.jwt"
        return path.read_text(encoding="utf-8").strip() if path.exists() else None

    def _save(self) -> None:
        write_private(self.keys_dir / "operator.jwt", self.layout.operator_jwt())
        write_private(self.keys_dir / "users.json", json.dumps(self._users, indent=2, sort_keys=True))
        write_private(self.keys_dir / "revocations.json", json.dumps(self.layout.revocations, indent=2, sort_keys=True))

    def server_config(self) -> str:
        """The operator/resolver part of nats-server's config."""
        lines = [
            f"operator: {json.dumps(self.layout.operator_jwt())}",
            f"system_account: {json.dumps(self.keys.system.public_key)}",
            "resolver: MEMORY",
            "resolver_preload: {",
        ]
        lines += [f"  {pub}: {json.dumps(token)}" for pub, token in self.layout.account_jwts().items()]
        lines.append("}")
        return "\n".join(lines)

    def creds_path(self, actor: str, *, kind: UserKind = "agent") -> Path:
        if kind == "ingest":
            return self.creds_dir / "ingest" / f"{validate_token(actor, kind='source name')}.creds"
        return self.creds_dir / f"{validate_token(actor, kind='actor name')}.creds"

    def _account(self, kind: UserKind) -> KeyPair:
        return {"agent": self.keys.agents, "ingest": self.keys.ingest}.get(kind, self.keys.legion)

    def issue(
        self,
        actor: str,
        kind: UserKind,
        permissions: Permissions,
        *,
        expires_in: float | None = DEFAULT_EXPIRY_S,
        write: bool = True,
        replace: bool = False,
    ) -> MintedUser:
        """Mint a user for ``actor`` and (by default) write its creds file with mode 0600.

        ``replace=True`` revokes every key issued to ``actor`` before (effective on the server's next
        config load or reload): for long-lived credentials that are re-minted on each start.
        """
        user = mint_user(self._account(kind), actor, permissions, expires_in=expires_in)
        key = f"{kind}:{actor}"
        previous = self._users.get(key, [])
        if replace:
            for pub in previous:
                self.layout.revoke(self._account(kind), pub)
            previous = []
        if expires_in is not None:
            # expiring credentials: keep the last few keys, older ones have expired by now
            previous = previous[-7:]
        self._users[key] = [*previous, user.public_key]  # never-expiring keys are all kept, to stay revocable
        self._save()
        if write:
            write_private(self.creds_path(actor, kind=kind), user.creds)
        return user

    def issue_agent(
        self,
        agent: str,
        *,
        projects: list[str] | tuple[str, ...] = (),
        can_message: list[str] | tuple[str, ...] = (),
        subscribes: bool = False,
        expires_in: float | None = DEFAULT_EXPIRY_S,
    ) -> Path:
        perms = agent_permissions(agent, projects=projects, can_message=can_message, subscribes=subscribes)
        self.issue(agent, "agent", perms, expires_in=expires_in)
        return self.creds_path(agent)

    def issue_ingest(self, source: str, *, expires_in: float | None = None) -> Path:
        """Ingest credentials are long-lived by default: external systems cannot re-mint."""
        self.issue(source, "ingest", ingest_permissions(source), expires_in=expires_in)
        return self.creds_path(source, kind="ingest")

    def issue_admin(self, *, expires_in: float | None = None) -> Path:
        self.issue(ADMIN, "admin", admin_permissions(), expires_in=expires_in)
        return self.creds_path(ADMIN)

    def issue_service(
        self,
        actor: str,
        permissions: Permissions | None = None,
        *,
        expires_in: float | None = DEFAULT_EXPIRY_S,
        replace: bool = False,
    ) -> Path:
        self.issue(actor, "service", permissions or service_permissions(actor), expires_in=expires_in, replace=replace)
        return self.creds_path(actor)

    def issued(self, kind: UserKind) -> list[str]:
        """Names of the actors of ``kind`` that hold (unrevoked) credentials."""
        prefix = f"{kind}:"
        return sorted(k.removeprefix(prefix) for k in self._users if k.startswith(prefix))

    def admin_creds(self) -> Path:
        """The admin credential, minted once and reused (it does not expire; revoke it to rotate)."""
        path = self.creds_path(ADMIN)
        if path.exists() and f"admin:{ADMIN}" in self._users:
            return path
        return self.issue_admin()

    def revoke(self, actor: str, kind: UserKind = "agent") -> None:
        """Revoke every credential issued to ``actor`` and delete its creds file.

        Takes effect when the server reloads the account JWTs (:meth:`EmbeddedNats.reload`).
        """
        entry = self._users.pop(f"{kind}:{actor}", None)
        if entry is None:
            raise NotFound(f"no credentials were issued to {kind} {actor!r}")
        for pub in entry:
            self.layout.revoke(self._account(kind), pub)
        self._save()
        self.creds_path(actor, kind=kind).unlink(missing_ok=True)
