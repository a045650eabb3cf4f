"""run_command, called the way the agent loop calls it: exit codes, output, caps and the timeout kill."""

from __future__ import annotations

import json
import os
import select
from pathlib import Path
from typing import Any

import pytest

from legion.actors.agent.tools.base import ToolContext, ToolResult, ToolSet
from legion.actors.agent.tools.command import command_tool
from tests.actors.agent.tool_kit import ok


async def run(
    workspace: Path, command: str, *, limit: float = 10, cap: int = 16_000, model_timeout: float | None = None
) -> ToolResult:
    """Call run_command as the model would; ``limit`` and ``cap`` configure the tool, ``model_timeout``
    is the model's own ``timeout_s`` argument."""
    tools = ToolSet.of([command_tool(workspace, timeout_s=limit, output_cap=cap)])
    ctx = ToolContext(agent="coder", session="s1", call_key="coder:s1:1:0", workspace=workspace)
    args: dict[str, Any] = {"command": command}
    if model_timeout is not None:
        args["timeout_s"] = model_timeout
    return await tools.call("run_command", json.dumps(args), ctx)


def exits(pid: int, within: float = 5.0) -> bool:
    """True once ``pid`` has exited (zombies count: the killed child's new parent may reap it late).

    Waits on the process's pidfd, which becomes readable when the process exits: the kernel closes a
    dying process's pipes just before it exits, so the tool may return a moment before that.
    """
    try:
        fd = os.pidfd_open(pid)
    except ProcessLookupError:
        return True
    try:
        readable, _, _ = select.select([fd], [], [], within)
    finally:
        os.close(fd)
    return bool(readable)


async def test_returns_exit_code_stdout_and_stderr(tmp_path: Path) -> None:
    result = ok(await run(tmp_path, "echo out; echo err >&2; exit 3"))
    assert result == {"exit_code": 3, "stdout": "out\n", "stderr": "err\n"}


async def test_runs_in_the_workspace_with_a_minimal_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LEGION_TEST_SECRET", "hunter2")
    result = ok(await run(tmp_path, "pwd; env"))
    lines = result["stdout"].splitlines()
    assert lines[0] == str(tmp_path.resolve())
    names = {line.split("=", 1)[0] for line in lines[1:]}
    assert "LEGION_TEST_SECRET" not in names
    assert f"HOME={tmp_path.resolve()}" in lines
    assert names <= {"PATH", "HOME", "LANG", "PWD", "SHLVL", "_", "OLDPWD"}


async def test_output_is_cut_to_the_cap_and_says_how_much(tmp_path: Path) -> None:
    result = ok(await run(tmp_path, "head -c 100000 /dev/zero | tr '\\0' a; echo END", cap=1000))
    stdout = result["stdout"]
    assert "[... 99004 bytes cut ...]" in stdout
    assert stdout.startswith("a" * 500)
    assert stdout.endswith("END\n")
    assert len(stdout.replace("\n[... 99004 bytes cut ...]\n", "")) == 1000


async def test_the_cap_covers_stdout_and_stderr_together(tmp_path: Path) -> None:
    command = "head -c 5000 /dev/zero | tr '\\0' o; head -c 5000 /dev/zero | tr '\\0' e >&2"
    result = ok(await run(tmp_path, command, cap=1000))
    assert "\n[... 4500 bytes cut ...]\n" in result["stdout"]
    assert "\n[... 4500 bytes cut ...]\n" in result["stderr"]
    kept_out = result["stdout"].replace("\n[... 4500 bytes cut ...]\n", "")
    kept_err = result["stderr"].replace("\n[... 4500 bytes cut ...]\n", "")
    assert (kept_out, kept_err) == ("o" * 500, "e" * 500)


async def test_a_short_stderr_is_kept_whole_when_stdout_is_cut(tmp_path: Path) -> None:
    result = ok(await run(tmp_path, "echo failed: reason >&2; head -c 5000 /dev/zero | tr '\\0' o", cap=1000))
    assert result["stderr"] == "failed: reason\n"
    assert result["stdout"].count("o") == 1000 - len("failed: reason\n")


async def test_invisible_unicode_is_stripped_from_output(tmp_path: Path) -> None:
    result = ok(await run(tmp_path, r"printf 'a\342\200\213b\363\240\201\201c'"))  # U+200B and U+E0041
    assert result["stdout"] == "abc"


async def test_timeout_kills_the_whole_process_group(tmp_path: Path) -> None:
    result = await run(tmp_path, "echo started; sleep 60 & echo $! > child.pid; wait", limit=0.5)
    assert result.error_code == "timeout"
    message = json.loads(result.content)["message"]
    assert "0.5s" in message
    assert "started" in message  # the partial output
    child = int((tmp_path / "child.pid").read_text(encoding="utf-8"))
    assert exits(child)


async def test_the_model_cannot_raise_the_timeout_past_the_tools_limit(tmp_path: Path) -> None:
    result = await run(tmp_path, "sleep 60", limit=0.5, model_timeout=100)
    assert result.error_code == "timeout"
    assert "0.5s" in json.loads(result.content)["message"]


async def test_the_model_can_ask_for_a_shorter_timeout(tmp_path: Path) -> None:
    result = await run(tmp_path, "sleep 60", limit=30, model_timeout=0.3)
    assert result.error_code == "timeout"
    assert "0.3s" in json.loads(result.content)["message"]


async def test_background_processes_do_not_outlive_the_call(tmp_path: Path) -> None:
    result = ok(await run(tmp_path, "sleep 60 & echo $! > child.pid; echo done"))
    assert result["stdout"] == "done\n"
    assert exits(int((tmp_path / "child.pid").read_text(encoding="utf-8")))


async def test_empty_command_is_invalid(tmp_path: Path) -> None:
    assert (await run(tmp_path, "")).error_code == "invalid_args"


async def test_nul_in_a_command_is_invalid(tmp_path: Path) -> None:
    result = await run(tmp_path, "echo a\x00b")
    assert result.error_code == "invalid_args"
    assert "NUL" in result.content


def test_tool_has_side_effects() -> None:
    tool = command_tool(Path())
    assert tool.name == "run_command"
    assert tool.side_effects
