"""The tool-loop guard, driven the way the agent loop drives it: before each call, after each run."""

from __future__ import annotations

from typing import Any

import pytest

from legion.actors.agent.loopguard import LoopGuard
from legion.contracts.errors import ConfigError


def step(guard: LoopGuard, tool: str, args: dict[str, Any] | str, result: str, *, exempt: bool = False) -> str:
    """One call as the agent loop makes it; what the model sees of the guard: run, warn, block or fail."""
    verdict = guard.before(tool, args, exempt=exempt)
    if verdict.action != "run":
        assert tool in verdict.message
        return verdict.action
    note = guard.after(tool, args, result, exempt=exempt)
    return "run" if note is None else "warn"


def test_levels_warn_at_2nd_block_at_4th_fail_at_9th() -> None:
    guard = LoopGuard()
    seen = [step(guard, "read_file", {"path": "a.txt"}, '{"content": "x"}') for _ in range(9)]
    assert seen == ["run", "warn", "warn", "block", "block", "block", "block", "block", "fail"]


def test_verdict_counts_and_messages() -> None:
    guard = LoopGuard()
    for _ in range(3):
        assert guard.before("glob", {"pattern": "*"}).action == "run"
        guard.after("glob", {"pattern": "*"}, "[]")
    blocked = guard.before("glob", {"pattern": "*"})
    assert (blocked.action, blocked.count) == ("block", 4)
    assert "glob was not run" in blocked.message
    assert "different approach" in blocked.message


def test_warning_names_the_repeat() -> None:
    guard = LoopGuard()
    guard.after("list_dir", {"path": "."}, "[]")
    note = guard.after("list_dir", {"path": "."}, "[]")
    assert note is not None
    assert "list_dir" in note
    assert "1 time(s) before" in note


def test_different_arguments_do_not_count() -> None:
    guard = LoopGuard()
    seen = [step(guard, "read_file", {"path": f"{i}.txt"}, "same") for i in range(12)]
    assert set(seen) == {"run"}


def test_different_results_do_not_count() -> None:
    guard = LoopGuard()
    seen = [step(guard, "run_command", {"command": "date"}, f"result {i}") for i in range(12)]
    assert set(seen) == {"run"}


def test_a_changed_result_starts_the_count_over() -> None:
    guard = LoopGuard()
    seen = [step(guard, "http_get", {"url": "u"}, "pending") for _ in range(2)]
    seen += [step(guard, "http_get", {"url": "u"}, "done") for _ in range(4)]
    assert seen == ["run", "warn", "run", "warn", "warn", "block"]


def test_the_same_tool_name_with_other_tools_between_still_counts() -> None:
    guard = LoopGuard()
    seen = []
    for i in range(4):
        seen.append(step(guard, "read_file", {"path": "a"}, "x"))
        step(guard, "write_file", {"path": f"{i}"}, "ok")
    assert seen == ["run", "warn", "warn", "block"]


def test_argument_key_order_and_json_text_do_not_matter() -> None:
    guard = LoopGuard()
    assert step(guard, "t", {"a": 1, "b": 2}, "r") == "run"
    assert step(guard, "t", '{"b": 2, "a": 1}', "r") == "warn"
    assert step(guard, "t", '{"b":2,"a":1}', "r") == "warn"
    assert step(guard, "t", {"b": 2, "a": 1}, "r") == "block"


def test_exempt_tools_are_never_warned_blocked_or_failed() -> None:
    guard = LoopGuard()
    seen = [step(guard, "memory_search", {"query": "q"}, "same", exempt=True) for _ in range(20)]
    assert set(seen) == {"run"}
    assert step(guard, "memory_search", {"query": "q"}, "same") == "run"  # nothing was recorded


def test_window_slides_old_calls_out() -> None:
    guard = LoopGuard(window=5)
    assert step(guard, "read_file", {"path": "a"}, "x") == "run"
    assert step(guard, "read_file", {"path": "a"}, "x") == "warn"
    for i in range(5):
        step(guard, "list_dir", {"path": str(i)}, "[]")
    assert step(guard, "read_file", {"path": "a"}, "x") == "run"


def test_window_bounds_the_count() -> None:
    guard = LoopGuard(window=3, warn_at=2, block_at=4, fail_at=5)
    seen = [step(guard, "t", {}, "r") for _ in range(6)]
    assert seen == ["run", "warn", "warn", "block", "block", "block"]  # never 5 in a window of 3


def test_blocked_calls_keep_counting_towards_fail() -> None:
    guard = LoopGuard(warn_at=2, block_at=3, fail_at=5)
    seen = [step(guard, "t", {}, "r") for _ in range(5)]
    assert seen == ["run", "warn", "block", "block", "fail"]


def test_reset_forgets_every_call() -> None:
    guard = LoopGuard()
    for _ in range(3):
        step(guard, "t", {}, "r")
    guard.reset()
    assert step(guard, "t", {}, "r") == "run"


def test_invalid_arguments_text_is_compared_as_text() -> None:
    guard = LoopGuard()
    assert step(guard, "t", "{not json", "r") == "run"
    assert step(guard, "t", "{not json", "r") == "warn"
    assert step(guard, "t", "{other", "r") == "run"


@pytest.mark.parametrize(
    ("window", "warn_at", "block_at", "fail_at"), [(0, 2, 4, 9), (30, 1, 4, 9), (30, 5, 4, 9), (30, 2, 10, 9)]
)
def test_inconsistent_levels_are_a_config_error(window: int, warn_at: int, block_at: int, fail_at: int) -> None:
    with pytest.raises(ConfigError, match="warn_at <= block_at <= fail_at"):
        LoopGuard(window=window, warn_at=warn_at, block_at=block_at, fail_at=fail_at)
