"""The console's data commands: ``legion costs`` (the ledger's CostsQuery) and ``legion bb`` (a project's
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
import nats.errors
import nats.js.errors
from nats.js.api import ConsumerConfig, DeliverPolicy
from nats.js.kv import KV_DEL, KV_OP, KV_PURGE, KeyValue
from rich.console import Console
from rich.table import Table

from legion.broker import Broker, ConnectSpec, bucket_name
from legion.contracts import subjects as subj
from legion.contracts.blackboard import MAX_KV_VALUE_BYTES, decode_kv_value, validate_kv_key
from legion.contracts.errors import ConfigError, LegionError, NotFound, Unavailable
from legion.contracts.ledger import CostsQuery, CostsReport
from legion.contracts.service import ServiceError
from legion.runtime.config import load_config
from legion.runtime.console import _admin_spec, _until_stopped

__all__ = [
    "BbEntry",
    "BbWork",
    "Blackboard",
    "CostsSpec",
    "FleetNotRunning",
    "admin",
    "costs",
    "costs_json",
    "encode_value",
    "print_costs",
    "resolve_project",
    "run_until_stopped",
    "validate_key",
    "with_blackboard",
]

LEDGER_SERVICE: Final = "ledger"
MAX_VALUE_BYTES: Final = MAX_KV_VALUE_BYTES
_CONNECT_TIMEOUT_S: Final = 2.0
_json = msgspec.json.Encoder(decimal_format="string")


class FleetNotRunning(Unavailable):
    """The fleet's NATS server (or the service asked) does not answer."""


def _connect_spec(fleet_dir: Path, name: str) -> tuple[ConnectSpec, Path]:
    where = fleet_dir.resolve()
    try:
        spec = _admin_spec(where, name)
    except ConfigError as exc:
        raise FleetNotRunning(f"the fleet in {where} is not running ({exc})") from None
    return dataclasses.replace(spec, connect_timeout=_CONNECT_TIMEOUT_S, max_reconnect_attempts=0), where


@asynccontextmanager
async def admin(fleet_dir: Path, name: str) -> AsyncIterator[Broker]:
    """The admin connection of the running fleet; :class:`FleetNotRunning` if there is none."""
    spec, where = _connect_spec(fleet_dir, name)
    try:
        broker = await Broker.connect(spec)
    except Unavailable as exc:
        raise FleetNotRunning(f"the fleet in {where} is not running: {exc}; start it with `legion up`") from None
    try:
        yield broker
    finally:
        await broker.close()


# -- costs ------------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class CostsSpec:
    fleet_dir: Path = Path(".")
    agent: str | None = None
    project: str | None = None
    by: Literal["day", "month"] = "day"
    timeout_s: float = 10.0


async def costs(spec: CostsSpec) -> CostsReport:
    """Ask the fleet's ledger (``legion.svc.ledger.costs``) for spend grouped by day or month."""
    query = CostsQuery(agent=spec.agent, project=spec.project, by=spec.by)
    async with admin(spec.fleet_dir, "legion-costs") as broker:
        subject = subj.SERVICE.render(service=LEDGER_SERVICE, op="costs")
        try:
            reply = await broker.request(subject, query, reply_type=(CostsReport, ServiceError), timeout=spec.timeout_s)
        except Unavailable:
            raise FleetNotRunning(
                "the fleet's NATS is up but the ledger does not answer; see .legion/logs/ledger.log "
                "or restart the fleet (legion down && legion up -d)"
            ) from None
    if isinstance(reply, ServiceError):
        raise LegionError(f"the ledger refused the query: {reply.code}: {reply.message}")
    assert isinstance(reply, CostsReport)
    return reply


def costs_json(report: CostsReport) -> str:
    return _json.encode({"rows": report.rows, "total_usd": report.total_usd}).decode()


def print_costs(report: CostsReport, console: Console, *, by: str = "day") -> None:
    """A table of the rows (one per period, agent, project and model) and a total line."""
    if not report.rows:
        console.print("no spend recorded yet (the ledger has no usage for this query)")
        return
    table = Table(title=f"costs by {by}", show_footer=True)
    calls = sum(r.calls for r in report.rows)
    prompt = sum(r.prompt_tokens for r in report.rows)
    completion = sum(r.completion_tokens for r in report.rows)
    table.add_column(by, footer="total")
    table.add_column("agent")
    table.add_column("project")
    table.add_column("model")
    table.add_column("calls", justify="right", footer=str(calls))
    table.add_column("prompt tok", justify="right", footer=str(prompt))
    table.add_column("completion tok", justify="right", footer=str(completion))
    table.add_column("cost USD", justify="right", footer=str(report.total_usd))
    for r in report.rows:
        table.add_row(
            r.period,
            r.agent,
            r.project or "-",
            r.model or "-",
            str(r.calls),
            str(r.prompt_tokens),
            str(r.completion_tokens),
            str(r.cost_usd),
        )
    console.print(table)


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
        sub = await self.broker.js.subscribe(
            filters[0],
            stream=f"KV_{self.bucket}",
            config=ConsumerConfig(filter_subjects=filters) if len(filters) > 1 else None,
            ordered_consumer=True,
            deliver_policy=DeliverPolicy.NEW,
        )
        ready()
        try:
            while True:
                try:
                    msg = await sub.next_msg(timeout=3600)
                except nats.errors.TimeoutError:
                    continue
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
        finally:
            await sub.unsubscribe()


BbWork = Callable[[Blackboard], Awaitable[None]]


async def with_blackboard(fleet_dir: Path, project: str | None, work: BbWork) -> None:
    """Open the project's blackboard over the admin connection, run ``work`` on it, close."""
    async with Blackboard.open(fleet_dir, project) as board:
        await work(board)


async def run_until_stopped(work: Coroutine[Any, Any, None]) -> None:
    """Run ``work`` until it ends or the process gets SIGINT/SIGTERM (console's tail --follow helper)."""

    async def counted() -> int:
        await work
        return 0

    await _until_stopped(counted())
