"""The typed NATS client every Legion process uses.

:class:`Broker` wraps one nats-py connection and adds what the raw client lacks:

- requests fail at once with :class:`PermissionDenied` naming the subject when the server refuses
  the publish (nats-py only reports it later, to ``error_cb``, and the call would time out);
- subscriptions are confirmed with a round trip, so a refused subscription raises;
- typed publish/request with ``Legion-Type``, ``Legion-Trace`` and ``Nats-Msg-Id`` headers;
- JetStream publish with its PubAck parsed and its errors translated.

Requests go through one wildcard reply subscription (``<inbox prefix>.<id>.*``), like nats-py's
new-style requests, but with a future map we can fail on a permission error.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections import deque
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import msgspec
import nats
import structlog
from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription

from legion.broker.jserrors import raise_for_api_error
from legion.broker.jwt import decode_claims, read_creds
from legion.broker.trace import current_trace, new_id
from legion.contracts import headers as h
from legion.contracts.base import Message
from legion.contracts.codec import decode, encode
from legion.contracts.errors import ContractError, LegionError, PermissionDenied, RequestTimeout, Unavailable

__all__ = ["Broker", "ConnectSpec", "PubAck", "credential_options"]

log = structlog.get_logger("legion.broker")
M = TypeVar("M", bound=Message)

_VIOLATION = re.compile(r'permissions violation for (publish|subscription) to "([^"]*)"', re.IGNORECASE)
_STATUS = "Status"
_DESCRIPTION = "Description"


class PubAck(msgspec.Struct, frozen=True):
    stream: str
    seq: int
    duplicate: bool = False


_puback = msgspec.json.Decoder(dict[str, Any])


def credential_options(creds: Path) -> dict[str, str]:
    """Inbox and JetStream prefixes recorded as tags in a Legion credential's JWT."""
    jwt, _seed = read_creds(creds.read_text(encoding="utf-8"))
    tags = decode_claims(jwt).get("nats", {}).get("tags", []) or []
    out: dict[str, str] = {}
    for tag in tags:
        if isinstance(tag, str) and ":" in tag:
            key, value = tag.split(":", 1)
            if key == "legion-inbox":
                out["inbox_prefix"] = value
            elif key == "legion-js":
                out["js_prefix"] = value
    return out


@dataclass(frozen=True, slots=True)
class ConnectSpec:
    """How to connect. Prefixes default to those recorded in the credential."""

    url: str
    creds: Path | None = None
    name: str = "legion"
    inbox_prefix: str | None = None
    js_prefix: str | None = None
    connect_timeout: float = 5.0
    request_timeout: float = 5.0
    max_reconnect_attempts: int = -1
    reconnect_wait: float = 0.5
    extra: Mapping[str, Any] = field(default_factory=dict)


class Broker:
    """One connection with Legion's typed helpers. Create with :meth:`connect`."""

    def __init__(self, nc: NatsClient, spec: ConnectSpec, inbox_prefix: str, js_prefix: str | None) -> None:
        self.nc = nc
        self.spec = spec
        self.inbox_prefix = inbox_prefix
        self.js = nc.jetstream(prefix=js_prefix) if js_prefix else nc.jetstream()
        self.js_api_prefix = js_prefix or "$JS.API"
        self._pending: dict[str, tuple[str, asyncio.Future[Msg]]] = {}
        self._reply_sub: Subscription | None = None
        self._reply_prefix = f"{inbox_prefix}.{new_id()[:12]}."
        self._denied: deque[tuple[str, str]] = deque(maxlen=256)
        self._sub_lock = asyncio.Lock()

    # -- connection -------------------------------------------------------------------------
    @classmethod
    async def connect(cls, spec: ConnectSpec, **callbacks: Callable[..., Awaitable[None]]) -> Broker:
        opts = credential_options(spec.creds) if spec.creds else {}
        inbox_prefix = spec.inbox_prefix or opts.get("inbox_prefix") or "_INBOX"
        js_prefix = spec.js_prefix or opts.get("js_prefix")
        holder: list[Broker] = []
        user_error_cb = callbacks.pop("error_cb", None)
        refused = asyncio.Event()

        async def on_error(exc: Exception) -> None:
            if holder:
                holder[0]._on_error(exc)
            elif "authorization violation" in str(exc).lower():
                refused.set()  # nats-py would retry a refused credential forever
            if user_error_cb is not None:
                await user_error_cb(exc)

        kwargs: dict[str, Any] = {
            "servers": [spec.url],
            "name": spec.name,
            "inbox_prefix": inbox_prefix,
            "connect_timeout": spec.connect_timeout,
            "max_reconnect_attempts": spec.max_reconnect_attempts,
            "reconnect_time_wait": spec.reconnect_wait,
            "error_cb": on_error,
            **callbacks,
            **spec.extra,
        }
        if spec.creds is not None:
            kwargs["user_credentials"] = str(spec.creds)
        denied = PermissionDenied(
            operation="connect", subject=spec.url, detail="credential refused: expired, revoked or unknown"
        )
        connecting = asyncio.ensure_future(nats.connect(**kwargs))
        watch = asyncio.ensure_future(refused.wait())
        try:
            # nats-py retries an initial connect forever with max_reconnect_attempts=0: bound it ourselves
            done, _ = await asyncio.wait(
                {connecting, watch}, timeout=spec.connect_timeout * 2 + 1, return_when=asyncio.FIRST_COMPLETED
            )
            if connecting not in done:
                if watch in done:
                    raise denied
                raise Unavailable(f"cannot connect to {spec.url}: no answer; is nats-server running?")
            nc = connecting.result()
        except nats.errors.Error as exc:
            if "authorization" in str(exc).lower():
                raise denied from exc
            raise Unavailable(f"cannot connect to {spec.url}: {exc}") from exc
        except OSError as exc:
            raise Unavailable(f"cannot connect to {spec.url}: {exc}; is nats-server running?") from exc
        finally:
            for task in (connecting, watch):
                if not task.done():
                    task.cancel()
                    with contextlib.suppress(BaseException):
                        await task
        broker = cls(nc, spec, inbox_prefix, js_prefix)
        holder.append(broker)
        return broker

    async def close(self) -> None:
        """Drain and close. Safe to call twice."""
        for _, fut in list(self._pending.values()):
            if not fut.done():
                fut.set_exception(Unavailable("connection closed"))
        if not self.nc.is_closed:
            with contextlib.suppress(Exception):
                await self.nc.drain()
            if not self.nc.is_closed:
                await self.nc.close()

    async def __aenter__(self) -> Broker:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # -- permission errors -------------------------------------------------------------------
    def _on_error(self, exc: Exception) -> None:
        m = _VIOLATION.search(str(exc))
        if m is None:
            log.warning("nats.error", error=str(exc), connection=self.spec.name)
            return
        # nats-py lower-cases the whole error line, so subjects are compared lower-cased
        op, subject = m.group(1).lower(), m.group(2).lower()
        self._denied.append((op, subject))
        log.warning("nats.permission_denied", operation=op, subject=subject, connection=self.spec.name)
        if op == "publish":
            for token, (subj, fut) in list(self._pending.items()):
                if subj.lower() == subject and not fut.done():
                    fut.set_exception(PermissionDenied(operation="publish", subject=subject))
                    self._pending.pop(token, None)

    async def confirm_allowed(self, op: str, subject: str) -> None:
        """Round-trip to the server, then raise PermissionDenied if it refused ``op`` on ``subject``.

        Two round trips: nats-py's ``flush()`` puts its PING at the *front* of the pending write
        buffer, so the first PONG can overtake a still-buffered PUB/SUB and its ``-ERR``. The second
        PING is written after everything the first flush wrote, so the refusal arrives before its PONG.
        """
        for _ in range(2):
            await self.nc.flush(timeout=max(1, int(self.spec.request_timeout)))
            if (op, subject.lower()) in self._denied:
                raise PermissionDenied(operation=op, subject=subject)

    # -- core publish / subscribe -----------------------------------------------------------
    def headers_for(
        self,
        msg: Message | None,
        *,
        trace: str | None = None,
        msg_id: str | None = None,
        extra: Mapping[str, str] | None = None,
    ) -> dict[str, str]:
        out: dict[str, str] = {h.TRACE: trace or current_trace() or new_id()}
        if msg is not None:
            out[h.TYPE] = msg.contract_tag()
        if msg_id:
            out[h.MSG_ID] = msg_id
        if extra:
            out.update(extra)
        return out

    async def publish(
        self,
        subject: str,
        payload: Message | bytes,
        *,
        trace: str | None = None,
        msg_id: str | None = None,
        headers: Mapping[str, str] | None = None,
        confirm: bool = False,
    ) -> None:
        """Core NATS publish. ``confirm=True`` waits one round trip and raises PermissionDenied if refused."""
        data, hdrs = self._encode(payload, trace=trace, msg_id=msg_id, headers=headers)
        await self.nc.publish(subject, data, headers=hdrs)
        if confirm:
            await self.confirm_allowed("publish", subject)

    async def subscribe(
        self, subject: str, cb: Callable[[Msg], Awaitable[None]] | None = None, *, queue: str = ""
    ) -> Subscription:
        """Subscribe and confirm with the server; a refused subscription raises PermissionDenied."""
        sub = await self.nc.subscribe(subject, queue=queue, cb=cb)
        try:
            await self.confirm_allowed("subscription", subject)
        except PermissionDenied:
            with contextlib.suppress(Exception):
                await sub.unsubscribe()
            raise
        return sub

    def _encode(
        self,
        payload: Message | bytes,
        *,
        trace: str | None,
        msg_id: str | None,
        headers: Mapping[str, str] | None,
    ) -> tuple[bytes, dict[str, str]]:
        if isinstance(payload, Message):
            data, _ = encode(payload)
            return data, self.headers_for(payload, trace=trace, msg_id=msg_id, extra=headers)
        return payload, self.headers_for(None, trace=trace, msg_id=msg_id, extra=headers)

    # -- request / reply ---------------------------------------------------------------------
    async def _ensure_reply_sub(self) -> None:
        if self._reply_sub is not None:
            return
        async with self._sub_lock:
            if self._reply_sub is None:
                self._reply_sub = await self.subscribe(self._reply_prefix + "*", self._on_reply)

    async def _on_reply(self, msg: Msg) -> None:
        token = msg.subject[len(self._reply_prefix) :]
        entry = self._pending.pop(token, None)
        if entry is not None and not entry[1].done():
            entry[1].set_result(msg)

    async def request_raw(
        self,
        subject: str,
        data: bytes,
        *,
        headers: Mapping[str, str] | None = None,
        timeout: float | None = None,
    ) -> Msg:
        """Send a request; raises PermissionDenied at once if refused, Unavailable on no responders."""
        await self._ensure_reply_sub()
        token = new_id()
        fut: asyncio.Future[Msg] = asyncio.get_running_loop().create_future()
        self._pending[token] = (subject, fut)
        timeout = self.spec.request_timeout if timeout is None else timeout
        try:
            await self.nc.publish(subject, data, reply=self._reply_prefix + token, headers=dict(headers or {}))
            async with asyncio.timeout(timeout):
                msg = await fut
        except TimeoutError:
            raise RequestTimeout(subject=subject, timeout=timeout) from None
        finally:
            self._pending.pop(token, None)
        if msg.headers and msg.headers.get(_STATUS) == "503":
            raise Unavailable(f"no responders on {subject!r}: the service is not running or not subscribed")
        return msg

    async def request(
        self,
        subject: str,
        payload: Message,
        *,
        reply_type: type[M] | tuple[type[Message], ...] | None = None,
        trace: str | None = None,
        timeout: float | None = None,
    ) -> Message:
        """Typed request: encodes ``payload``, decodes the reply by its ``Legion-Type`` header."""
        data, hdrs = self._encode(payload, trace=trace, msg_id=None, headers=None)
        msg = await self.request_raw(subject, data, headers=hdrs, timeout=timeout)
        reply = decode(msg.data, msg.headers, strict=True)
        if reply_type is not None and not isinstance(reply, reply_type):
            raise ContractError(f"unexpected reply {type(reply).__name__} to {subject!r}")
        assert isinstance(reply, Message)
        return reply

    # -- JetStream -----------------------------------------------------------------------------
    async def js_publish(
        self,
        subject: str,
        payload: Message | bytes,
        *,
        trace: str | None = None,
        msg_id: str | None = None,
        headers: Mapping[str, str] | None = None,
        timeout: float | None = None,
    ) -> PubAck:
        """Publish into a stream and wait for its PubAck. ``msg_id`` de-duplicates retries."""
        data, hdrs = self._encode(payload, trace=trace, msg_id=msg_id or new_id(), headers=headers)
        try:
            msg = await self.request_raw(subject, data, headers=hdrs, timeout=timeout)
        except Unavailable as exc:
            raise Unavailable(f"no stream captures {subject!r}; was the fleet provisioned?") from exc
        return self._parse_puback(msg.data, subject)

    @staticmethod
    def _parse_puback(data: bytes, subject: str) -> PubAck:
        try:
            resp = _puback.decode(data)
        except msgspec.DecodeError as exc:
            raise LegionError(f"invalid PubAck for {subject!r}: {data[:200]!r}") from exc
        raise_for_api_error(resp, subject=subject)
        return PubAck(stream=str(resp["stream"]), seq=int(resp["seq"]), duplicate=bool(resp.get("duplicate", False)))

    async def js_api(
        self, api: str, body: Mapping[str, Any] | None = None, *, timeout: float | None = None
    ) -> dict[str, Any]:
        """Call ``<js prefix>.<api>`` (e.g. ``STREAM.INFO.EVENTS``) and return the decoded response."""
        subject = f"{self.js_api_prefix}.{api}"
        data = msgspec.json.encode(body) if body is not None else b""
        msg = await self.request_raw(subject, data, timeout=timeout)
        resp = _puback.decode(msg.data)
        raise_for_api_error(resp, subject=subject)
        return resp
