"""Trace ids: carried in the ``Legion-Trace`` header from cause to effect."""

from __future__ import annotations

import uuid
from contextvars import ContextVar

__all__ = ["current_trace", "new_id", "trace_scope"]

_trace: ContextVar[str | None] = ContextVar("legion_trace", default=None)


def new_id() -> str:
    """A random 32-hex id (trace ids, message ids)."""
    return uuid.uuid4().hex


def current_trace() -> str | None:
    return _trace.get()


class trace_scope:  # noqa: N801 - used as a context manager, reads like a statement
    """``with trace_scope(msg_trace):`` makes publishes inside it carry that trace id."""

    def __init__(self, trace: str | None = None) -> None:
        self.trace = trace or new_id()
        self._token: object = None

    def __enter__(self) -> str:
        self._token = _trace.set(self.trace)
        return self.trace

    def __exit__(self, *exc: object) -> None:
        _trace.reset(self._token)  # type: ignore[arg-type]
