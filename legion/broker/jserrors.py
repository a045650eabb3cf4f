"""JetStream API error codes, translated to Legion errors here and nowhere else."""

from __future__ import annotations

from typing import Any, Final

from legion.contracts.errors import ConcurrencyConflict, LegionError, NotFound, QuotaExceeded, Unavailable

__all__ = ["JSApiError", "raise_for_api_error"]

STREAM_NOT_FOUND: Final = 10059
CONSUMER_NOT_FOUND: Final = 10014
WRONG_LAST_SEQUENCE: Final = 10071
WRONG_LAST_MSG_ID: Final = 10070
KEY_NOT_FOUND: Final = 10037
MESSAGE_NOT_FOUND: Final = 10037
STREAM_NAME_IN_USE: Final = 10058
CONSUMER_EXISTS: Final = 10148
MAX_MSGS_PER_SUBJECT: Final = 10077  # a stream's per-subject cap with discard new: an agent's inbox is full


class JSApiError(LegionError):
    """A JetStream API error not mapped to a more specific Legion error."""

    def __init__(self, *, code: int, err_code: int, description: str, subject: str) -> None:
        self.code = code
        self.err_code = err_code
        self.description = description
        self.subject = subject
        super().__init__(f"JetStream error {err_code} ({code}) on {subject!r}: {description}")


def raise_for_api_error(response: dict[str, Any], *, subject: str) -> None:
    err = response.get("error")
    if not isinstance(err, dict):
        return
    code = int(err.get("code", 0))
    err_code = int(err.get("err_code", 0))
    desc = str(err.get("description", ""))
    if err_code == MAX_MSGS_PER_SUBJECT:
        raise QuotaExceeded(
            f"{subject!r} holds as many messages as its cap allows ({desc}); the receiver has to work "
            "through them first (an agent's inbox depth is runtime.inbox_max_depth in legion.yaml)"
        )
    if err_code == WRONG_LAST_SEQUENCE:
        raise ConcurrencyConflict(key=subject, expected=None, actual=None)
    if err_code in (STREAM_NOT_FOUND, CONSUMER_NOT_FOUND) or code == 404:
        raise NotFound(f"{desc} ({subject})")
    if code == 503:
        raise Unavailable(f"JetStream unavailable for {subject!r}: {desc}")
    raise JSApiError(code=code, err_code=err_code, description=desc, subject=subject)
