"""The error root of Legion.

Every error Legion raises derives from :class:`LegionError`. Errors carry fields, say whether a
retry can help (``retryable``), and their messages name the bad value, the rule and the fix.
This module lives in ``contracts`` because it is the bottom layer that every other layer imports.
"""

from __future__ import annotations

__all__ = [
    "ConcurrencyConflict",
    "ConfigError",
    "ContractError",
    "LegionError",
    "NotFound",
    "PermissionDenied",
    "QuotaExceeded",
    "Refused",
    "RequestTimeout",
    "Unavailable",
]


class LegionError(Exception):
    """Root of every error Legion raises."""

    retryable: bool = False


class Refused(LegionError):
    """Control flow, not a fault: a request refused on purpose, which the code that catches it turns
    into a typed answer (a tool error the model reads, a denied or refused call). Catch it before a
    broad ``except LegionError``."""


class QuotaExceeded(LegionError):
    """A limit that protects the rest of the fleet was reached (an agent's inbox is full, ...). The
    message names the limit and the legion.yaml key that sets it; a later retry may pass."""

    retryable = True


class ConfigError(LegionError):
    """Bad configuration or bad input from a user: names the value, the rule and the fix."""


class ContractError(LegionError, ValueError):
    """A message does not match its contract (unknown tag in strict mode, wrong field types...)."""

    def __init__(self, message: str, *, tag: str | None = None) -> None:
        super().__init__(message)
        self.tag = tag


class PermissionDenied(LegionError):
    """The NATS server refused an operation for the connection's credentials."""

    def __init__(self, *, operation: str, subject: str, detail: str = "") -> None:
        self.operation = operation
        self.subject = subject
        self.detail = detail
        msg = f"permission denied: {operation} on {subject!r}"
        if detail:
            msg += f" ({detail})"
        msg += "; this credential's permissions do not allow it (see docs/security.md)"
        super().__init__(msg)


class RequestTimeout(LegionError):
    """No reply arrived in time; a retry may help."""

    retryable = True

    def __init__(self, *, subject: str, timeout: float) -> None:
        self.subject = subject
        self.timeout = timeout
        super().__init__(f"no reply on {subject!r} within {timeout:g}s; is the responder running?")


class Unavailable(LegionError):
    """A server or responder is not reachable right now; a retry may help."""

    retryable = True


class NotFound(LegionError):
    """A named thing (stream, consumer, key, actor) does not exist."""


class ConcurrencyConflict(LegionError):
    """An optimistic-concurrency write lost: the stored revision is not the expected one."""

    retryable = True

    def __init__(self, *, key: str, expected: int | None, actual: int | None = None) -> None:
        self.key = key
        self.expected = expected
        self.actual = actual
        super().__init__(
            f"concurrent update of {key!r}: expected revision {expected}, found {actual}; re-read and retry"
        )
