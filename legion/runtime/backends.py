"""Backends start actors. The process backend runs each actor as its own OS process with only its
own credentials file and an environment built from an allow-list (no provider key unless the spec
carries it). A Docker backend plugs in behind the same :class:`Backend` protocol."""

from __future__ import annotations

import asyncio
import contextlib
import os
import resource
import signal
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

__all__ = ["ActorProcessSpec", "Backend", "ProcessBackend", "RunningActor", "base_environment"]

_PASS_THROUGH = ("PATH", "HOME", "LANG", "LC_ALL", "TZ", "TMPDIR", "PYTHONPATH", "VIRTUAL_ENV", "LEGION_UVLOOP")


def base_environment(environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment every actor gets: a short allow-list, never LEGION_SYSTEM_* or LEGION_CRED_*."""
    src = os.environ if environ is None else environ
    return {k: src[k] for k in _PASS_THROUGH if k in src}


@dataclass(frozen=True, slots=True)
class ActorProcessSpec:
    name: str
    kind: str
    module: str  # run as `python -m <module> --fleet-dir DIR --name NAME`
    fleet_dir: Path
    env: Mapping[str, str] = field(default_factory=dict, repr=False)  # added to base_environment()
    log_path: Path | None = None
    memory_mb: int | None = None  # RLIMIT_AS of the process
    open_files: int | None = None  # RLIMIT_NOFILE of the process


def _limiter(spec: ActorProcessSpec) -> Callable[[], None] | None:
    """A pre-exec function applying the spec's rlimits in the child (None when there are none)."""
    limits: list[tuple[int, int]] = []
    if spec.memory_mb is not None:
        limits.append((resource.RLIMIT_AS, spec.memory_mb * 1024 * 1024))
    if spec.open_files is not None:
        limits.append((resource.RLIMIT_NOFILE, spec.open_files))
    if not limits:
        return None

    def apply() -> None:
        for which, value in limits:
            resource.setrlimit(which, (value, value))

    return apply


class RunningActor(Protocol):
    @property
    def pid(self) -> int | None: ...
    async def wait(self) -> int: ...
    async def stop(self, grace: float) -> int: ...


class Backend(Protocol):
    async def start(self, spec: ActorProcessSpec) -> RunningActor: ...


@dataclass(slots=True)
class _Process:
    proc: asyncio.subprocess.Process

    @property
    def pid(self) -> int | None:
        return self.proc.pid

    async def wait(self) -> int:
        return await self.proc.wait()

    async def stop(self, grace: float) -> int:
        """SIGTERM (the actor runs its shutdown sequence), SIGKILL after ``grace``. Safe twice."""
        if self.proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self.proc.send_signal(signal.SIGTERM)
            try:
                async with asyncio.timeout(grace):
                    return await self.proc.wait()
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    self.proc.kill()
        return await self.proc.wait()


class ProcessBackend:
    """Each actor its own OS process, in its own session (Ctrl-C reaches only the launcher)."""

    async def start(self, spec: ActorProcessSpec) -> RunningActor:
        env = {**base_environment(), **spec.env}
        args = [sys.executable, "-m", spec.module, "--fleet-dir", str(spec.fleet_dir), "--name", spec.name]
        log = spec.log_path
        if log is not None:
            log.parent.mkdir(parents=True, exist_ok=True)
        with open(log, "ab") if log is not None else contextlib.nullcontext() as out:  # noqa: ASYNC230
            proc = await asyncio.create_subprocess_exec(
                *args,
                env=env,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=out if out is not None else asyncio.subprocess.DEVNULL,
                stderr=asyncio.subprocess.STDOUT if out is not None else asyncio.subprocess.DEVNULL,
                start_new_session=True,
                preexec_fn=_limiter(spec),
            )
        return _Process(proc)
