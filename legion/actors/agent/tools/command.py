"""run_command: run a shell command in the agent's workspace.

Only for backends that isolate the agent (a container or VM per agent) or for fleets that allow it
explicitly: the command runs with the agent host's user and can read whatever that user can read.
The tool itself only narrows what is easy to get wrong:

- ``/bin/sh -c`` with the workspace as working directory and a minimal environment (``PATH``,
  ``HOME`` set to the workspace, ``LANG``), so no secret in the host's environment reaches it;
- a new session, so the shell and everything it starts form one process group; the whole group is
  killed on timeout and when the shell exits (background processes do not outlive the call);
- stdin is ``/dev/null``; stdout and stderr together are cut to ``output_cap`` bytes (head and tail
  kept, the cut is named in the output); invisible Unicode is stripped before the model reads it.

A timeout is the ``timeout`` :class:`ToolError` naming the limit, with the partial output.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
from pathlib import Path
from typing import Any, Final

from pydantic import Field

from legion.actors.agent.sanitize import strip_invisible
from legion.actors.agent.tools.base import Params, Tool, ToolContext, ToolError
from legion.contracts.errors import ConfigError

__all__ = ["command_tool"]

_DEFAULT_PATH: Final = "/usr/local/bin:/usr/bin:/bin"
_DRAIN_S: Final = 5.0
"""After the group is killed: how long to wait for the pipes to close (a process that left the group
may still hold them; its output is then given up)."""
_TIMEOUT_OUTPUT_CAP: Final = 4_000
"""Bytes of partial output in a timeout error (errors are not cut by the tool result cap)."""


class CommandParams(Params):
    command: str = Field(min_length=1, description="Shell command, run with /bin/sh -c in the workspace.")
    timeout_s: float | None = Field(
        None, gt=0, description="Seconds before the command is killed (default and maximum: the tool's limit)."
    )


def command_tool(workspace: Path, *, timeout_s: float = 60, output_cap: int = 16_000) -> Tool:
    """The run_command tool for ``workspace``; ``timeout_s`` is the default and maximum per call."""
    if timeout_s <= 0 or output_cap < 2:
        raise ConfigError(f"run_command timeout_s={timeout_s} and output_cap={output_cap} need to be > 0 and >= 2")
    cwd = workspace.resolve(strict=True)

    async def run_command(params: Any, ctx: ToolContext) -> Any:
        if "\x00" in params.command:
            raise ToolError("invalid_args", "command contains a NUL byte; pass plain shell text")
        limit = min(params.timeout_s or timeout_s, timeout_s)
        return await _run(params.command, cwd, limit, output_cap)

    return Tool(
        name="run_command",
        description=(
            f"Run a shell command in the workspace (/bin/sh -c). Returns exit_code, stdout and stderr "
            f"(together at most {output_cap} bytes). Killed after {timeout_s:g}s or timeout_s if smaller."
        ),
        params=CommandParams,
        run=run_command,
        side_effects=True,
        group="command",
    )


class _Capture:
    """Keeps the first and the last ``cap`` bytes of a stream and counts the rest."""

    def __init__(self, cap: int) -> None:
        self.cap = cap
        self.head = bytearray()
        self.tail = bytearray()
        self.total = 0

    def feed(self, chunk: bytes) -> None:
        self.total += len(chunk)
        room = self.cap - len(self.head)
        self.head += chunk[:room]
        self.tail += chunk[room:]
        if len(self.tail) > self.cap:
            del self.tail[: len(self.tail) - self.cap]

    def text(self, budget: int) -> str:
        """At most ``budget`` bytes of the stream as text: its head and tail around a note of the cut."""
        kept = bytes(self.head + self.tail)  # contiguous unless more than 2 * cap bytes came
        if self.total <= budget:
            return strip_invisible(kept.decode("utf-8", errors="replace"))
        keep_head = budget // 2
        keep_tail = budget - keep_head
        head = kept[:keep_head].decode("utf-8", errors="replace")
        tail = kept[len(kept) - keep_tail :].decode("utf-8", errors="replace")
        return strip_invisible(f"{head}\n[... {self.total - budget} bytes cut ...]\n{tail}")


def _budgets(out: int, err: int, cap: int) -> tuple[int, int]:
    """Split ``cap`` bytes between stdout and stderr: a short stream keeps all, the other the rest."""
    if out + err <= cap:
        return out, err
    half = cap // 2
    if err <= half:
        return cap - err, err
    if out <= half:
        return out, cap - out
    return half, cap - half


class _Protocol(asyncio.SubprocessProtocol):
    """Captures both pipes; ``exited`` is set when the shell exits, ``closed`` when every pipe closed too.

    (``Process.wait()`` in Python 3.11 only returns once the pipes are closed, which a background
    process holding them would delay until the timeout; hence our own protocol.)
    """

    def __init__(self, cap: int) -> None:
        loop = asyncio.get_running_loop()
        self.out = _Capture(cap)
        self.err = _Capture(cap)
        self.exited: asyncio.Future[None] = loop.create_future()
        self.closed: asyncio.Future[None] = loop.create_future()

    def pipe_data_received(self, fd: int, data: bytes | str) -> None:
        chunk = data.encode() if isinstance(data, str) else data
        (self.out if fd == 1 else self.err).feed(chunk)

    def process_exited(self) -> None:
        if not self.exited.done():
            self.exited.set_result(None)

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.closed.done():
            self.closed.set_result(None)


async def _run(command: str, cwd: Path, limit: float, cap: int) -> dict[str, Any]:
    env = {"PATH": os.environ.get("PATH") or _DEFAULT_PATH, "HOME": str(cwd), "LANG": "C.UTF-8"}
    transport, proto = await asyncio.get_running_loop().subprocess_exec(
        lambda: _Protocol(cap),
        "/bin/sh",
        "-c",
        command,
        cwd=cwd,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    timed_out = False
    try:
        async with asyncio.timeout(limit):
            await asyncio.shield(proto.exited)
    except TimeoutError:
        timed_out = True
    finally:
        _kill_group(transport.get_pid())  # on timeout, on cancellation, and leftover background processes
        try:
            async with asyncio.timeout(_DRAIN_S):
                await asyncio.shield(proto.closed)
        except TimeoutError:
            pass  # a process that left the group holds a pipe; its output is given up
        transport.close()
    out, err = proto.out, proto.err
    if timed_out:
        out_cap, err_cap = _budgets(out.total, err.total, min(cap, _TIMEOUT_OUTPUT_CAP))
        raise ToolError(
            "timeout",
            f"command did not finish within {limit:g}s and was killed with its process group; "
            f"partial stdout: {out.text(out_cap)!r}; partial stderr: {err.text(err_cap)!r}",
            retryable=True,
        )
    out_cap, err_cap = _budgets(out.total, err.total, cap)
    return {"exit_code": transport.get_returncode(), "stdout": out.text(out_cap), "stderr": err.text(err_cap)}


def _kill_group(pgid: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signal.SIGKILL)
