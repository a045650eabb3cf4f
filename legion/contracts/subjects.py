"""Every Legion subject is built here, from templates, and nowhere else.

A template is a dotted pattern whose ``{param}`` tokens are validated name tokens and whose
optional trailing ``{param+}`` captures one or more dotted tokens (an event type such as
``task.completed``)::

    >>> AGENT_INBOX.render(agent="alpha")
    'legion.agent.alpha.inbox'
    >>> EVENTS.wildcard(source="alpha")
    'legion.events.alpha.>'
    >>> EVENTS.parse("legion.events.alpha.task.completed")
    {'source': 'alpha', 'type': 'task.completed'}
"""

from __future__ import annotations

import re
from typing import Final

from legion.contracts.errors import ConfigError
from legion.contracts.names import NAME_PATTERN, validate_token

__all__ = [
    "AGENT_INBOX",
    "CONTROL",
    "EVENTS",
    "EXT",
    "HEALTH",
    "LEDGER",
    "SCHEDULER",
    "SCHEDULES",
    "SERVICE",
    "STREAM",
    "VAULT_BUDGET",
    "VAULT_HTTP",
    "VAULT_LLM",
    "SubjectTemplate",
    "event_type_of",
    "validate_publish_subject",
]

_PARAM = re.compile(r"\{([a-z_]+)(\+)?\}")


class SubjectTemplate:
    """A subject pattern with named, validated tokens."""

    __slots__ = ("_parts", "pattern", "tail")

    def __init__(self, pattern: str) -> None:
        self.pattern = pattern
        parts: list[tuple[str, bool]] = []  # (literal or param name, is_param)
        tail: str | None = None
        tokens = pattern.split(".")
        for i, token in enumerate(tokens):
            m = _PARAM.fullmatch(token)
            if m is None:
                parts.append((token, False))
                continue
            if m.group(2):
                if i != len(tokens) - 1:
                    raise ValueError(f"{pattern}: a '+' parameter must be the last token")
                tail = m.group(1)
            parts.append((m.group(1), True))
        self._parts = tuple(parts)
        self.tail = tail

    @property
    def params(self) -> tuple[str, ...]:
        return tuple(name for name, is_param in self._parts if is_param)

    def render(self, **values: str) -> str:
        """A concrete subject; every parameter is required and validated."""
        missing = [p for p in self.params if p not in values]
        extra = sorted(set(values) - set(self.params))
        if missing or extra:
            raise ConfigError(f"{self.pattern}: missing parameters {missing}, unexpected {extra}")
        return ".".join(self._token(name, is_param, values) for name, is_param in self._parts)

    def wildcard(self, **values: str) -> str:
        """A subscription filter: given parameters are fixed, the others become ``*`` (``>`` for a tail)."""
        extra = sorted(set(values) - set(self.params))
        if extra:
            raise ConfigError(f"{self.pattern}: unexpected parameters {extra}")
        out: list[str] = []
        for name, is_param in self._parts:
            if not is_param:
                out.append(name)
            elif name in values:
                out.append(self._token(name, is_param, values))
            else:
                out.append(">" if name == self.tail else "*")
        return ".".join(out)

    def parse(self, subject: str) -> dict[str, str] | None:
        """The parameters of a concrete ``subject``, or None if it does not match this template."""
        tokens = subject.split(".")
        fixed = len(self._parts) - (1 if self.tail else 0)
        if (self.tail and len(tokens) <= fixed) or (not self.tail and len(tokens) != fixed):
            return None
        values: dict[str, str] = {}
        for (name, is_param), token in zip(self._parts[:fixed], tokens, strict=False):
            if not is_param:
                if token != name:
                    return None
            elif NAME_PATTERN.fullmatch(token) is None:
                return None
            else:
                values[name] = token
        if self.tail:
            rest = tokens[fixed:]
            if not all(NAME_PATTERN.fullmatch(t) for t in rest):
                return None
            values[self.tail] = ".".join(rest)
        return values

    def _token(self, name: str, is_param: bool, values: dict[str, str]) -> str:
        if not is_param:
            return name
        value = values[name]
        if name == self.tail:
            for token in str(value).split("."):
                validate_token(token, kind=f"{name} token")
            return str(value)
        return validate_token(value, kind=name)

    def __repr__(self) -> str:
        return f"SubjectTemplate({self.pattern!r})"


AGENT_INBOX: Final = SubjectTemplate("legion.agent.{agent}.inbox")
VAULT_LLM: Final = SubjectTemplate("legion.vault.{agent}.llm")
VAULT_HTTP: Final = SubjectTemplate("legion.vault.{agent}.http")
VAULT_BUDGET: Final = SubjectTemplate("legion.vault.{agent}.budget")
"""An agent asks the vault what its budget allows and what it has spent (the vault asks the ledger)."""
SCHEDULER: Final = SubjectTemplate("legion.scheduler.{agent}.{op}")
"""An agent's requests to the scheduler (set_cron, list_cron, remove_cron); a service import like the vault."""
SCHEDULES: Final = SubjectTemplate("legion.schedules.{agent}.{schedule}.{op}")
"""Stream SCHEDULES: the scheduler's events per schedule (created, updated, paused, resumed, deleted,
fired, skipped); the schedule table is a fold over them. Only the scheduler writes here."""
EVENTS: Final = SubjectTemplate("legion.events.{source}.{type+}")
STREAM: Final = SubjectTemplate("legion.stream.{agent}.{session}")
LEDGER: Final = SubjectTemplate("legion.ledger.{agent}.{op}")
EXT: Final = SubjectTemplate("legion.ext.{source}.{type+}")
CONTROL: Final = SubjectTemplate("legion.control.{actor}.{command+}")
HEALTH: Final = SubjectTemplate("legion.health.{actor}")
SERVICE: Final = SubjectTemplate("legion.svc.{service}.{op}")
"""Request/reply between trusted LEGION actors (e.g. vault -> ledger); captured by no stream."""

ROOT: Final = "legion"
VAULT_ALL: Final = "legion.vault.>"
SCHEDULER_ALL: Final = "legion.scheduler.>"
SCHEDULES_ALL: Final = "legion.schedules.>"
EVENTS_ALL: Final = "legion.events.>"
EXT_ALL: Final = "legion.ext.>"
LEDGER_ALL: Final = "legion.ledger.>"
INBOX_ALL: Final = "legion.agent.*.inbox"


def event_type_of(tag: str) -> str:
    """The subject suffix for a contract tag: ``task.completed.v1`` -> ``task.completed``."""
    parts = tag.split(".")
    if len(parts) > 1 and re.fullmatch(r"v\d+", parts[-1]):
        parts = parts[:-1]
    return ".".join(parts)


def validate_publish_subject(subject: str) -> str:
    """Refuse subjects no one may publish to: wildcards, empty tokens, spaces. Returns ``subject``."""
    if not subject:
        raise ConfigError("subject is empty; give a subject such as legion.ext.<source>.<type>")
    if any(c.isspace() for c in subject):
        raise ConfigError(f"subject {subject!r} contains whitespace; NATS subjects cannot")
    for token in subject.split("."):
        if token == "":
            raise ConfigError(f"subject {subject!r} has an empty token ('..', or a leading/trailing '.')")
        if token in ("*", ">"):
            raise ConfigError(f"subject {subject!r} contains the wildcard {token!r}; publish to a concrete subject")
    return subject
