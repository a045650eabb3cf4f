"""The workspace file tools, called the way the agent loop calls them: what the model reads back."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from legion.actors.agent.tools.base import ToolContext, ToolResult, ToolSet
from legion.actors.agent.tools.files import LIST_CAP, READ_CAP, WRITE_CAP, file_tools
from tests.actors.agent.tool_kit import err, ok


@pytest.fixture
def workspace(tmp_path: Path) -> Path:
    ws = tmp_path / "ws"
    ws.mkdir()
    return ws


@pytest.fixture
def outside(tmp_path: Path) -> Path:
    out = tmp_path / "outside"
    out.mkdir()
    (out / "secret.txt").write_text("top secret", encoding="utf-8")
    return out


async def call(workspace: Path, name: str, **args: Any) -> ToolResult:
    tools = ToolSet.of(file_tools(workspace))
    ctx = ToolContext(agent="coder", session="s1", call_key="coder:s1:1:0", workspace=workspace)
    return await tools.call(name, json.dumps(args), ctx)


async def test_write_then_read_returns_the_content(workspace: Path) -> None:
    written = ok(await call(workspace, "write_file", path="src/a.txt", content="héllo\n"))
    assert written == {"path": "src/a.txt", "bytes_written": 7, "size_bytes": 7}
    read = ok(await call(workspace, "read_file", path="src/a.txt"))
    assert read["content"] == "héllo\n"
    assert read["size_bytes"] == 7
    assert read["next_offset"] is None


async def test_append_adds_to_the_end_and_creates_missing_files(workspace: Path) -> None:
    ok(await call(workspace, "append_file", path="log.txt", content="one\n"))
    appended = ok(await call(workspace, "append_file", path="log.txt", content="two\n"))
    assert appended["size_bytes"] == 8
    assert ok(await call(workspace, "read_file", path="log.txt"))["content"] == "one\ntwo\n"


async def test_write_overwrites(workspace: Path) -> None:
    ok(await call(workspace, "write_file", path="a.txt", content="long old text"))
    ok(await call(workspace, "write_file", path="a.txt", content="new"))
    assert ok(await call(workspace, "read_file", path="a.txt"))["content"] == "new"


async def test_read_pages_with_offset_and_limit(workspace: Path) -> None:
    (workspace / "big.txt").write_text("0123456789" * 3, encoding="utf-8")
    first = ok(await call(workspace, "read_file", path="big.txt", limit=12))
    assert first["content"] == "012345678901"
    assert first["next_offset"] == 12
    assert first["size_bytes"] == 30
    last = ok(await call(workspace, "read_file", path="big.txt", offset=24, limit=12))
    assert last["content"] == "456789"
    assert last["next_offset"] is None


async def test_read_limit_is_capped(workspace: Path) -> None:
    (workspace / "a.txt").write_text("x", encoding="utf-8")
    message = err(await call(workspace, "read_file", path="a.txt", limit=READ_CAP + 1), "invalid_args")
    assert "limit" in message


async def test_write_over_the_cap_is_refused_and_writes_nothing(workspace: Path) -> None:
    message = err(await call(workspace, "write_file", path="a.txt", content="x" * (WRITE_CAP + 1)), "invalid_args")
    assert "append_file" in message
    assert not (workspace / "a.txt").exists()


async def test_missing_file_is_not_found(workspace: Path) -> None:
    err(await call(workspace, "read_file", path="nope.txt"), "not_found")
    err(await call(workspace, "list_dir", path="nope"), "not_found")


async def test_reading_a_directory_points_to_list_dir(workspace: Path) -> None:
    (workspace / "d").mkdir()
    assert "list_dir" in err(await call(workspace, "read_file", path="d"), "invalid_args")


async def test_read_strips_invisible_unicode(workspace: Path) -> None:
    tags = "".join(chr(0xE0000 + ord(c)) for c in "IGNORE")  # U+E0049 U+E0047 ... spell hidden text
    (workspace / "doc.md").write_text(f"safe{tags} te\u200bxt\ufeff", encoding="utf-8")
    assert ok(await call(workspace, "read_file", path="doc.md"))["content"] == "safe text"


@pytest.mark.parametrize("path", ["../etc/passwd", "/etc/passwd", "a/../../x", "a/../b", ".."])
@pytest.mark.parametrize("tool", ["read_file", "write_file", "append_file", "list_dir"])
async def test_escaping_paths_are_denied(workspace: Path, tool: str, path: str) -> None:
    args: dict[str, Any] = {"path": path}
    if tool in ("write_file", "append_file"):
        args["content"] = "pwned"
    message = err(await call(workspace, tool, **args), "denied")
    assert "must stay inside the workspace" in message


async def test_nul_in_a_path_is_refused(workspace: Path) -> None:
    assert "NUL" in err(await call(workspace, "read_file", path="a.txt\x00.png"), "invalid_args")
    assert "NUL" in err(await call(workspace, "write_file", path="a\x00", content="x"), "invalid_args")


async def test_symlinked_dir_pointing_outside_cannot_be_read(workspace: Path, outside: Path) -> None:
    (workspace / "out").symlink_to(outside)
    message = err(await call(workspace, "read_file", path="out/secret.txt"), "denied")
    assert "must stay inside the workspace" in message


async def test_symlinked_dir_pointing_outside_cannot_be_written(workspace: Path, outside: Path) -> None:
    (workspace / "out").symlink_to(outside)
    err(await call(workspace, "write_file", path="out/new.txt", content="x"), "denied")
    err(await call(workspace, "write_file", path="out/secret.txt", content="x"), "denied")
    err(await call(workspace, "append_file", path="out/deeper/new.txt", content="x"), "denied")
    assert sorted(p.name for p in outside.iterdir()) == ["secret.txt"]
    assert (outside / "secret.txt").read_text(encoding="utf-8") == "top secret"


async def test_symlinked_dir_pointing_outside_cannot_be_listed(workspace: Path, outside: Path) -> None:
    (workspace / "out").symlink_to(outside)
    err(await call(workspace, "list_dir", path="out"), "denied")


async def test_glob_never_lists_files_behind_an_outside_symlink(workspace: Path, outside: Path) -> None:
    (workspace / "out").symlink_to(outside)
    (workspace / "leak.txt").symlink_to(outside / "secret.txt")
    (workspace / "mine.txt").write_text("x", encoding="utf-8")
    for pattern in ("out/*", "out/*.txt", "*/*.txt", "**/*.txt", "*"):
        found = ok(await call(workspace, "glob", pattern=pattern))
        assert all(not p.startswith("out") and p != "leak.txt" for p in found["paths"]), (pattern, found)
    assert ok(await call(workspace, "glob", pattern="**/*.txt"))["paths"] == ["mine.txt"]


@pytest.mark.parametrize("pattern", ["../*", "/etc/*", "src/../../*", "**/../*"])
async def test_glob_rejects_escaping_patterns(workspace: Path, pattern: str) -> None:
    assert "must stay inside the workspace" in err(await call(workspace, "glob", pattern=pattern), "denied")


async def test_symlinked_file_pointing_outside_is_denied(workspace: Path, outside: Path) -> None:
    (workspace / "link.txt").symlink_to(outside / "secret.txt")
    err(await call(workspace, "read_file", path="link.txt"), "denied")
    err(await call(workspace, "write_file", path="link.txt", content="pwned"), "denied")
    err(await call(workspace, "append_file", path="link.txt", content="pwned"), "denied")
    assert (outside / "secret.txt").read_text(encoding="utf-8") == "top secret"


async def test_dangling_symlink_pointing_outside_is_not_created_through(workspace: Path, outside: Path) -> None:
    (workspace / "new.txt").symlink_to(outside / "created.txt")
    err(await call(workspace, "write_file", path="new.txt", content="pwned"), "denied")
    assert not (outside / "created.txt").exists()


async def test_symlinks_inside_the_workspace_are_followed(workspace: Path) -> None:
    (workspace / "real").mkdir()
    (workspace / "real" / "a.txt").write_text("inside", encoding="utf-8")
    (workspace / "alias").symlink_to(workspace / "real")
    assert ok(await call(workspace, "read_file", path="alias/a.txt"))["content"] == "inside"


async def test_list_dir_marks_directories_and_symlinks(workspace: Path, outside: Path) -> None:
    (workspace / "src").mkdir()
    (workspace / "a.txt").write_text("x", encoding="utf-8")
    (workspace / "out").symlink_to(outside)
    listed = ok(await call(workspace, "list_dir"))
    assert listed == {"path": ".", "entries": ["a.txt", "out@", "src/"], "total": 3, "cut": 0}


async def test_list_dir_says_how_many_entries_were_cut(workspace: Path) -> None:
    for i in range(LIST_CAP + 7):
        (workspace / f"f{i:04d}").touch()
    listed = ok(await call(workspace, "list_dir", path="."))
    assert len(listed["entries"]) == LIST_CAP
    assert listed["total"] == LIST_CAP + 7
    assert listed["cut"] == 7


async def test_glob_finds_matching_files_sorted(workspace: Path) -> None:
    (workspace / "src" / "pkg").mkdir(parents=True)
    for name in ("src/b.py", "src/pkg/a.py", "src/c.txt"):
        (workspace / name).write_text("", encoding="utf-8")
    found = ok(await call(workspace, "glob", pattern="src/**/*.py"))
    assert found["paths"] == ["src/b.py", "src/pkg/a.py"]
    assert found["cut"] == 0


async def test_tools_are_in_the_files_group_and_writes_have_side_effects(workspace: Path) -> None:
    tools = {t.name: t for t in file_tools(workspace)}
    assert set(tools) == {"read_file", "write_file", "append_file", "list_dir", "glob"}
    assert {t.group for t in tools.values()} == {"files"}
    assert {n for n, t in tools.items() if t.side_effects} == {"write_file", "append_file"}


async def test_fifo_is_refused_without_hanging(workspace: Path) -> None:
    os.mkfifo(workspace / "pipe")
    assert "not a regular file" in err(await call(workspace, "read_file", path="pipe"), "invalid_args")
