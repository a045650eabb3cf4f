"""Agent-tier credentials: values the vault holds, handles (``$CRED{name}``) the agents use.

Values come from the vault's environment (``LEGION_CRED_<NAME>``, the name upper-cased with ``-``
as ``_``) or from ``<fleet>/.env`` (read with ``dotenv_values``; the environment wins; nothing is
written to ``os.environ``). Each agent may use only the names listed in its
``agents.<agent>.credentials`` (deny by default). A credential may also be bound to hosts: then it
is substituted only into requests for those hosts.

The vault never hands out a value: :meth:`CredentialStore.redactor` replaces every value it holds
(agent tier, and the system-tier provider keys, ``LEGION_SYSTEM_<KEY>``) in what goes back to an
agent, in the plain, percent-encoded, JSON-escaped, HTML-escaped and base64 forms.
"""

from __future__ import annotations

import base64
import html
import json
import os
import re
from collections.abc import Callable, Collection, Iterable, Mapping
from pathlib import Path
from typing import Final
from urllib.parse import quote, quote_plus

from dotenv import dotenv_values

from legion.contracts.errors import LegionError
from legion.contracts.names import NAME_PATTERN
from legion.runtime.config.secrets import CRED_PREFIX, SYSTEM_PREFIX, env_var

__all__ = [
    "CRED_ENV_PREFIX",
    "HANDLE",
    "SYSTEM_ENV_PREFIX",
    "CredentialRefused",
    "CredentialStore",
    "Redactor",
    "Substitution",
    "env_name",
]

CRED_ENV_PREFIX: Final = CRED_PREFIX
SYSTEM_ENV_PREFIX: Final = SYSTEM_PREFIX
HANDLE: Final = re.compile(r"\$CRED\{([^{}]*)\}")
"""A credential handle in a URL, header value or body: ``$CRED{name}``."""


def env_name(name: str) -> str:
    """The environment variable that holds credential ``name``: ``github-token`` -> ``LEGION_CRED_GITHUB_TOKEN``
    (the fleet's one secret-naming rule)."""
    return env_var(name, "credential")


class CredentialRefused(LegionError):
    """A ``$CRED{name}`` handle cannot be used; the message names the handle, why, and the fix."""

    def __init__(self, *, handle: str, reason: str) -> None:
        self.handle = handle
        self.reason = reason
        super().__init__(f"credential handle {handle}: {reason}")


class Substitution:
    """The values substituted into one request: handle name -> value. Never log or return it."""

    __slots__ = ("derived", "used")

    def __init__(self) -> None:
        self.used: dict[str, str] = {}
        self.derived: dict[str, str] = {}
        """Secrets made from used values (e.g. a Basic-auth token) -> the label that replaces them."""

    def __bool__(self) -> bool:
        return bool(self.used)

    def __repr__(self) -> str:  # never show values
        return f"Substitution(names={sorted(self.used)})"


class Redactor:
    """Replaces secret values (in several encodings) with labels such as ``$CRED{name}``."""

    def __init__(self, secrets: Iterable[tuple[str, str]]) -> None:
        forms: dict[str, str] = {}
        for value, label in secrets:
            for form in _forms(value):
                forms.setdefault(form, label)
        ordered = sorted(forms, key=len, reverse=True)  # the longest form wins at a position
        self._labels = forms
        self._pattern = re.compile("|".join(re.escape(f) for f in ordered)) if ordered else None
        self.max_bytes = max((len(f.encode("utf-8")) for f in ordered), default=0)
        """The longest secret form in UTF-8 bytes (read this far past a cut so no secret is split)."""

    def __call__(self, text: str) -> str:
        if self._pattern is None or not text:
            return text
        return self._pattern.sub(lambda m: self._labels[m.group(0)], text)


def _forms(value: str) -> set[str]:
    if not value:
        return set()
    raw = value.encode("utf-8")
    forms = {
        value,
        quote(value, safe=""),
        quote(value),
        quote_plus(value),
        json.dumps(value)[1:-1],
        json.dumps(value, ensure_ascii=False)[1:-1],
        json.dumps(value)[1:-1].replace("/", "\\/"),
        html.escape(value),
    }
    forms |= _base64_forms(raw)
    forms |= {re.sub(r"%[0-9A-F]{2}", lambda m: m.group(0).lower(), f) for f in list(forms)}
    return {f for f in forms if f}


def _base64_forms(raw: bytes) -> set[str]:
    """The part of a base64 encoding that depends only on ``raw``, at each of the three alignments
    it can have inside a longer encoded text (``user:<value>`` in Basic auth, a JSON document...)."""
    forms: set[str] = set()
    for offset in range(3):
        encoded = base64.b64encode(b"\0" * offset + raw).decode()
        start = 4 if offset else 0  # the first group mixes in the bytes before the value
        end = 4 * ((offset + len(raw)) // 3)  # the last partial group mixes in the bytes after it
        stable = encoded[start:end] if (offset + len(raw)) % 3 else encoded.rstrip("=")
        if len(stable) >= 8 or (offset == 0 and stable):
            forms.add(stable)
            forms.add(stable.replace("+", "-").replace("/", "_"))  # the URL-safe alphabet
    return forms


class CredentialStore:
    """The agent-tier credentials the vault holds, and the secrets it must never return."""

    def __init__(
        self,
        values: Mapping[str, str],
        *,
        hosts: Mapping[str, Iterable[str]] | None = None,
        redact_also: Mapping[str, str] | None = None,
    ) -> None:
        """``values``: name -> value. ``hosts``: name -> the only hosts it may be sent to.
        ``redact_also``: other secrets (e.g. provider keys) to redact, never to substitute."""
        self._values = {env_name(name): value for name, value in values.items()}
        self._labels = {env_name(name): name for name in values}
        self._hosts = {env_name(n): frozenset(_host_key(h) for h in hs) for n, hs in (hosts or {}).items()}
        self._system = dict(redact_also or {})

    @classmethod
    def load(cls, fleet_dir: Path | None = None, *, environ: Mapping[str, str] | None = None) -> CredentialStore:
        """Read ``LEGION_CRED_*`` (and, for redaction only, ``LEGION_SYSTEM_*``) from ``<fleet>/.env``
        and the environment (which wins). Read once at start, not per call."""
        merged: dict[str, str] = {}
        if fleet_dir is not None and (fleet_dir / ".env").is_file():
            merged.update({k: v for k, v in dotenv_values(fleet_dir / ".env").items() if v is not None})
        merged.update(os.environ if environ is None else environ)
        creds = {k.removeprefix(CRED_ENV_PREFIX).lower(): v for k, v in merged.items() if k.startswith(CRED_ENV_PREFIX)}
        system = {
            k.removeprefix(SYSTEM_ENV_PREFIX).lower(): v for k, v in merged.items() if k.startswith(SYSTEM_ENV_PREFIX)
        }
        return cls({k: v for k, v in creds.items() if k and v}, redact_also={k: v for k, v in system.items() if v})

    def names(self) -> frozenset[str]:
        """The names of the credentials held (never the values)."""
        return frozenset(self._labels.values())

    def substitute(
        self,
        text: str,
        *,
        agent: str,
        allowed: Collection[str],
        into: Substitution,
        encode: Callable[[str], str] | None = None,
    ) -> str:
        """``text`` with every ``$CRED{name}`` replaced by its value (``encode``-d, e.g. for a URL).

        Raises :class:`CredentialRefused` if ``agent`` may not use a name (checked first, so an agent
        learns nothing about credentials it may not use) or the vault does not hold it.
        """

        def replace(m: re.Match[str]) -> str:
            handle, name = m.group(0), m.group(1)
            if NAME_PATTERN.fullmatch(name) is None:
                raise CredentialRefused(
                    handle=handle, reason="a credential name must match [a-z0-9_-]{1,64}; write $CRED{name}"
                )
            if name not in allowed:
                raise CredentialRefused(
                    handle=handle,
                    reason=f"agent {agent!r} may not use credential {name!r}; "
                    f"add it to agents.{agent}.credentials in legion.yaml",
                )
            value = self._values.get(env_name(name))
            if value is None:
                raise CredentialRefused(
                    handle=handle,
                    reason=f"the vault holds no credential {name!r}; "
                    f"set {env_name(name)} in the vault's environment or in <fleet>/.env",
                )
            into.used[name] = value
            return encode(value) if encode is not None else value

        return HANDLE.sub(replace, text)

    def hosts_of(self, name: str) -> frozenset[str] | None:
        """The hosts credential ``name`` is bound to, or None if it may go to any (public) host."""
        return self._hosts.get(env_name(name))

    def check_host(self, substitution: Substitution, host: str) -> None:
        """Refuse if a substituted credential is bound to other hosts than ``host``."""
        for name in sorted(substitution.used):
            bound = self.hosts_of(name)
            if bound is not None and _host_key(host) not in bound:
                raise CredentialRefused(
                    handle=f"$CRED{{{name}}}",
                    reason=f"credential {name!r} may be sent only to {', '.join(sorted(bound))}, not to {host!r}",
                )

    def redactor(self, substitution: Substitution | None = None) -> Redactor:
        """A redactor of every value held; values used in ``substitution`` get the handle used."""
        secrets: list[tuple[str, str]] = []
        if substitution is not None:
            secrets.extend((value, f"$CRED{{{name}}}") for name, value in substitution.used.items())
            secrets.extend(substitution.derived.items())
        secrets.extend((value, f"$CRED{{{self._labels[key]}}}") for key, value in self._values.items())
        secrets.extend((value, f"[redacted system key {name}]") for name, value in self._system.items())
        return Redactor(secrets)


def _host_key(host: str) -> str:
    return host.lower().rstrip(".")
