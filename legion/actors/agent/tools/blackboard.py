"""Blackboard tools: the agent's projects' KV buckets (``bb_<project>``), read and written as the agent.

Every call runs under the agent's own credential, so the server, not this code, keeps an agent out
of other projects' buckets; the project check here only turns a refusal into a clear message.

- Reads are direct gets (``JSL.API.DIRECT.GET.KV_<bucket>.$KV.<bucket>.<key>``) through the broker,
  so a refused read fails at once with ``denied`` rather than timing out.
- Writes are JetStream publishes to ``$KV.<bucket>.<key>`` with ``Nats-Msg-Id: <call_key>``
  (a repeated call within the duplicate window is stored once) and, for compare-and-set,
  ``Nats-Expected-Last-Subject-Sequence`` (nats-py's KV API cannot set headers on a put).
- Lists, history and watches create no consumer: an agent may not create one, because a push
  consumer's ``deliver_subject`` is not restricted by the server and could aim the bucket's values,
  with forged headers, at any LEGION subscriber (docs/security.md, "Agents create no consumers").
  They use only ``STREAM.INFO`` and direct gets on the bucket's stream:

  - ``bb_list``: ``STREAM.INFO`` with ``subjects_filter`` names the keys (paged by the server);
    each candidate's last message is then read, and keys whose last operation is a delete or purge
    are left out. At most ``MAX_LIST`` keys are listed.
  - ``bb_history``: direct gets ``{"seq": n, "next_by_subj": <key>}`` walk the key's messages from
    sequence 1 (a bucket keeps at most 64 per key). The batch form works through the import too,
    but ``Broker.request_raw`` takes one reply, so each step is one request.
  - ``bb_watch`` polls: it reads the stream's last sequence, then asks for the next message after it
    on the key or under it, every 0.2 s growing to 1 s, until the deadline. A change made between two
    polls is still found (the search starts after the last sequence seen), only reported later.
- Values reach the model with invisible Unicode stripped (another agent may have planted it).
"""

from __future__ import annotations

import asyncio
import json
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final

import nats.errors
from nats.aio.msg import Msg
from nats.js.api import Header as JsHeader
from nats.js.kv import KV_DEL, KV_OP, KV_PURGE
from pydantic import Field

from legion.actors.agent.sanitize import strip_invisible_deep
from legion.actors.agent.tools.base import Params, Tool, ToolContext, ToolError
from legion.broker import Broker, bucket_name
from legion.contracts.blackboard import MAX_KV_VALUE_BYTES, decode_kv_value, validate_kv_key
from legion.contracts.errors import (
    ConcurrencyConflict,
    ConfigError,
    LegionError,
    PermissionDenied,
    RequestTimeout,
    Unavailable,
)

__all__ = ["CLAIM_SUFFIX", "MAX_VALUE_BYTES", "blackboard_tools", "validate_key"]

CLAIM_SUFFIX: Final = "claim"
"""``bb_claim(key)`` records its claim at ``<key>.claim``."""
MAX_VALUE_BYTES: Final = MAX_KV_VALUE_BYTES
MAX_LIST: Final = 500
"""The most keys ``bb_list`` returns; each candidate costs one direct get (is it deleted?)."""
_MAX_LIST_CHECKS: Final = 4 * MAX_LIST
"""Candidates ``bb_list`` checks at most (a bucket full of deleted keys must not cost unbounded gets)."""
_MAX_SUBJECT_PAGES: Final = 5
"""Pages of ``STREAM.INFO`` subjects read at most (the server pages 100,000 subjects at a time)."""
_MAX_HISTORY_STEPS: Final = 1024
"""Direct gets one ``bb_history`` makes at most (our buckets keep 64 revisions per key)."""
_CHECK_CONCURRENCY: Final = 32
_POLL_FIRST_S: Final = 0.2
_POLL_MAX_S: Final = 1.0
_STATUS: Final = "Status"
_SEQUENCE: Final = "Nats-Sequence"
_SUBJECT: Final = "Nats-Subject"
_TIMESTAMP: Final = "Nats-Time-Stamp"
_GROUP: Final = "blackboard"


def validate_key(key: str) -> str:
    """A KV key (see :func:`legion.contracts.blackboard.validate_kv_key`); raises ``invalid_args``."""
    try:
        return validate_kv_key(key)
    except ConfigError as exc:
        raise ToolError("invalid_args", str(exc)) from None


class ReadParams(Params):
    key: str = Field(description="The key, e.g. tasks.t1")
    project: str | None = Field(None, description="Project (blackboard); default: your first project")


class WriteParams(Params):
    key: str = Field(description="The key, e.g. tasks.t1")
    value: Any = Field(description="Any JSON value")
    project: str | None = None
    expected_revision: int | None = Field(
        None, ge=0, description="Write only if the key's revision is this one (0: only if the key does not exist)"
    )


class ListParams(Params):
    prefix: str = Field("", description="List keys under this prefix (tasks lists tasks.*); empty: every key")
    project: str | None = None


class WatchParams(Params):
    key_or_prefix: str = Field(description="Wait for a change of this key or of any key under it")
    timeout_s: float = Field(30.0, gt=0, le=60, description="Give up after this many seconds (at most 60)")
    project: str | None = None


class HistoryParams(Params):
    key: str
    project: str | None = None
    limit: int = Field(20, ge=1, le=64, description="The most recent revisions to return")


class ClaimParams(Params):
    key: str = Field(description="The task's key; the claim is recorded at <key>.claim")
    project: str | None = None
    expected_revision: int | None = Field(
        None, ge=1, description="Take over the claim record only if it is still at this revision (a stale claim)"
    )


def _timestamp(value: str | None) -> str | None:
    """``Nats-Time-Stamp`` (RFC 3339, nanoseconds, ``Z``) as ISO 8601 in UTC, microseconds."""
    if not value:
        return None
    try:
        return datetime.fromisoformat(value).astimezone(UTC).isoformat()
    except ValueError:
        return value


def _to_tool_error(exc: Exception, what: str) -> ToolError:
    if isinstance(exc, ToolError):  # already what the model reads (raised inside the guarded call)
        return exc
    if isinstance(exc, PermissionDenied):
        return ToolError("denied", f"{what}: the server refused it for your credential ({exc.subject})")
    if isinstance(exc, RequestTimeout | TimeoutError | nats.errors.TimeoutError):
        return ToolError("timeout", f"{what}: no answer from JetStream in time; retry later", retryable=True)
    if isinstance(exc, Unavailable | nats.errors.NoRespondersError):
        return ToolError("unavailable", f"{what}: the blackboard is not available ({exc})", retryable=True)
    return ToolError("failed", f"{what}: {exc}")


@dataclass(slots=True)
class _Board:
    broker: Broker
    agent: str
    projects: list[str]

    def bucket(self, project: str | None) -> str:
        if not self.projects:
            raise ToolError("denied", "you belong to no project, so you have no blackboard")
        name = self.projects[0] if project is None else project
        if name not in self.projects:
            raise ToolError("denied", f"you are not in project {name!r}; your projects: {', '.join(self.projects)}")
        return bucket_name(name)

    async def direct(self, bucket: str, body: Mapping[str, Any]) -> Msg | None:
        """A direct get on the bucket's stream with a JSON body; None if no message matches (404)."""
        api = f"{self.broker.js_api_prefix}.DIRECT.GET.KV_{bucket}"
        msg = await self.broker.request_raw(api, json.dumps(body).encode())
        hdrs = msg.headers or {}
        status = hdrs.get(_STATUS)
        if status == "404":
            return None
        if status:
            raise ToolError("failed", f"reading the blackboard failed: {status} {hdrs.get('Description', '')}".strip())
        return msg

    async def last_seq(self, bucket: str) -> int:
        """The bucket stream's last sequence: where a watch starts looking for changes."""
        info = await self.broker.js_api(f"STREAM.INFO.KV_{bucket}")
        return int(info.get("state", {}).get("last_seq", 0))

    async def subjects(self, bucket: str, subjects_filter: str) -> tuple[list[str], bool]:
        """The stream's subjects matching ``subjects_filter`` (deleted keys included), and whether the
        list is complete. The server answers at most ``limit`` (100,000) subjects a page; ``offset`` pages."""
        found: dict[str, int] = {}
        for _page in range(_MAX_SUBJECT_PAGES):
            body = {"subjects_filter": subjects_filter, "offset": len(found)}
            info = await self.broker.js_api(f"STREAM.INFO.KV_{bucket}", body)
            page = info.get("state", {}).get("subjects") or {}
            total = int(info.get("total", len(found) + len(page)))
            found.update(page)
            if not page or len(found) >= total:
                return list(found), True
        return list(found), False

    async def live(self, bucket: str, key: str) -> bool:
        """Whether ``key`` exists: its last message is not a delete or purge marker."""
        api = f"{self.broker.js_api_prefix}.DIRECT.GET.KV_{bucket}.$KV.{bucket}.{key}"
        msg = await self.broker.request_raw(api, b"")
        hdrs = msg.headers or {}
        return not hdrs.get(_STATUS) and hdrs.get(KV_OP) not in (KV_DEL, KV_PURGE)

    async def get(self, bucket: str, key: str) -> tuple[Any, int] | None:
        """(value, revision) of ``key``, or None if it does not exist or was deleted."""
        api = f"{self.broker.js_api_prefix}.DIRECT.GET.KV_{bucket}.$KV.{bucket}.{key}"
        msg = await self.broker.request_raw(api, b"")
        hdrs = msg.headers or {}
        status = hdrs.get(_STATUS)
        if status == "404":
            return None
        if status:
            raise ToolError("failed", f"reading {key!r} failed: {status} {hdrs.get('Description', '')}".strip())
        if hdrs.get(KV_OP) in (KV_DEL, KV_PURGE):
            return None
        return strip_invisible_deep(decode_kv_value(msg.data)), int(hdrs.get(_SEQUENCE, "0"))

    async def revision(self, bucket: str, key: str) -> int | None:
        """The last revision of ``key`` including a delete marker (what compare-and-set compares with)."""
        api = f"{self.broker.js_api_prefix}.DIRECT.GET.KV_{bucket}.$KV.{bucket}.{key}"
        msg = await self.broker.request_raw(api, b"")
        hdrs = msg.headers or {}
        return None if hdrs.get(_STATUS) else int(hdrs.get(_SEQUENCE, "0"))

    async def put(self, bucket: str, key: str, value: Any, ctx: ToolContext, expected: int | None) -> tuple[int, bool]:
        data = json.dumps(value, ensure_ascii=False).encode()
        if len(data) > MAX_VALUE_BYTES:
            raise ToolError("invalid_args", f"value is {len(data)} bytes; the most a key holds is {MAX_VALUE_BYTES}")
        headers = {} if expected is None else {JsHeader.EXPECTED_LAST_SUBJECT_SEQUENCE.value: str(expected)}
        ack = await self.broker.js_publish(f"$KV.{bucket}.{key}", data, msg_id=ctx.call_key, headers=headers)
        return ack.seq, ack.duplicate

    # -- tools ----------------------------------------------------------------------------------------
    async def read(self, p: ReadParams, ctx: ToolContext) -> dict[str, Any]:
        bucket, key = self.bucket(p.project), validate_key(p.key)
        try:
            found = await self.get(bucket, key)
        except LegionError as exc:
            raise _to_tool_error(exc, f"reading {key!r}") from None
        if found is None:
            raise ToolError("not_found", f"no key {key!r} on the blackboard of {bucket.removeprefix('bb_')!r}")
        return {"key": key, "value": found[0], "revision": found[1]}

    async def write(self, p: WriteParams, ctx: ToolContext) -> dict[str, Any]:
        bucket, key = self.bucket(p.project), validate_key(p.key)
        if key.split(".")[-1] == CLAIM_SUFFIX:
            raise ToolError("invalid_args", f"{key!r} is a claim record; use bb_claim, which claims atomically")
        try:
            revision, duplicate = await self.put(bucket, key, p.value, ctx, p.expected_revision)
        except ConcurrencyConflict:
            actual = await self.revision(bucket, key)
            raise ToolError(
                "conflict",
                f"{key!r} changed: expected revision {p.expected_revision}, it is at {actual}; bb_read it and retry",
            ) from None
        except LegionError as exc:
            raise _to_tool_error(exc, f"writing {key!r}") from None
        return {"key": key, "revision": revision, "duplicate": duplicate}

    async def list_keys(self, p: ListParams, ctx: ToolContext) -> dict[str, Any]:
        bucket = self.bucket(p.project)
        prefix = validate_key(p.prefix) if p.prefix else ""
        pre = f"$KV.{bucket}."
        keys: list[str] = []
        try:
            subjects, complete = await self.subjects(bucket, f"{pre}{prefix}.>" if prefix else f"{pre}>")
            candidates = sorted(s.removeprefix(pre) for s in subjects)
            checked = candidates[:_MAX_LIST_CHECKS]
            for start in range(0, len(checked), _CHECK_CONCURRENCY):
                chunk = checked[start : start + _CHECK_CONCURRENCY]
                alive = await asyncio.gather(*(self.live(bucket, k) for k in chunk))
                keys += [k for k, ok in zip(chunk, alive, strict=True) if ok]
                if len(keys) >= MAX_LIST:
                    checked = checked[: start + len(chunk)]
                    break
        except (LegionError, nats.errors.Error) as exc:
            raise _to_tool_error(exc, f"listing {prefix or 'keys'!r}") from None
        out: dict[str, Any] = {"prefix": prefix, "keys": strip_invisible_deep(keys[:MAX_LIST])}
        if len(keys) > MAX_LIST or len(checked) < len(candidates) or not complete:
            cap = f"at most {MAX_LIST} keys are listed, {_MAX_LIST_CHECKS} checked"
            out["note"] = f"the list was cut ({cap}); list a narrower prefix"
        return out

    async def next_change(self, bucket: str, key: str, after: int) -> Msg | None:
        """The first message after sequence ``after`` on ``key`` or under it (two filters, two gets)."""
        subject = f"$KV.{bucket}.{key}"
        found = await asyncio.gather(
            *(self.direct(bucket, {"seq": after + 1, "next_by_subj": f}) for f in (subject, f"{subject}.>"))
        )
        hits = [m for m in found if m is not None]
        return min(hits, key=lambda m: int((m.headers or {}).get(_SEQUENCE, "0")), default=None)

    async def watch(self, p: WatchParams, ctx: ToolContext) -> dict[str, Any]:
        """Poll for the next change (an agent may create no consumer, so there is no push watch)."""
        bucket, key = self.bucket(p.project), validate_key(p.key_or_prefix)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + p.timeout_s
        interval = _POLL_FIRST_S
        try:
            after = await self.last_seq(bucket)
            while (msg := await self.next_change(bucket, key, after)) is None:
                remaining = deadline - loop.time()
                if remaining <= 0:
                    return {"changed": False, "key_or_prefix": key, "waited_s": p.timeout_s}
                await asyncio.sleep(min(interval, remaining))
                interval = min(interval * 1.5, _POLL_MAX_S)
        except (LegionError, nats.errors.Error) as exc:
            raise _to_tool_error(exc, f"watching {key!r}") from None
        hdrs = msg.headers or {}
        op = hdrs.get(KV_OP, "PUT")
        return {
            "changed": True,
            "key": strip_invisible_deep(hdrs.get(_SUBJECT, "").removeprefix(f"$KV.{bucket}.")),
            "operation": op,
            "value": None if op != "PUT" else strip_invisible_deep(decode_kv_value(msg.data)),
            "revision": int(hdrs.get(_SEQUENCE, "0")),
        }

    async def history(self, p: HistoryParams, ctx: ToolContext) -> dict[str, Any]:
        bucket, key = self.bucket(p.project), validate_key(p.key)
        subject = f"$KV.{bucket}.{key}"
        entries: deque[Msg] = deque(maxlen=p.limit)
        seq = 1
        try:
            for _step in range(_MAX_HISTORY_STEPS):
                msg = await self.direct(bucket, {"seq": seq, "next_by_subj": subject})
                if msg is None:
                    break
                entries.append(msg)
                seq = int((msg.headers or {}).get(_SEQUENCE, "0")) + 1
        except (LegionError, nats.errors.Error) as exc:
            raise _to_tool_error(exc, f"reading the history of {key!r}") from None
        if not entries:
            raise ToolError("not_found", f"no key {key!r}: it has no history")
        revisions = []
        for m in entries:
            hdrs = m.headers or {}
            op = hdrs.get(KV_OP)
            revisions.append(
                {
                    "revision": int(hdrs.get(_SEQUENCE, "0")),
                    "operation": op or "PUT",
                    "value": strip_invisible_deep(decode_kv_value(m.data)) if not op else None,
                    "at": _timestamp(hdrs.get(_TIMESTAMP)),
                }
            )
        return {"key": key, "revisions": revisions}

    async def claim(self, p: ClaimParams, ctx: ToolContext) -> dict[str, Any]:
        bucket, key = self.bucket(p.project), validate_key(p.key)
        claim_key = f"{key}.{CLAIM_SUFFIX}"
        record = {"owner": self.agent, "claimed_at": datetime.now(UTC).isoformat(timespec="seconds")}
        expected = 0 if p.expected_revision is None else p.expected_revision
        try:
            for _attempt in range(2):
                try:
                    revision, _dup = await self.put(bucket, claim_key, record, ctx, expected)
                except ConcurrencyConflict:
                    current = await self.get(bucket, claim_key)
                    owner = current[0].get("owner") if current and isinstance(current[0], dict) else None
                    if current is not None and owner == self.agent:
                        return {
                            "claimed": True,
                            "key": key,
                            "owner": self.agent,
                            "revision": current[1],
                            "already": True,
                        }
                    if current is None and p.expected_revision is None:
                        # a released (deleted) claim: its delete marker is the revision to compare with
                        latest = await self.revision(bucket, claim_key)
                        if latest is not None:
                            expected = latest
                            continue
                    who = f"by {owner!r}" if owner else "by someone else"
                    at = f" (claim revision {current[1]})" if current else ""
                    raise ToolError("conflict", f"{key!r} is already claimed {who}{at}; pick another task") from None
                return {"claimed": True, "key": key, "owner": self.agent, "revision": revision, "already": False}
        except LegionError as exc:
            raise _to_tool_error(exc, f"claiming {key!r}") from None
        raise ToolError("conflict", f"{key!r} changed while claiming it; bb_read {claim_key!r} and retry")


def blackboard_tools(broker: Broker, agent: str, projects: list[str]) -> list[Tool]:
    """bb_read, bb_write, bb_list, bb_watch, bb_history and bb_claim over the agent's project buckets."""
    board = _Board(broker=broker, agent=agent, projects=list(projects))
    shown = ", ".join(projects) or "none"
    where = f" Projects: {shown} (the first is the default)."
    return [
        Tool(
            "bb_read",
            "Read a key of a project's shared blackboard: its JSON value and revision." + where,
            ReadParams,
            board.read,
            group=_GROUP,
        ),
        Tool(
            "bb_write",
            "Write a JSON value to a blackboard key. With expected_revision the write succeeds "
            "only if nobody changed the key since you read it (0: only if it does not exist)." + where,
            WriteParams,
            board.write,
            side_effects=True,
            group=_GROUP,
        ),
        Tool(
            "bb_list",
            "List the keys under a prefix (tasks lists tasks.t1, tasks.t2 ...)." + where,
            ListParams,
            board.list_keys,
            group=_GROUP,
        ),
        Tool(
            "bb_watch",
            "Wait until a key, or any key under it, changes, and return the change; "
            'returns {"changed": false} after timeout_s (at most 60).' + where,
            WatchParams,
            board.watch,
            group=_GROUP,
        ),
        Tool(
            "bb_history",
            "The recent revisions of a key, oldest first." + where,
            HistoryParams,
            board.history,
            group=_GROUP,
        ),
        Tool(
            "bb_claim",
            "Claim a task key atomically so that no other agent takes it: succeeds if it is "
            "unclaimed or already yours, fails with 'conflict' naming the owner otherwise. The claim is "
            "recorded at <key>.claim; expected_revision takes over a stale claim at that revision." + where,
            ClaimParams,
            board.claim,
            side_effects=True,
            group=_GROUP,
        ),
    ]
