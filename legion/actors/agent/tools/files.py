"""Workspace file tools: read_file, write_file, append_file, list_dir and glob, confined to one directory.

Every path the model passes is relative to the workspace. A path is refused (``denied``) when it is
absolute, has a ``..`` component, or resolves (following symlinks, in parent directories and in the
last component) to a location outside the workspace; NUL bytes are ``invalid_args``. Files are opened
on their resolved location with ``O_NOFOLLOW``, so a last component swapped for a symlink between the
check and the open fails instead of being followed. (A parent directory swapped for a symlink in that
window is not covered; the agent's backend sandbox is the boundary for a hostile concurrent process.)

Caps per call: read_file returns at most :data:`READ_CAP` characters (``offset``/``limit`` page through
bigger files), write_file and append_file take at most :data:`WRITE_CAP` bytes, list_dir and glob list
at most :data:`LIST_CAP` entries and say how many were cut. Text read from files goes through
:func:`~legion.actors.agent.sanitize.strip_invisible`, so the model never sees invisible Unicode.

The blocking file calls run in :func:`asyncio.to_thread`: they are local but may touch a large file or
a large tree (glob), and must not stall the event loop.
"""

from __future__ import annotations

import asyncio
import errno
import os
import stat
from collections.abc import Callable, Iterator
from pathlib import Path, PurePosixPath
from typing import Any, Final, TypeVar

from pydantic import Field

from legion.actors.agent.sanitize import strip_invisible
from legion.actors.agent.tools.base import Params, Tool, ToolContext, ToolError

__all__ = ["LIST_CAP", "READ_CAP", "READ_DEFAULT", "WRITE_CAP", "file_tools"]

READ_CAP: Final = 64_000
"""Characters read_file returns at most per call."""
READ_DEFAULT: Final = 12_000
"""Characters read_file returns when no ``limit`` is given: small enough that the JSON result fits the
tool result cap (``RESULT_CAP``) the model sees."""
WRITE_CAP: Final = 1024 * 1024
"""Bytes (UTF-8) write_file and append_file take per call."""
LIST_CAP: Final = 500
"""Entries list_dir and glob return per call."""

_CHUNK: Final = 1 << 20
_T = TypeVar("_T")


class ReadParams(Params):
    path: str = Field(description="File path relative to the workspace.")
    offset: int = Field(0, ge=0, description="Character offset to start reading at.")
    limit: int = Field(READ_DEFAULT, ge=1, le=READ_CAP, description=f"Characters to read (at most {READ_CAP}).")


class WriteParams(Params):
    path: str = Field(description="File path relative to the workspace; missing parent directories are created.")
    content: str = Field(description=f"Text to write (UTF-8, at most {WRITE_CAP} bytes per call).")


class ListParams(Params):
    path: str = Field(".", description="Directory path relative to the workspace.")


class GlobParams(Params):
    pattern: str = Field(description="Glob pattern relative to the workspace, e.g. 'src/**/*.py'.")


def file_tools(workspace: Path) -> list[Tool]:
    """The file tools of one agent, confined to ``workspace`` (which must exist)."""
    root = workspace.resolve(strict=True)

    async def read_file(params: Any, ctx: ToolContext) -> Any:
        return await _in_thread(lambda: _read(root, params))

    async def write_file(params: Any, ctx: ToolContext) -> Any:
        return await _in_thread(lambda: _write(root, params, append=False))

    async def append_file(params: Any, ctx: ToolContext) -> Any:
        return await _in_thread(lambda: _write(root, params, append=True))

    async def list_dir(params: Any, ctx: ToolContext) -> Any:
        return await _in_thread(lambda: _list(root, params))

    async def glob(params: Any, ctx: ToolContext) -> Any:
        return await _in_thread(lambda: _glob(root, params))

    return [
        Tool(
            name="read_file",
            description=(
                "Read a text file in the workspace. Returns up to `limit` characters from `offset`, the file "
                "size in bytes and `next_offset` when more text follows."
            ),
            params=ReadParams,
            run=read_file,
            group="files",
        ),
        Tool(
            name="write_file",
            description="Create or overwrite a text file in the workspace.",
            params=WriteParams,
            run=write_file,
            side_effects=True,
            group="files",
        ),
        Tool(
            name="append_file",
            description="Append text to a file in the workspace (created if missing).",
            params=WriteParams,
            run=append_file,
            side_effects=True,
            group="files",
        ),
        Tool(
            name="list_dir",
            description=(
                f"List a directory in the workspace (at most {LIST_CAP} entries). Directories end in '/', "
                "symlinks in '@'."
            ),
            params=ListParams,
            run=list_dir,
            group="files",
        ),
        Tool(
            name="glob",
            description=f"Find workspace files matching a glob pattern (at most {LIST_CAP} paths, sorted).",
            params=GlobParams,
            run=glob,
            group="files",
        ),
    ]


async def _in_thread(fn: Callable[[], _T]) -> _T:
    try:
        return await asyncio.to_thread(fn)
    except ToolError:
        raise
    except OSError as exc:
        raise _os_error(exc) from None


def _os_error(exc: OSError) -> ToolError:
    name = exc.filename if isinstance(exc.filename, str) and not exc.filename.startswith("/") else "the path"
    if exc.errno in (errno.ENOENT, errno.ENOTDIR):
        return ToolError("not_found", f"{name} does not exist; use list_dir or glob to see what is there")
    if exc.errno == errno.EISDIR:
        return ToolError("invalid_args", f"{name} is a directory; use list_dir for directories")
    if exc.errno == errno.ELOOP:
        return ToolError("denied", f"{name} is a symlink that changed while it was opened; paths must stay inside")
    return ToolError("failed", f"{name}: {exc.strerror or type(exc).__name__}")


def _relative(raw: str, *, what: str = "path") -> PurePosixPath:
    """The model's path as a relative path, or a ToolError for the forms that are never allowed."""
    if "\x00" in raw:
        raise ToolError("invalid_args", f"{what} {raw!r} contains a NUL byte; pass a plain relative path")
    rel = PurePosixPath(raw or ".")
    if rel.is_absolute():
        raise ToolError("denied", f"{what} {raw!r} is absolute; the path must stay inside the workspace")
    if ".." in rel.parts:
        raise ToolError("denied", f"{what} {raw!r} contains '..'; the path must stay inside the workspace")
    return rel


def _inside(root: Path, path: Path) -> bool:
    return path == root or path.is_relative_to(root)


def _resolve(root: Path, raw: str) -> tuple[Path, str]:
    """The resolved location of ``raw`` inside ``root`` and its display name, or ``denied``."""
    rel = _relative(raw)
    try:
        resolved = (root / rel).resolve()  # follows every symlink, dangling ones too
    except RuntimeError:  # a symlink loop (Python 3.11 raises RuntimeError for it)
        raise ToolError("failed", f"{raw!r} is a symlink loop") from None
    if not _inside(root, resolved):
        raise ToolError("denied", f"{raw!r} resolves outside the workspace; the path must stay inside the workspace")
    return resolved, rel.as_posix()


def _inside_resolved(root: Path, path: Path) -> bool:
    try:
        return _inside(root, path.resolve())
    except RuntimeError:  # a symlink loop
        return False


def _read(root: Path, params: ReadParams) -> dict[str, Any]:
    path, name = _resolve(root, params.path)
    fd = _open(path, name, os.O_RDONLY)
    with os.fdopen(fd, encoding="utf-8", errors="replace", newline="") as f:
        size = os.fstat(f.fileno()).st_size
        skip = params.offset
        while skip:
            got = f.read(min(skip, _CHUNK))
            if not got:
                break
            skip -= len(got)
        text = f.read(params.limit)
        more = bool(f.read(1))
    result: dict[str, Any] = {"path": name, "size_bytes": size, "offset": params.offset, "chars": len(text)}
    if skip:
        result["note"] = f"offset {params.offset} is past the end of the file"
    result["next_offset"] = params.offset + len(text) if more else None
    result["content"] = strip_invisible(text)  # last, so a cut by the result cap only shortens the content
    return result


def _write(root: Path, params: WriteParams, *, append: bool) -> dict[str, Any]:
    data = params.content.encode("utf-8")
    if len(data) > WRITE_CAP:
        raise ToolError(
            "invalid_args",
            f"content is {len(data)} bytes; at most {WRITE_CAP} bytes per call, write the rest with append_file",
        )
    path, name = _resolve(root, params.path)
    if path == root:
        raise ToolError("invalid_args", f"{params.path!r} is the workspace directory; name a file")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ToolError("failed", f"cannot create the directory for {name}: {exc.strerror}") from None
    mode = os.O_WRONLY | os.O_CREAT | (os.O_APPEND if append else os.O_TRUNC)
    fd = _open(path, name, mode)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
        f.flush()
        size = os.fstat(f.fileno()).st_size
    return {"path": name, "bytes_written": len(data), "size_bytes": size}


def _open(path: Path, name: str, flags: int) -> int:
    try:
        # O_NONBLOCK: opening a FIFO must not hang the call; it has no effect on regular files.
        fd = os.open(path, flags | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, 0o644)
    except OSError as exc:
        exc.filename = name
        raise
    mode = os.fstat(fd).st_mode
    if not stat.S_ISREG(mode):
        os.close(fd)
        if stat.S_ISDIR(mode):
            raise ToolError("invalid_args", f"{name} is a directory; use list_dir for directories")
        raise ToolError("invalid_args", f"{name} is not a regular file")
    return fd


def _list(root: Path, params: ListParams) -> dict[str, Any]:
    path, name = _resolve(root, params.path)
    try:
        with os.scandir(path) as it:
            entries = sorted(it, key=lambda e: e.name)
    except OSError as exc:
        exc.filename = name
        raise
    shown = [strip_invisible(e.name) + _suffix(e) for e in entries[:LIST_CAP]]
    return {"path": name, "entries": shown, "total": len(entries), "cut": max(0, len(entries) - LIST_CAP)}


def _suffix(entry: os.DirEntry[str]) -> str:
    if entry.is_symlink():
        return "@"
    return "/" if entry.is_dir(follow_symlinks=False) else ""


def _glob(root: Path, params: GlobParams) -> dict[str, Any]:
    rel = _relative(params.pattern, what="pattern")
    if rel == PurePosixPath("."):
        raise ToolError("invalid_args", "pattern is empty; pass a pattern such as '**/*.py'")
    found = sorted(_matches(root, str(rel)))
    total = len(found)
    return {"pattern": params.pattern, "paths": found[:LIST_CAP], "total": total, "cut": max(0, total - LIST_CAP)}


def _matches(root: Path, pattern: str) -> Iterator[str]:
    try:
        candidates = root.glob(pattern)
        for path in candidates:
            if _inside_resolved(root, path):  # never list what a symlink makes visible from outside
                yield strip_invisible(path.relative_to(root).as_posix())
    except ValueError as exc:
        raise ToolError("invalid_args", f"pattern {pattern!r} is not a valid glob: {exc}") from None
