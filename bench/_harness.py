"""The servers of the broker benchmark and the thread that hosts them.

Two nats-server processes run side by side for the whole benchmark:

- **legion**: the fleet's server from the public test kit (:class:`legion.testing.NatsTestServer`):
  operator-mode accounts LEGION / AGENTS / INGEST, streams provisioned by the launcher's code;
- **baseline**: a plain nats-server with JetStream and no auth at all, started here from
  :func:`legion.broker.find_nats_server` with its own config and store dir, and the same streams.

Both are owned by an asyncio loop in a daemon thread (:class:`ServerHost`), so every measurement can
run under an event loop of its own (asyncio or uvloop) against the same two servers.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import threading
from collections.abc import Coroutine
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from legion.broker import Broker, ConnectSpec, FleetAuth, FleetLayout, find_nats_server, provision
from legion.testing import NatsTestServer

__all__ = ["BenchServers", "PlainNats", "ServerHost"]

T = TypeVar("T")

_READY = "Server is ready"
_LISTEN = re.compile(r"Listening for client connections on (\S+):(\d+)")
_MAX_PAYLOAD = 1024 * 1024  # the same limits as legion.broker.NatsServerSpec's defaults
_MAX_MEMORY_STORE = 256 * 1024 * 1024


class ServerHost:
    """A daemon thread running an asyncio loop; :meth:`call` runs a coroutine there and waits."""

    def __init__(self) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="bench-servers", daemon=True)
        self._thread.start()

    def call(self, coro: Coroutine[Any, Any, T], *, timeout: float = 60.0) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout)

    def close(self) -> None:
        if self._loop.is_closed():
            return
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)
        if not self._thread.is_alive():
            self._loop.close()


class PlainNats:
    """nats-server with JetStream, no auth, 127.0.0.1 and a random port, store under ``root``."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.port: int | None = None
        self._proc: asyncio.subprocess.Process | None = None
        self._reader: asyncio.Task[None] | None = None
        self._tail: list[str] = []

    @property
    def url(self) -> str:
        if self.port is None:
            raise RuntimeError("the baseline nats-server is not running")
        return f"nats://127.0.0.1:{self.port}"

    def config(self) -> str:
        store = self.root / "jetstream"
        return "\n".join(
            [
                'server_name: "bench_baseline"',
                'host: "127.0.0.1"',
                "port: -1",
                f"max_payload: {_MAX_PAYLOAD}",
                "jetstream {",
                f"  store_dir: {json.dumps(str(store))}",
                f"  max_memory_store: {_MAX_MEMORY_STORE}",
                "}",
                "",
            ]
        )

    async def start(self, *, ready_timeout: float = 20.0) -> str:
        (self.root / "jetstream").mkdir(parents=True, exist_ok=True)
        conf = self.root / "nats-server.conf"
        conf.write_text(self.config(), encoding="utf-8")
        self._proc = await asyncio.create_subprocess_exec(
            str(find_nats_server()),
            "-c",
            str(conf),
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE,
        )
        ready: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self._reader = asyncio.create_task(self._read(self._proc, ready), name="baseline-nats-log")
        try:
            async with asyncio.timeout(ready_timeout):
                self.port = await ready
        except BaseException:
            await self.stop()
            raise RuntimeError("baseline nats-server did not become ready:\n" + "\n".join(self._tail[-20:])) from None
        return self.url

    async def _read(self, proc: asyncio.subprocess.Process, ready: asyncio.Future[int]) -> None:
        assert proc.stderr is not None
        port: int | None = None
        with (self.root / "nats-server.log").open("a", encoding="utf-8") as out:
            while raw := await proc.stderr.readline():
                line = raw.decode("utf-8", "replace").rstrip()
                out.write(line + "\n")
                self._tail = [*self._tail[-39:], line]
                if ready.done():
                    continue
                if m := _LISTEN.search(line):
                    port = int(m.group(2))
                elif _READY in line and port is not None:
                    ready.set_result(port)
        if not ready.done():
            ready.set_exception(RuntimeError(f"nats-server exited with code {await proc.wait()}"))

    async def stop(self) -> None:
        """SIGTERM, then SIGKILL after 10 s. Safe to call twice."""
        proc, self._proc = self._proc, None
        self.port = None
        if proc is not None and proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                proc.terminate()
            try:
                async with asyncio.timeout(10):
                    await proc.wait()
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()
                await proc.wait()
        reader, self._reader = self._reader, None
        if reader is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await reader


async def _provision_plain(url: str) -> None:
    """The baseline gets the same streams (EVENTS, INBOX workqueue, LEDGER) as a Legion fleet."""
    async with await Broker.connect(ConnectSpec(url=url, name="bench-baseline-setup")) as broker:
        await provision(broker, FleetLayout())


@dataclass
class BenchServers:
    """Both servers, started by :meth:`start` and always stopped by :meth:`stop` (idempotent)."""

    root: Path
    host: ServerHost
    legion: NatsTestServer | None = None
    baseline: PlainNats | None = None

    def start(self) -> None:
        self.legion = NatsTestServer(state_dir=self.root / "legion")
        self.host.call(self.legion.start())
        self.baseline = PlainNats(self.root / "baseline")
        self.host.call(self.baseline.start())
        self.host.call(_provision_plain(self.baseline.url))

    def stop(self) -> None:
        legion, self.legion = self.legion, None
        baseline, self.baseline = self.baseline, None
        try:
            if legion is not None:
                self.host.call(legion.stop())
        finally:
            if baseline is not None:
                self.host.call(baseline.stop())

    @property
    def auth(self) -> FleetAuth:
        assert self.legion is not None
        return self.legion.auth

    @property
    def legion_url(self) -> str:
        assert self.legion is not None
        return self.legion.url

    @property
    def admin_creds(self) -> Path:
        assert self.legion is not None
        return self.legion.admin_creds

    @property
    def baseline_url(self) -> str:
        assert self.baseline is not None
        return self.baseline.url
