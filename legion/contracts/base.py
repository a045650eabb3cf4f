"""Base classes of every wire contract.

A contract is a frozen, keyword-only msgspec Struct with an explicit, versioned tag::

    class AssignTask(Command, tag="task.assign.v1"):
        task_id: str

The tag travels in the ``Legion-Type`` header and in the body's ``type`` field. Wire names are
never taken from Python class names. Contracts evolve by adding fields with defaults; a breaking
change is a new tag plus a pure upcaster.
"""

from __future__ import annotations

import re
from typing import Any

import msgspec

__all__ = ["Command", "Event", "Message", "Reply", "Request", "UnknownEvent", "contract_for", "contracts"]


class Message(msgspec.Struct, frozen=True, kw_only=True, tag_field="type"):
    """Root of every contract. Subclasses must set ``tag="name.vN"``."""

    @classmethod
    def contract_tag(cls) -> str:
        tag = _explicit_tag(cls)
        if tag is None:
            raise TypeError(f"{cls.__qualname__} has no versioned tag; declare it as class X(Event, tag='x.y.v1')")
        return tag


class Command(Message, frozen=True, kw_only=True):
    """Something an actor is asked to do (arrives in its inbox)."""


class Event(Message, frozen=True, kw_only=True):
    """Something that happened (appended to the EVENTS or LEDGER stream)."""


class Request(Message, frozen=True, kw_only=True):
    """A request/reply call to a service (vault, ledger)."""


class Reply(Message, frozen=True, kw_only=True):
    """The answer to a :class:`Request`."""


class UnknownEvent(msgspec.Struct, frozen=True, kw_only=True):
    """A message whose tag this build does not know. Kept, never dropped (lenient decoding)."""

    tag: str
    data: bytes
    headers: dict[str, str] = msgspec.field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        """Best-effort JSON view of the body (empty dict if it is not a JSON object)."""
        try:
            value = msgspec.json.decode(self.data)
        except msgspec.DecodeError:
            return {}
        return value if isinstance(value, dict) else {}


_TAG = re.compile(r"[a-z0-9_]+(\.[a-z0-9_]+)*\.v[0-9]+")


def _explicit_tag(cls: type[Message]) -> str | None:
    """The declared tag, or None for abstract bases (msgspec defaults an unset tag to the class name)."""
    tag = cls.__struct_config__.tag
    if isinstance(tag, str) and _TAG.fullmatch(tag):
        return tag
    return None


_registry: dict[str, type[Message]] = {}
_seen_classes = 0


def _walk(cls: type[Message]) -> list[type[Message]]:
    found: list[type[Message]] = []
    for sub in cls.__subclasses__():
        found.append(sub)
        found.extend(_walk(sub))
    return found


def contracts() -> dict[str, type[Message]]:
    """Every known contract by tag (including contracts defined outside Legion)."""
    global _seen_classes  # noqa: PLW0603 - a cache, rebuilt only when new subclasses appear
    classes = _walk(Message)
    if len(classes) != _seen_classes:
        registry: dict[str, type[Message]] = {}
        for cls in classes:
            tag = _explicit_tag(cls)
            if tag is None:
                continue
            other = registry.get(tag)
            if other is not None and other is not cls:
                raise TypeError(f"contract tag {tag!r} is declared twice: {other.__qualname__} and {cls.__qualname__}")
            registry[tag] = cls
        _registry.clear()
        _registry.update(registry)
        _seen_classes = len(classes)
    return _registry


def contract_for(tag: str) -> type[Message] | None:
    """The contract class declared with ``tag``, or None. O(1) for known tags (the hot decode path);
    an unknown tag re-scans the subclasses once, in case a contract was defined since."""
    cls = _registry.get(tag)
    if cls is None:
        cls = contracts().get(tag)
    return cls
