"""The operator console behind ``legion tail``, ``legion publish`` and ``legion creds ingest``.

``tail`` reads the ``EVENTS`` stream through an ephemeral pull consumer (``AckPolicy.NONE``, in
memory, removed when idle): batches of :data:`BATCH` per pull request, the end of the stream known
from the ``num_pending`` of each delivery (never from a timer). ``publish`` validates a subject and
a body against the contracts and stores it with the admin credential. ``ingest_credentials`` mints
a credential that may only publish ``legion.ext.<source>.>``.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import re
import signal
import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TextIO

import msgspec
import typer
from nats.aio.msg import Msg

from legion.broker import EVENTS, Broker, ConnectSpec, FleetAuth, credential_options, new_id
from legion.contracts import ConfigError, ContractError, ExternalEvent, SourceName, Unavailable, contract_for, decode
from legion.contracts import headers as h
from legion.contracts import subjects as subj
from legion.contracts.base import Message
from legion.runtime.fleet import state_dir_of

__all__ = [
    "BATCH",
    "IngestCredential",
    "PublishSpec",
    "Published",
    "TailSpec",
    "fleet_url",
    "ingest_credentials",
    "parse_since",
    "prepare_publish",
    "publish",
    "tail",
    "validate_filter",
]

BATCH = 500
"""Messages per pull request."""
_IDLE_NS = 30 * 1_000_000_000  # the server removes the ephemeral consumer after 30 s without a pull
_FOLLOW_EXPIRES_NS = 30 * 1_000_000_000
_SUMMARY_FIELDS = 4
_SUMMARY_VALUE = 40
_SUMMARY_LINE = 120
_DURATION = re.compile(r"(\d+)([smhd])")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}
_ROOTS = tuple(".".join(t.pattern.split(".")[:2]) for t in (subj.EVENTS, subj.EXT))  # legion.events, legion.ext

_json = msgspec.json.Encoder(decimal_format="string")
_any = msgspec.json.Decoder()


# -- the fleet ------------------------------------------------------------------------------
def fleet_url(fleet_dir: Path) -> str:
    """The NATS URL of a running fleet (``.legion/nats.url``)."""
    path = state_dir_of(fleet_dir) / "nats.url"
    if not path.exists():
        raise ConfigError(f"no {path}: start the fleet with `legion up` in {fleet_dir} (or pass --fleet-dir)")
    return path.read_text(encoding="utf-8").strip()


def _admin_spec(fleet_dir: Path, name: str) -> ConnectSpec:
    fleet_dir = fleet_dir.resolve()
    url = fleet_url(fleet_dir)
    creds = state_dir_of(fleet_dir) / "creds" / "admin.creds"
    if not creds.exists():
        raise ConfigError(f"no admin credential {creds}: run `legion up` in {fleet_dir} first")
    return ConnectSpec(url=url, creds=creds, name=name, max_reconnect_attempts=3)


async def _admin(fleet_dir: Path, name: str) -> Broker:
    return await Broker.connect(_admin_spec(fleet_dir, name))


# -- tail -------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class TailSpec:
    fleet_dir: Path = Path(".")
    filter: str | None = None
    since: str | None = None
    from_seq: int | None = None
    follow: bool = False
    as_json: bool = False
    agent: str | None = None
    type: str | None = None
    last: int = 20
    color: bool = False


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


class _Event(msgspec.Struct):
    seq: int
    time: str
    subject: str
    source: str
    type: str
    trace: str
    data: Any


def _ack_info(reply: str) -> tuple[int, int, int]:
    """(stream seq, timestamp ns, num_pending) from a JetStream delivery's ``$JS.ACK`` reply subject."""
    t = reply.split(".")
    if len(t) == 9:  # $JS.ACK.<stream>.<consumer>.<delivered>.<sseq>.<cseq>.<ts>.<pending>
        return int(t[5]), int(t[7]), int(t[8])
    # $JS.ACK.<domain>.<account hash>.<stream>.<consumer>.<delivered>.<sseq>.<cseq>.<ts>.<pending>.<token>
    return int(t[7]), int(t[9]), int(t[10])


def _event(msg: Msg) -> tuple[_Event, int]:
    seq, ts, pending = _ack_info(msg.reply)
    hdrs = msg.headers or {}
    try:
        data: Any = _any.decode(msg.data)
    except msgspec.DecodeError:
        data = msg.data.decode("utf-8", "replace")
    tag = hdrs.get(h.TYPE) or (data.get("type", "") if isinstance(data, dict) else "")
    when = datetime.fromtimestamp(ts / 1e9, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    return _Event(seq, when, msg.subject, _source_of(msg.subject), str(tag), hdrs.get(h.TRACE, ""), data), pending


@functools.lru_cache(maxsize=4096)
def _source_of(subject: str) -> str:
    """The ``<source>`` token of an event subject (cached: a stream has few distinct subjects)."""
    parsed = subj.EVENTS.parse(subject) or subj.EXT.parse(subject)
    return parsed["source"] if parsed else ""


def _short(value: Any) -> str:
    text = value if isinstance(value, str) else _json.encode(value).decode()
    text = " ".join(text.split())
    return text if len(text) <= _SUMMARY_VALUE else text[: _SUMMARY_VALUE - 1] + "…"


def _summary(data: Any) -> str:
    if isinstance(data, dict):
        items = [(k, v) for k, v in data.items() if k != "type"][:_SUMMARY_FIELDS]
        line = " ".join(f"{k}={_short(v)}" for k, v in items)
    else:
        line = _short(data)
    return line if len(line) <= _SUMMARY_LINE else line[: _SUMMARY_LINE - 1] + "…"


def _text_line(ev: _Event, color: bool) -> str:
    when = ev.time.replace("T", " ")
    tag = ev.type or "?"
    trace = ev.trace[:8] or "-"
    if color:
        when = typer.style(when, dim=True)
        source = typer.style(f"{ev.source:<12}", fg="cyan")
        tag_s = typer.style(f"{tag:<22}", fg="yellow" if contract_for(ev.type) is None else "green")
        trace = typer.style(trace, fg="magenta")
        return f"{when} {source} {tag_s} {trace:<8} {_summary(ev.data)}"
    return f"{when} {ev.source:<12} {tag:<22} {trace:<8} {_summary(ev.data)}"


class _Puller:
    """One ephemeral pull consumer on EVENTS and one inbox for its deliveries."""

    def __init__(self, broker: Broker) -> None:
        self.broker = broker
        self.name = ""
        self.pending = 0
        self._inbox = broker.nc.new_inbox()
        self._buf: list[Msg] = []
        self._wake = asyncio.Event()
        self._sub: Any = None

    async def create(self, config: dict[str, Any]) -> None:
        info = await self.broker.js_api(f"CONSUMER.CREATE.{EVENTS}", {"stream_name": EVENTS, "config": config})
        self.name = str(info["name"])
        self.pending = int(info.get("num_pending", 0))

    async def delete(self) -> None:
        name, self.name = self.name, ""
        if name:
            with contextlib.suppress(Exception):
                await self.broker.js_api(f"CONSUMER.DELETE.{EVENTS}.{name}", timeout=2)

    async def _on_msg(self, msg: Msg) -> None:
        self._buf.append(msg)
        self._wake.set()

    async def pull(self, batch: int, *, wait: bool) -> None:
        if self._sub is None:
            self._sub = await self.broker.nc.subscribe(self._inbox, cb=self._on_msg, pending_msgs_limit=-1)
        body: dict[str, Any] = {"batch": batch}
        if wait:
            body["expires"] = _FOLLOW_EXPIRES_NS
        else:
            body["no_wait"] = True
        api = f"{self.broker.js_api_prefix}.CONSUMER.MSG.NEXT.{EVENTS}.{self.name}"
        await self.broker.nc.publish(api, _json.encode(body), reply=self._inbox)

    async def take(self) -> list[Msg]:
        await self._wake.wait()
        self._wake.clear()
        out, self._buf = self._buf, []
        return out

    async def close(self) -> None:
        if self._sub is not None:
            with contextlib.suppress(Exception):
                await self._sub.unsubscribe()
        await self.delete()


def _consumer_config(filters: list[str], start: dict[str, Any]) -> dict[str, Any]:
    config: dict[str, Any] = {
        "ack_policy": "none",
        "inactive_threshold": _IDLE_NS,
        "mem_storage": True,
        "num_replicas": 1,
        **start,
    }
    if len(filters) == 1:
        config["filter_subject"] = filters[0]
    return config


async def _open(broker: Broker, spec: TailSpec, filters: list[str]) -> tuple[_Puller, int]:
    """The consumer, positioned; and how many of its first deliveries to skip (default: last N)."""
    if spec.since is not None and spec.from_seq is not None:
        raise ConfigError("give either --since or --from-seq, not both")
    puller = _Puller(broker)
    if spec.from_seq is not None:
        if spec.from_seq < 1:
            raise ConfigError(f"--from-seq {spec.from_seq} is invalid: stream sequences start at 1")
        start: dict[str, Any] = {"deliver_policy": "by_start_sequence", "opt_start_seq": spec.from_seq}
        await puller.create(_consumer_config(filters, start))
        return puller, 0
    if spec.since is not None:
        when = parse_since(spec.since).astimezone(UTC).isoformat().replace("+00:00", "Z")
        await puller.create(_consumer_config(filters, {"deliver_policy": "by_start_time", "opt_start_time": when}))
        return puller, 0
    # the last N: widen a window back from the end until it holds N matching events (or the whole stream)
    info = await broker.js_api(f"STREAM.INFO.{EVENTS}")
    last_seq = int(info["state"]["last_seq"])
    window = max(spec.last, 1)
    while True:
        first = max(1, last_seq - window + 1)
        await puller.create(_consumer_config(filters, {"deliver_policy": "by_start_sequence", "opt_start_seq": first}))
        if puller.pending >= spec.last or first == 1:
            return puller, max(0, puller.pending - spec.last)
        await puller.delete()
        window *= 8


def _write(out: TextIO, lines: Iterable[str]) -> None:
    text = "\n".join(lines)
    if text:
        out.write(text + "\n")
        out.flush()


async def _read(puller: _Puller, spec: TailSpec, skip: int, out: TextIO) -> int:
    """Print events until the end of the stream (forever with ``follow``); returns how many were printed.

    The end is the delivery whose ``num_pending`` is 0. A pull request is over when it delivered its
    batch or the server sent a status (404 no messages, 408 expired, 409); then the next one is sent.
    """
    matches = _type_matcher(spec.type)
    printed = 0
    caught_up = puller.pending == 0
    if caught_up and not spec.follow:
        return 0
    requested, received = BATCH, 0
    await puller.pull(requested, wait=caught_up)
    while True:
        lines: list[str] = []
        over = False
        for msg in await puller.take():
            if not msg.reply:  # a status message
                hdrs = msg.headers or {}
                if hdrs.get("Status") == "409" and "deleted" in hdrs.get("Description", "").lower():
                    raise Unavailable("the tail's consumer was deleted by the server; run `legion tail` again")
                over = over or hdrs.get("Status") != "100"  # 100: idle heartbeat
                continue
            received += 1
            event, pending = _event(msg)
            if skip:
                skip -= 1
            elif matches(event.type, event.subject):
                lines.append(_json.encode(event).decode() if spec.as_json else _text_line(event, spec.color))
            if pending == 0:
                caught_up = True
        _write(out, lines)
        printed += len(lines)
        if caught_up and not spec.follow:
            return printed
        if over or received >= requested:
            if not caught_up and received == 0:  # fewer events than counted (retention removed some)
                if not spec.follow:
                    return printed
                caught_up = True
            requested, received = BATCH, 0
            await puller.pull(requested, wait=caught_up)


async def tail(spec: TailSpec, out: TextIO | None = None) -> int:
    """Print EVENTS to ``out`` (stdout); with ``spec.follow`` until SIGINT/SIGTERM. Returns the count printed."""
    out = out or sys.stdout
    filters = _filters(spec)
    broker = await _admin(spec.fleet_dir, "legion-tail")
    try:
        puller, skip = await _open(broker, spec, filters)
        try:
            if not spec.follow:
                return await _read(puller, spec, skip, out)
            return await _until_stopped(_read(puller, spec, skip, out))
        finally:
            await puller.close()
    finally:
        await broker.close()


async def _until_stopped(work: Any) -> int:
    """Run ``work`` until it ends or the process gets SIGINT/SIGTERM (then 0 more events are printed)."""
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
        return path.read_bytes()
    return payload.encode("utf-8")


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
        body = _any.decode(raw)
    except msgspec.DecodeError as exc:
        raise ConfigError(f"payload is not valid JSON: {exc}") from None
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
    broker = await _admin(spec.fleet_dir, "legion-publish")
    try:
        ack = await broker.js_publish(spec.subject, data, msg_id=new_id(), headers={h.TYPE: tag})
    finally:
        await broker.close()
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
