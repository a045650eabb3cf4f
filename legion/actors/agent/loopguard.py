"""Tool-loop detection: notice when the model keeps making the same call and getting the same answer.

A call is *identical* to an earlier one when the tool name, the parameters (hash of their canonical
JSON) and the result (hash of its text) are the same. Over a sliding window of the last ``window``
calls the guard counts identical calls and escalates:

- ``warn_at`` (2nd identical call): :meth:`LoopGuard.after` returns a note to append to the result;
- ``block_at`` (4th): :meth:`LoopGuard.before` says ``block``; the caller does not run the tool and
  gives the model the verdict's message instead (the guard records the blocked call as a repeat of
  the last result, so further repeats keep counting);
- ``fail_at`` (9th): ``before`` says ``fail``; the caller ends the run as stuck.

Before a call the result is not known yet, so ``before`` counts the window entries that share the
call's parameters *and* the latest result recorded for them: a call whose result changed starts over.
Exempt tools (``memory_search``, whose repeats are legitimate) are never counted.

Pure: no I/O, no clock. One guard per agent session; :meth:`LoopGuard.reset` starts over.
"""

from __future__ import annotations

import hashlib
import json
from collections import deque
from dataclasses import dataclass
from typing import Any, Literal

from legion.contracts.errors import ConfigError

__all__ = ["LoopGuard", "Verdict", "VerdictAction"]

VerdictAction = Literal["run", "block", "fail"]


@dataclass(frozen=True, slots=True)
class Verdict:
    """What to do with a call: ``run`` it, ``block`` it (reply ``message`` instead) or ``fail`` the run."""

    action: VerdictAction
    count: int
    """This call's number among identical calls in the window (1 for a new call)."""
    message: str = ""
    """For ``block`` and ``fail``: what was repeated and what to do instead, for the model to read."""


@dataclass(frozen=True, slots=True)
class _Entry:
    tool: str
    params: str
    result: str


class LoopGuard:
    """Counts identical tool calls over the last ``window`` calls; see the module docstring."""

    def __init__(self, window: int = 30, warn_at: int = 2, block_at: int = 4, fail_at: int = 9) -> None:
        if window < 1 or not 2 <= warn_at <= block_at <= fail_at:
            raise ConfigError(
                f"loop guard levels window={window}, warn_at={warn_at}, block_at={block_at}, fail_at={fail_at} "
                "are invalid: need window >= 1 and 2 <= warn_at <= block_at <= fail_at"
            )
        self.window = window
        self.warn_at = warn_at
        self.block_at = block_at
        self.fail_at = fail_at
        self._entries: deque[_Entry] = deque(maxlen=window)

    def reset(self) -> None:
        """Forget every recorded call (a new session, or after the model changed course on request)."""
        self._entries.clear()

    def before(self, tool: str, arguments: str | dict[str, Any], *, exempt: bool = False) -> Verdict:
        """The verdict for a call about to run; a ``block`` or ``fail`` is recorded as a repeat."""
        if exempt:
            return Verdict(action="run", count=1)
        params = _params_hash(arguments)
        latest = self._latest_result(tool, params)
        if latest is None:
            return Verdict(action="run", count=1)
        count = 1 + self._count(tool, params, latest)
        if count < self.block_at:
            return Verdict(action="run", count=count)
        self._entries.append(_Entry(tool, params, latest))
        if count >= self.fail_at:
            message = (
                f"stopped: {tool} was called {count} times with the same arguments and returned the same "
                "result each time; the run is stuck in a tool loop"
            )
            return Verdict(action="fail", count=count, message=message)
        message = (
            f"{tool} was not run: this is call {count} with the same arguments, and the earlier calls all "
            f"returned the same result. Repeating it will not change that; use the result you already have, "
            f"change the arguments, or try a different approach. The run is stopped at call {self.fail_at}."
        )
        return Verdict(action="block", count=count, message=message)

    def after(self, tool: str, arguments: str | dict[str, Any], result: str, *, exempt: bool = False) -> str | None:
        """Record a call that ran; a note for the model when it repeated an earlier call exactly."""
        if exempt:
            return None
        entry = _Entry(tool, _params_hash(arguments), _hash(result))
        count = 1 + self._count(entry.tool, entry.params, entry.result)
        self._entries.append(entry)
        if count < self.warn_at:
            return None
        return (
            f"note: you called {tool} with these arguments {count - 1} time(s) before and got this same result; "
            f"repeating the call will not change it. Use the result, or change the arguments or the approach "
            f"(from call {self.block_at} on, identical calls are not run)."
        )

    def _latest_result(self, tool: str, params: str) -> str | None:
        for entry in reversed(self._entries):
            if entry.tool == tool and entry.params == params:
                return entry.result
        return None

    def _count(self, tool: str, params: str, result: str) -> int:
        return sum(1 for e in self._entries if e.tool == tool and e.params == params and e.result == result)


def _params_hash(arguments: str | dict[str, Any]) -> str:
    value: Any = arguments
    if isinstance(arguments, str):
        try:
            value = json.loads(arguments or "{}")
        except json.JSONDecodeError:
            return _hash(arguments)  # not JSON: the text itself identifies the call
    canonical = json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)
    return _hash(canonical)


def _hash(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8", errors="surrogatepass")).hexdigest()
