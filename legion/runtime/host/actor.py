"""Actors are classes with typed handlers; the annotation of the message argument is the route.

    class Ledger(Actor):
        kind = "ledger"

        @handler
        async def reserve(self, req: Reserve, ctx: Context) -> Reserved: ...

        @handler
        async def on_commit(self, event: Commit, ctx: Context) -> None: ...

A handler takes ``(self, message: <Message subclass>, ctx: Context)``. Handlers that return a
:class:`Reply` answer requests (service routes); handlers that return None consume from durable
consumers or core subscriptions. :func:`routes_of` checks every handler and reports all problems in
one error.
"""

from __future__ import annotations

import inspect
import typing
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar

import structlog
from nats.aio.msg import Msg

from legion.broker import Broker, PubAck
from legion.contracts import subjects as subj
from legion.contracts.base import Event, Message, Reply
from legion.contracts.errors import ConfigError

__all__ = ["Actor", "Context", "Route", "handler", "routes_of"]

_HANDLER_ATTR = "__legion_handler__"

Handler = Callable[..., Awaitable[Reply | None]]


def handler(fn: Handler) -> Handler:
    """Mark an ``async def`` method as a message handler; its argument annotation is the route."""
    setattr(fn, _HANDLER_ATTR, True)
    return fn


@dataclass(frozen=True, slots=True)
class Route:
    message_type: type[Message]
    method: str
    replies: bool


@dataclass(slots=True)
class Context:
    """What a handler may touch: its actor's broker, the trace, the raw message."""

    broker: Broker
    actor: str
    trace: str
    msg: Msg | None = None
    log: Any = field(default=None)

    @property
    def headers(self) -> dict[str, str]:
        return dict(self.msg.headers or {}) if self.msg is not None else {}

    async def emit(self, event: Event, *, type: str | None = None, msg_id: str | None = None) -> PubAck:
        """Append ``event`` to EVENTS under this actor's own source, carrying the current trace."""
        suffix = type or subj.event_type_of(event.contract_tag())
        subject = subj.EVENTS.render(source=self.actor, type=suffix)
        return await self.broker.js_publish(subject, event, trace=self.trace, msg_id=msg_id)


class Actor:
    """Base class of every actor. Override :meth:`on_start` / :meth:`on_stop` for resources."""

    kind: ClassVar[str] = "actor"

    def __init__(self, name: str) -> None:
        self.name = name
        self.log = structlog.get_logger(f"legion.actors.{self.kind}").bind(actor=name)

    async def on_start(self, ctx: Context) -> None:
        """Open stores, replay projections. Runs before any message is handled."""

    async def on_stop(self) -> None:
        """Close stores. Runs after in-flight work finished or was cancelled."""


def routes_of(actor_cls: type[Actor]) -> dict[type[Message], Route]:
    """The routes of an actor class; raises ConfigError listing every problem at once."""
    problems: list[str] = []
    routes: dict[type[Message], Route] = {}
    for name, fn in inspect.getmembers(actor_cls, predicate=inspect.isfunction):
        if not getattr(fn, _HANDLER_ATTR, False):
            continue
        where = f"{actor_cls.__qualname__}.{name}"
        if not inspect.iscoroutinefunction(fn):
            problems.append(f"{where}: a handler must be 'async def'")
            continue
        try:
            hints = typing.get_type_hints(fn)
        except (NameError, TypeError) as exc:
            problems.append(f"{where}: cannot resolve annotations ({exc})")
            continue
        params = list(inspect.signature(fn).parameters)[1:]
        if len(params) != 2:
            problems.append(f"{where}: expected (self, message: <Message type>, ctx: Context), got {params}")
            continue
        message_type = hints.get(params[0])
        if not (inspect.isclass(message_type) and issubclass(message_type, Message)):
            problems.append(f"{where}: the first argument must be annotated with a contract type, got {message_type!r}")
            continue
        try:
            message_type.contract_tag()
        except TypeError as exc:
            problems.append(f"{where}: {exc}")
            continue
        if hints.get(params[1]) is not Context:
            problems.append(f"{where}: the second argument must be annotated 'ctx: Context'")
        ret = hints.get("return", type(None))
        replies = inspect.isclass(ret) and issubclass(ret, Reply)
        if not replies and ret is not type(None) and not _is_reply_union(ret):
            problems.append(f"{where}: must return None or a Reply contract, not {ret!r}")
        replies = replies or _is_reply_union(ret)
        if message_type in routes:
            problems.append(f"{where}: {message_type.__name__} is already handled by {routes[message_type].method}")
            continue
        routes[message_type] = Route(message_type=message_type, method=name, replies=replies)
    if problems:
        raise ConfigError(f"{actor_cls.__qualname__} has invalid handlers:\n  " + "\n  ".join(problems))
    return routes


def _is_reply_union(tp: object) -> bool:
    args = typing.get_args(tp)
    return bool(args) and all(inspect.isclass(a) and issubclass(a, Reply) for a in args)
