"""The generic error reply of request/reply services."""

from __future__ import annotations

from legion.contracts.base import Reply

__all__ = ["ServiceError"]


class ServiceError(Reply, frozen=True, kw_only=True, tag="service.error.v1"):
    """A service could not handle a request. ``code``: invalid, unsupported, denied, unavailable, internal."""

    code: str
    message: str
    retryable: bool = False
