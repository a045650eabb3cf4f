"""The generic error reply of request/reply services."""

from __future__ import annotations

from legion.contracts.base import Reply

__all__ = ["ServiceError"]


class ServiceError(Reply, frozen=True, kw_only=True, tag="service.error.v1"):
    """A service could not handle a request.

    ``code`` is ``invalid`` (the request did not decode, or no handler takes its type), ``internal``
    (an unexpected failure), or the class name of the Legion error raised (e.g. ``Unavailable``).
    """

    code: str
    message: str
    retryable: bool = False
