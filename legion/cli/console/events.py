"""The operator console behind ``legion tail``, ``legion publish`` and ``legion creds ingest``.

``tail`` reads the ``EVENTS`` stream with the one stream reader (:mod:`legion.broker.reader`) and
hands each batch of :class:`TailEvent` to the caller, which renders it (``legion.cli.render``).
``publish`` validates a subject and a body against the contracts and stores it with the admin
credential. ``ingest_credentials`` mints
a credential that may only publish ``legion.ext.<source>.>``.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import re
import signal
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import msgspec
from nats.aio.msg import Msg

from legion.broker import EVENTS, FleetAuth, credential_options, new_id
from legion.broker.reader import ReadSpec, StreamReader
from legion.broker.streams import MAX_MSG_BYTES
from legion.cli.console.connect import admin
from legion.contracts import ConfigError, ContractError, ExternalEvent, SourceName, contract_for, decode, jsonbound
from legion.contracts import headers as h
from legion.contracts import subjects as subj
from legion.contracts.base import Message
from legion.runtime.config import state_dir_of

__all__ = [
    "BATCH",
    "MAX_PAYLOAD_BYTES",
    "IngestCredential",
    "PublishSpec",
    "Published",
    "TailEvent",
    "TailSpec",
    "ingest_credentials",
    "parse_since",
    "prepare_publish",
    "publish",
    "tail",
    "until_stopped",
    "validate_filter",
]

BATCH = 500
"""Messages per pull request."""
MAX_PAYLOAD_BYTES = MAX_MSG_BYTES
"""The largest event ``publish`` sends: the EVENTS stream's message size."""
_PREVIEW = 200
_DURATION = re.compile(r"(\d+)([smhd])")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}
_ROOTS = tuple(".".join(t.pattern.split(".")[:2]) for t in (subj.EVENTS, subj.EXT))  # legion.events, legion.ext

_json = msgspec.json.Encoder(decimal_format="string")
_any = msgspec.json.Decoder()


# -- tail -------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class TailSpec:
    fleet_dir: Path = Path(".")
    filter: str | None = None
    since: str | None = None
    from_seq: int | None = None
    follow: bool = False
    agent: str | None = None
    type: str | None = None
    last: int = 20


def parse_since(value: str, *, now: datetime | None = None) -> datetime:
    """``10m``, ``2h``, ``1d``, ``90s`` (or ``1h30m``) ago, or an ISO-8601 time (UTC if no zone)."""
    now = now or datetime.now(UTC)
    text = value.strip().lower()
    parts = _DURATION.findall(text)
    if parts and "".join(n + u for n, u in parts) == text:
        return now - sum((timedelta(**{_UNITS[u]: int(n)}) for n, u in parts), timedelta())
    try:
        when = datetime.fromisoformat(value.strip())
    except ValueError:
        raise ConfigError(
            f"--since {value!r} is invalid: give a duration such as 10m, 2h or 1d, or an ISO time"
        ) from None
    return when if when.tzinfo else when.replace(tzinfo=UTC)


def validate_filter(value: str) -> str:
    """A subject filter under legion.events. or legion.ext.; ``>`` only as the last token."""
    tokens = value.split(".")
    if len(tokens) < 3 or ".".join(tokens[:2]) not in _ROOTS:
        raise ConfigError(
            f"filter {value!r} is outside the EVENTS stream: it must start with "
            f"{_ROOTS[0]}. or {_ROOTS[1]}. (e.g. {subj.EVENTS.wildcard(source='alpha')})"
        )
    for i, part in enumerate(tokens):
        if not part or any(c.isspace() for c in part):
            raise ConfigError(f"filter {value!r} has an empty token or whitespace")
        if part == ">" and i != len(tokens) - 1:
            raise ConfigError(f"filter {value!r}: '>' may only be the last token")
        if part not in ("*", ">") and ("*" in part or ">" in part):
            raise ConfigError(f"filter {value!r}: a wildcard must be a whole token")
    return value


def _filters(spec: TailSpec) -> list[str]:
    if spec.filter and spec.agent:
        raise ConfigError("give either FILTER or --agent, not both (--agent A means FILTER legion.events.A.>)")
    if spec.agent:
        return [subj.EVENTS.wildcard(source=spec.agent)]
    if spec.filter:
        return [validate_filter(spec.filter)]
    return []


def _type_matcher(wanted: str | None) -> Callable[[str, str], bool]:
    """--type T matches the tag (``task.started.v1``), the tag without its version, or the subject's type."""
    if not wanted:
        return lambda _tag, _subject: True
    base = subj.event_type_of(wanted)

    @functools.lru_cache(maxsize=4096)
    def match(tag: str, subject: str) -> bool:
        if tag == wanted or (tag and subj.event_type_of(tag) == base):
            return True
        parsed = subj.EVENTS.parse(subject) or subj.EXT.parse(subject)
        return parsed is not None and parsed["type"] == base

    return match


class TailEvent(msgspec.Struct):
    """One stored event as ``legion tail`` shows it (``--json`` prints exactly these fields)."""

    seq: int
    time: str
    subject: str
    source: str
    type: str
    trace: str
    data: Any


def _event(msg: Msg) -> TailEvent:
    """A stored message as an event; one that does not decode is shown as such, never skipped."""
    meta = msg.metadata
    hdrs = msg.headers or {}
    try:
        data: Any = jsonbound.loads(msg.data, what="the event")
    except ContractError as exc:
        data = {
            "undecodable": str(exc),
            "bytes": len(msg.data),
            "preview": msg.data[:_PREVIEW].decode("utf-8", "replace"),
        }
    tag = hdrs.get(h.TYPE) or (data.get("type", "") if isinstance(data, dict) else "")
    when = meta.timestamp.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    seq = meta.sequence.stream
    return TailEvent(seq, when, msg.subject, _source_of(msg.subject), str(tag), hdrs.get(h.TRACE, ""), data)


@functools.lru_cache(maxsize=4096)
def _source_of(subject: str) -> str:
    """The ``<source>`` token of an event subject (cached: a stream has few distinct subjects)."""
    parsed = subj.EVENTS.parse(subject) or subj.EXT.parse(subject)
    return parsed["source"] if parsed else ""


def _read_spec(spec: TailSpec, filters: list[str]) -> ReadSpec:
    if spec.since is not None and spec.from_seq is not None:
        raise ConfigError("give either --since or --from-seq, not both")
    if spec.from_seq is not None and spec.from_seq < 1:
        raise ConfigError(f"--from-seq {spec.from_seq} is invalid: stream sequences start at 1")
    since = parse_since(spec.since) if spec.since is not None else None
    last = spec.last if spec.from_seq is None and since is None else None
    return ReadSpec(
        stream=EVENTS,
        filters=tuple(filters),
        from_seq=spec.from_seq,
        since=since,
        last=last,
        follow=spec.follow,
        batch=BATCH,
    )


async def tail(spec: TailSpec, on_events: Callable[[list[TailEvent]], None]) -> int:
    """Hand EVENTS to ``on_events``, a batch at a time, up to the end of the stream; with
    ``spec.follow`` until SIGINT/SIGTERM. Returns how many events were handed over."""
    filters = _filters(spec)
    matches = _type_matcher(spec.type)
    read = _read_spec(spec, filters)

    async def run() -> int:
        count = 0
        async with admin(spec.fleet_dir, "legion-tail") as broker, StreamReader(broker, read) as reader:
            async for batch in reader.batches():
                events = [e for e in map(_event, batch) if matches(e.type, e.subject)]
                if events:
                    on_events(events)
                    count += len(events)
        return count

    return await run() if not spec.follow else await until_stopped(run())


async def until_stopped(work: Coroutine[Any, Any, int]) -> int:
    """Run ``work`` until it ends or the process gets SIGINT/SIGTERM (then 0)."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    installed = []
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
            loop.add_signal_handler(sig, stop.set)
            installed.append(sig)
    task: asyncio.Task[int] = asyncio.ensure_future(work)
    stopper = asyncio.ensure_future(stop.wait())
    try:
        await asyncio.wait({task, stopper}, return_when=asyncio.FIRST_COMPLETED)
        if task.done():
            return task.result()
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        return 0
    finally:
        stopper.cancel()
        if not task.done():
            task.cancel()
        for sig in installed:
            loop.remove_signal_handler(sig)


# -- publish ------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class PublishSpec:
    subject: str
    payload: str
    """A JSON document, or ``@path`` to read one from a file."""
    type: str | None = None
    fleet_dir: Path = Path(".")


@dataclass(frozen=True, slots=True)
class Published:
    stream: str
    seq: int
    subject: str
    type: str
    duplicate: bool = False


def _payload_bytes(payload: str) -> bytes:
    if payload.startswith("@"):
        path = Path(payload[1:])
        if not path.is_file():
            raise ConfigError(f"payload file {path} does not exist (give JSON, or @file with a JSON document)")
        size = path.stat().st_size
        if size > MAX_PAYLOAD_BYTES:
            raise ConfigError(
                f"payload file {path} is {size} bytes; an event holds at most {MAX_PAYLOAD_BYTES} bytes "
                "(the EVENTS stream's message size): store large data elsewhere and publish a reference"
            )
        return path.read_bytes()
    return payload.encode("utf-8", "surrogateescape")


def _check_subject(subject: str) -> bool:
    """Validate ``subject``; True if it is an external (``legion.ext.<source>.``) subject."""
    subj.validate_publish_subject(subject)
    if subj.EVENTS.parse(subject) is not None:
        return False
    if subj.EXT.parse(subject) is not None:
        return True
    raise ConfigError(
        f"subject {subject!r} is not an event subject: publish under {subj.EVENTS.pattern} or {subj.EXT.pattern}, "
        "every token matching [a-z0-9_-]{1,64}"
    )


def prepare_publish(spec: PublishSpec) -> tuple[Message, bytes, str]:
    """Validate subject and body. Returns the decoded contract, the bytes to publish and the tag."""
    external = _check_subject(spec.subject)
    raw = _payload_bytes(spec.payload)
    try:
        body = jsonbound.loads(raw, what="the payload", max_bytes=MAX_PAYLOAD_BYTES)
    except ContractError as exc:
        raise ConfigError(f"{exc}; nothing was published") from None
    declared = body.get("type") if isinstance(body, dict) else None
    tag = spec.type or (declared if isinstance(declared, str) else None)
    if spec.type and declared and declared != spec.type:
        raise ConfigError(f"--type {spec.type!r} disagrees with the body's type {declared!r}")
    cls = contract_for(tag) if tag else None
    if spec.type and cls is None:
        raise ConfigError(f"--type {spec.type!r} is not a known contract tag; see `legion contracts schema`")
    if cls is None:
        if not external:
            raise ConfigError(
                f"{spec.subject!r} takes a known contract: give --type TAG or a body 'type' "
                f"(got {tag or 'none'!r}); untyped JSON is accepted only on {subj.EXT.pattern}"
            )
        if not isinstance(body, dict):
            raise ConfigError("an untyped external payload must be a JSON object")
        tag = ExternalEvent.contract_tag()
        try:
            ext = decode(_json.encode({**body, "type": tag}), {h.TYPE: tag}, strict=True, type=ExternalEvent)
        except ContractError as exc:
            raise ConfigError(f"payload is not a valid {tag} (no known type was given): {exc}") from None
        return ext, raw, tag
    assert tag is not None
    typed = {**body, "type": tag} if isinstance(body, dict) else body
    try:
        msg = decode(_json.encode(typed), {h.TYPE: tag}, strict=True, type=cls)
    except ContractError as exc:
        raise ConfigError(f"payload does not match contract {tag!r}: {exc}") from None
    return msg, _json.encode(typed), tag


async def publish(spec: PublishSpec) -> Published:
    """Validate, then store the event with the admin credential (``Nats-Msg-Id`` set)."""
    _, data, tag = prepare_publish(spec)
    async with admin(spec.fleet_dir, "legion-publish") as broker:
        ack = await broker.js_publish(spec.subject, data, msg_id=new_id(), headers={h.TYPE: tag})
    return Published(stream=ack.stream, seq=ack.seq, subject=spec.subject, type=tag, duplicate=ack.duplicate)


# -- creds ingest ------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class IngestCredential:
    source: str
    creds: Path
    url: str
    subject: str
    inbox_prefix: str


def ingest_credentials(fleet_dir: Path, source: str) -> IngestCredential:
    """Mint a credential that may only publish ``legion.ext.<source>.>`` (no server reload needed)."""
    name = SourceName(source)
    fleet_dir = fleet_dir.resolve()
    state = state_dir_of(fleet_dir)
    if not (state / "keys").is_dir():
        raise ConfigError(f"no fleet keys in {state / 'keys'}: run `legion up` in {fleet_dir} first")
    path = FleetAuth(state).issue_ingest(name)
    url_file = state / "nats.url"
    url = url_file.read_text(encoding="utf-8").strip() if url_file.exists() else ""
    return IngestCredential(
        source=name,
        creds=path,
        url=url,
        subject=subj.EXT.wildcard(source=name),
        inbox_prefix=credential_options(path).get("inbox_prefix", ""),
    )
