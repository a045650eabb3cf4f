"""Validated name tokens.

Names of agents, sources, projects and actors become NATS subject tokens, stream and consumer
names and KV bucket names, so they must never contain ``.``, ``*``, ``>`` or whitespace.
"""

from __future__ import annotations

import re
from typing import Any

from legion.contracts.errors import ConfigError

__all__ = ["NAME_PATTERN", "ActorName", "AgentName", "ProjectName", "SourceName", "validate_token"]

NAME_PATTERN = re.compile(r"[a-z0-9_-]{1,64}")
_RULE = "must match [a-z0-9_-]{1,64} (lower-case letters, digits, '_' or '-') because it becomes a NATS subject token"


def validate_token(value: object, *, kind: str = "name") -> str:
    """Return ``value`` if it is a valid name token, else raise :class:`ConfigError` naming it."""
    if not isinstance(value, str):
        raise ConfigError(f"{kind} {value!r} is not a string; it {_RULE}")
    if NAME_PATTERN.fullmatch(value) is None:
        hint = ""
        lowered = re.sub(r"[^a-z0-9_-]+", "-", value.lower()).strip("-")[:64]
        if lowered and NAME_PATTERN.fullmatch(lowered):
            hint = f"; try {lowered!r}"
        raise ConfigError(f"{kind} {value!r} is invalid: it {_RULE}{hint}")
    return value


class _Token(str):
    """A ``str`` that has been validated as a subject token."""

    kind = "name"
    __slots__ = ()

    def __new__(cls, value: str) -> Any:
        return super().__new__(cls, validate_token(value, kind=cls.kind))


class AgentName(_Token):
    """The name of an agent (``legion.agent.<agent>.inbox``)."""

    kind = "agent name"
    __slots__ = ()


class SourceName(_Token):
    """The ``<source>`` token of an event subject (an actor or an external system)."""

    kind = "source name"
    __slots__ = ()


class ProjectName(_Token):
    """A project (blackboard namespace), stored in the KV bucket ``bb_<project>``."""

    kind = "project name"
    __slots__ = ()


class ActorName(_Token):
    """Any actor: an agent or a system actor such as ``vault`` or ``ledger``."""

    kind = "actor name"
    __slots__ = ()
