"""The process backend: each actor its own OS process, in its own session (Ctrl-C reaches only the
launcher), with only its own credentials file and an environment built from an allow-list (no
provider key unless the spec carries it), under the spec's rlimits.

An actor is named by ``<pid>:<start time>`` (:mod:`legion.runtime.fleet.procs`), so a pid reused by
another program is never taken for the actor. Its leftovers after a launcher died are found by
command line: ``python -m <module> --fleet-dir <this fleet> ...``.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import os
import resource
import signal
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from legion.runtime.config import state_dir_of
from legion.runtime.fleet.backends.base import ActorRef, ActorSpec, RunningActor
from legion.runtime.fleet.procs import cmdline, start_time, terminate
from legion.runtime.host.hardening import SECRETS_ON_STDIN

__all__ = ["BACKEND", "ProcessBackend", "base_environment", "pid_of", "process_ref"]

BACKEND: Final = "process"
_PASS_THROUGH = ("PATH", "HOME", "LANG", "LC_ALL", "TZ", "TMPDIR", "PYTHONPATH", "VIRTUAL_ENV", "LEGION_UVLOOP")


def base_environment(environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment every actor gets: a short allow-list, never LEGION_SYSTEM_* or LEGION_CRED_*."""
    src = os.environ if environ is None else environ
    return {k: src[k] for k in _PASS_THROUGH if k in src}


def process_ref(pid: int) -> ActorRef:
    """The ref of the live process ``pid`` (its start time pins it against pid reuse)."""
    return ActorRef(backend=BACKEND, id=f"{pid}:{start_time(pid) or 0}", label=str(pid))


def pid_of(ref: ActorRef) -> int:
    """The pid in a process ref (tests and the host tools that read ``/proc`` need it)."""
    return int(ref.id.split(":", 1)[0])


def _alive(ref: ActorRef) -> bool:
    pid, _, started = ref.id.partition(":")
    now = start_time(int(pid))
    return now is not None and str(now) == started


def _limiter(spec: ActorSpec) -> Callable[[], None] | None:
    """A pre-exec function applying the spec's rlimits in the child (None when there are none)."""
    limits: list[tuple[int, int]] = []
    if spec.limits is not None and spec.limits.memory_mb is not None:
        limits.append((resource.RLIMIT_AS, spec.limits.memory_mb * 1024 * 1024))
    if spec.limits is not None and spec.limits.open_files is not None:
        limits.append((resource.RLIMIT_NOFILE, spec.limits.open_files))
    if not limits:
        return None

    def apply() -> None:
        for which, value in limits:
            resource.setrlimit(which, (value, value))

    return apply


@dataclass(slots=True)
class _Process:
    proc: asyncio.subprocess.Process
    ref: ActorRef

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


def _belongs_to(argv: list[str], root: str) -> bool:
    """An actor of this fleet: ``python -m <module> --fleet-dir <root> ...``."""
    if "-m" not in argv:
        return False
    return any(flag == "--fleet-dir" and os.path.abspath(value) == root for flag, value in itertools.pairwise(argv))


class ProcessBackend:
    """Each actor its own OS process."""

    name = BACKEND

    async def start(self, spec: ActorSpec) -> RunningActor:
        """Secrets go on the child's stdin as one JSON object (read once, then closed), so no other
        process sees them in ``/proc/<pid>/environ``."""
        env = {**base_environment(), **spec.env}
        if spec.secrets:
            env[SECRETS_ON_STDIN] = "1"
        args = [sys.executable, "-m", spec.module, "--fleet-dir", str(spec.fleet_dir), "--name", spec.name]
        log = spec.log_path or self.log_path(spec.fleet_dir, spec.name)
        log.parent.mkdir(parents=True, exist_ok=True)
        with open(log, "ab") as out:  # noqa: ASYNC230 - opening a log file does not block
            proc = await asyncio.create_subprocess_exec(
                *args,
                env=env,
                stdin=asyncio.subprocess.PIPE if spec.secrets else asyncio.subprocess.DEVNULL,
                stdout=out,
                stderr=asyncio.subprocess.STDOUT,
                start_new_session=True,
                preexec_fn=_limiter(spec),
            )
        if spec.secrets:
            assert proc.stdin is not None
            proc.stdin.write(json.dumps(dict(spec.secrets)).encode())
            with contextlib.suppress(ConnectionError):  # it died at once: its exit says why
                await proc.stdin.drain()
            proc.stdin.close()
        return _Process(proc, process_ref(proc.pid))

    async def restart(self, running: RunningActor, spec: ActorSpec, grace: float) -> RunningActor:
        await running.stop(grace)
        return await self.start(spec)

    def alive(self, ref: ActorRef) -> bool:
        return ref.backend == BACKEND and _alive(ref)

    def stop(self, refs: Sequence[ActorRef], *, grace: float) -> list[ActorRef]:
        live = [ref for ref in refs if self.alive(ref)]
        killed = set(terminate([pid_of(ref) for ref in live], grace=grace))
        return [ref for ref in live if pid_of(ref) in killed]

    def leftovers(self, fleet_dir: Path) -> list[ActorRef]:
        root = os.path.abspath(fleet_dir)
        me = os.getpid()
        found = []
        with contextlib.suppress(OSError):
            for entry in Path("/proc").iterdir():
                if not entry.name.isdigit() or int(entry.name) == me:
                    continue
                argv = cmdline(int(entry.name))
                if _belongs_to(argv, root):
                    found.append(process_ref(int(entry.name)))
        return [ref for ref in found if _alive(ref)]

    def log_path(self, fleet_dir: Path, name: str) -> Path:
        return state_dir_of(fleet_dir) / "logs" / f"{name}.log"
