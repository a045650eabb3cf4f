"""The console's data commands: ``legion costs`` (the ledger's CostsQuery, through the one ledger
client) and ``legion bb`` (a project's
blackboard, the KV bucket ``bb_<project>``), both over the admin connection of the running fleet.

Blackboard values are JSON, as agents write them (``bb_write``): ``put`` stores a JSON document as
given and anything else as a JSON string. Keys are dotted tokens of ``[A-Za-z0-9_=/-]``, never
wildcards, the same rule as the agents' tools.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Final, Literal

import msgspec
import nats.js.errors
from nats.js.kv import KV_DEL, KV_OP, KV_PURGE, KeyValue

from legion.broker import Broker, bucket_name
from legion.broker.reader import ReadSpec, StreamReader
from legion.cli.console.connect import FleetNotRunning, admin
from legion.cli.console.events import until_stopped
from legion.cli.console.hints import hint
from legion.contracts.blackboard import MAX_KV_VALUE_BYTES, decode_kv_value, validate_kv_key
from legion.contracts.errors import ConfigError, NotFound
from legion.contracts.ledger import CostsQuery, CostsReport
from legion.runtime.clients import LedgerClient, LedgerUnavailable
from legion.runtime.config import load_config

__all__ = [
    "BbEntry",
    "BbWork",
    "Blackboard",
    "CostsSpec",
    "FleetNotRunning",
    "costs",
    "costs_json",
    "encode_value",
    "resolve_project",
    "run_until_stopped",
    "validate_key",
    "with_blackboard",
]

MAX_VALUE_BYTES: Final = MAX_KV_VALUE_BYTES
_json = msgspec.json.Encoder(decimal_format="string")


# -- costs ------------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class CostsSpec:
    fleet_dir: Path = Path(".")
    agent: str | None = None
    project: str | None = None
    by: Literal["day", "month"] = "day"
    timeout_s: float = 10.0


async def costs(spec: CostsSpec) -> CostsReport:
    """Ask the fleet's ledger for spend grouped by day or month."""
    query = CostsQuery(agent=spec.agent, project=spec.project, by=spec.by)
    async with admin(spec.fleet_dir, "legion-costs") as broker:
        try:
            return await LedgerClient(broker).costs(query, timeout_s=spec.timeout_s)
        except LedgerUnavailable as exc:
            raise FleetNotRunning(
                f"the fleet's NATS is up but {exc}; or restart it: {hint('restart ledger', spec.fleet_dir)}"
            ) from None


def costs_json(report: CostsReport) -> str:
    return _json.encode({"rows": report.rows, "total_usd": report.total_usd}).decode()


# -- blackboard ----------------------------------------------------------------------------------------
def resolve_project(fleet_dir: Path, project: str | None) -> str:
    """``project`` if the fleet has it; none given: the fleet's only project."""
    projects = load_config(fleet_dir.resolve()).all_projects()
    names = ", ".join(projects) or "none"
    if project is not None:
        bucket_name(project)  # validates the token
        if project not in projects:
            raise ConfigError(f"project {project!r} is not in legion.yaml (projects: {names})")
        return project
    if len(projects) == 1:
        return projects[0]
    if not projects:
        raise ConfigError("the fleet has no project, so no blackboard: add projects: to legion.yaml")
    raise ConfigError(f"the fleet has several projects ({names}): choose one with --project")


def validate_key(key: str, *, what: str = "key") -> str:
    return validate_kv_key(key, what=what)


def encode_value(value: str) -> bytes:
    """A JSON document as given; any other text as a JSON string; ``@path`` reads the text from a file."""
    if value.startswith("@"):
        path = Path(value[1:])
        if not path.is_file():
            raise ConfigError(f"value file {path} does not exist (give JSON, a string, or @file)")
        value = path.read_text(encoding="utf-8")
    try:
        data = json.dumps(json.loads(value), ensure_ascii=False).encode()
    except json.JSONDecodeError:
        data = json.dumps(value, ensure_ascii=False).encode()
    if len(data) > MAX_VALUE_BYTES:
        raise ConfigError(f"the value is {len(data)} bytes; the most a key holds is {MAX_VALUE_BYTES}")
    return data


@dataclass(frozen=True, slots=True)
class BbEntry:
    key: str
    revision: int
    operation: str = "PUT"
    value: Any = None
    at: str = ""

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def _at(created: Any) -> str:
    return created.isoformat() if isinstance(created, datetime) else str(created or "")


class Blackboard:
    """One project's bucket through the admin connection: ``async with Blackboard.open(dir, project)``."""

    def __init__(self, broker: Broker, kv: KeyValue, project: str) -> None:
        self.broker = broker
        self.kv = kv
        self.project = project
        self.bucket = bucket_name(project)

    @classmethod
    @asynccontextmanager
    async def open(cls, fleet_dir: Path, project: str | None) -> AsyncIterator[Blackboard]:
        name = resolve_project(fleet_dir, project)
        async with admin(fleet_dir, "legion-bb") as broker:
            try:
                kv = await broker.js.key_value(bucket_name(name))
            except nats.js.errors.BucketNotFoundError:
                raise NotFound(f"no bucket {bucket_name(name)}: run `legion up` to provision it") from None
            yield cls(broker, kv, name)

    async def get(self, key: str) -> BbEntry:
        validate_key(key)
        try:
            e = await self.kv.get(key)
        except nats.js.errors.KeyNotFoundError:
            raise NotFound(f"no key {key!r} on the blackboard of {self.project!r}") from None
        return BbEntry(key=key, revision=e.revision or 0, value=decode_kv_value(e.value), at=_at(e.created))

    async def put(self, key: str, value: str) -> int:
        validate_key(key)
        return int(await self.kv.put(key, encode_value(value)))

    async def delete(self, key: str) -> None:
        """Delete KEY (a delete marker: its history stays readable). NotFound if it has no value."""
        validate_key(key)
        try:
            await self.kv.get(key)
        except nats.js.errors.KeyNotFoundError:
            raise NotFound(f"no key {key!r} on the blackboard of {self.project!r}") from None
        await self.kv.delete(key)

    async def keys(self, prefix: str = "") -> list[str]:
        if prefix:
            validate_key(prefix, what="prefix")
        out: list[str] = []
        for pattern in [prefix, f"{prefix}.>"] if prefix else [">"]:
            watcher = await self.kv.watch(pattern, meta_only=True, ignore_deletes=True)
            try:
                while True:
                    entry = await watcher.updates(timeout=10)  # type: ignore[no-untyped-call]  # nats-py: unannotated
                    if entry is None:
                        break
                    out.append(entry.key)
            finally:
                await watcher.stop()  # type: ignore[no-untyped-call]  # nats-py: unannotated
        return sorted(set(out))

    async def history(self, key: str) -> list[BbEntry]:
        validate_key(key)
        try:
            entries = await self.kv.history(key)
        except nats.js.errors.NoKeysError:
            raise NotFound(f"no key {key!r} on the blackboard of {self.project!r}: it has no history") from None
        return [
            BbEntry(
                key=key,
                revision=e.revision or 0,
                operation=e.operation or "PUT",
                value=None if e.operation else decode_kv_value(e.value),
                at=_at(e.created),
            )
            for e in entries
        ]

    async def watch(self, key_or_prefix: str, on_change: Callable[[BbEntry], None], ready: Callable[[], None]) -> None:
        """Call ``on_change`` for every change from now on (``ready`` once the watch is in place); forever."""
        pre = f"$KV.{self.bucket}."
        filters = [pre + ">"]
        if key_or_prefix:
            validate_key(key_or_prefix, what="key or prefix")
            filters = [pre + key_or_prefix, f"{pre}{key_or_prefix}.>"]
        spec = ReadSpec(stream=f"KV_{self.bucket}", filters=tuple(filters), new_only=True)
        async with StreamReader(self.broker, spec) as reader:
            ready()
            async for batch in reader.batches():
                for msg in batch:
                    op = (msg.headers or {}).get(KV_OP, "PUT")
                    meta = msg.metadata
                    on_change(
                        BbEntry(
                            key=msg.subject.removeprefix(pre),
                            revision=meta.sequence.stream,
                            operation=op,
                            value=None if op in (KV_DEL, KV_PURGE) else decode_kv_value(msg.data),
                            at=_at(meta.timestamp),
                        )
                    )


BbWork = Callable[[Blackboard], Awaitable[None]]


async def with_blackboard(fleet_dir: Path, project: str | None, work: BbWork) -> None:
    """Open the project's blackboard over the admin connection, run ``work`` on it, close."""
    async with Blackboard.open(fleet_dir, project) as board:
        await work(board)


async def run_until_stopped(work: Coroutine[Any, Any, None]) -> None:
    """Run ``work`` until it ends or the process gets SIGINT/SIGTERM (as ``legion tail -f``)."""

    async def counted() -> int:
        await work
        return 0

    await until_stopped(counted())
