"""The measurements of the broker benchmark. Each ``*_round`` coroutine is one repetition, run inside
an event loop of its own (asyncio or uvloop) and connecting afresh to the two servers.

Variant names are shared with the report: ``legion ...`` goes through the fleet's server with a
Legion credential, ``baseline ...`` through the plain, unauthenticated server with the same streams.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import time
from collections.abc import Awaitable, Callable, Coroutine, Iterable, Sequence
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

from legion.broker import (
    INBOX,
    Broker,
    ConnectSpec,
    ConsumeSpec,
    Delivery,
    FleetAuth,
    FleetLayout,
    PullConsumer,
    agent_inbox_durable,
    new_id,
    provision,
    service_permissions,
)
from legion.contracts import AssignTask, LlmReply, LlmRequest, UsageRecorded, decode, encode
from legion.contracts import headers as h
from legion.contracts import subjects as subj

Msg = tuple[str, bytes, dict[str, str]]  # subject, body, headers

TP_LEGION = "legion PullConsumer"
TP_BASE = "baseline PullConsumer"
TP_FETCH = "baseline fetch()"
THROUGHPUT_VARIANTS = (TP_LEGION, TP_BASE, TP_FETCH)

RR_LEGION = "legion Broker.request_raw"
RR_LEGION_NC = "legion nc.request"
RR_BASE = "baseline Broker.request_raw"
RR_BASE_NC = "baseline nc.request"
RR_VARIANTS = (RR_LEGION, RR_LEGION_NC, RR_BASE, RR_BASE_NC)

PUB_AGENT = "legion agent Broker.js_publish"
PUB_ADMIN = "legion admin Broker.js_publish"
PUB_BASE = "baseline Broker.js_publish"
PUB_BASE_NATS = "baseline nats-py js.publish"
PUB_VARIANTS = (PUB_AGENT, PUB_ADMIN, PUB_BASE, PUB_BASE_NATS)


@dataclass(frozen=True, slots=True)
class Sizes:
    reps: int
    tp_msgs: int
    rr_requests: int
    rr_warmup: int
    pub_count: int
    replay_events: int
    replay_reps: int
    batch: int = 256  # PullConsumer batch, fetch() batch, SQLite transaction size
    window: int = 512  # outstanding PubAcks of the load generator
    timeout_s: float = 120.0  # bound on any single measurement


@dataclass(frozen=True, slots=True)
class Env:
    """What every round needs: URLs and credentials only, so any event loop can connect afresh."""

    legion_url: str
    baseline_url: str
    admin_creds: Path
    auth: FleetAuth
    work_dir: Path
    sizes: Sizes
    rr_agent: str
    rr_agent_creds: Path
    vault_creds: Path

    @classmethod
    def create(
        cls, *, legion_url: str, baseline_url: str, admin_creds: Path, auth: FleetAuth, work_dir: Path, sizes: Sizes
    ) -> Env:
        agent = f"rr-{new_id()[:10]}"
        vault_perms = service_permissions("benchvault", serves=(subj.VAULT_LLM.wildcard(),))
        return cls(
            legion_url=legion_url,
            baseline_url=baseline_url,
            admin_creds=admin_creds,
            auth=auth,
            work_dir=work_dir,
            sizes=sizes,
            rr_agent=agent,
            rr_agent_creds=auth.issue_agent(agent),
            vault_creds=auth.issue_service("benchvault", vault_perms),
        )


async def connect(url: str, creds: Path | None, name: str) -> Broker:
    return await Broker.connect(ConnectSpec(url=url, creds=creds, name=name, request_timeout=10.0))


def rotate(items: Sequence[str], k: int) -> list[str]:
    """``items`` rotated by ``k``, so that no variant always runs first on a drifting machine."""
    k %= len(items)
    return [*items[k:], *items[:k]]


# -- load generation -------------------------------------------------------------------------------


async def publish_window(broker: Broker, msgs: Iterable[Msg], *, window: int, timeout: float) -> int:
    """JetStream publish with up to ``window`` PubAcks outstanding; returns the count. Raises on any error."""
    nc = broker.nc
    inbox = f"{broker.inbox_prefix}.{new_id()}"
    slots = asyncio.Semaphore(window)
    all_sent = asyncio.Event()
    all_acked = asyncio.Event()
    sent = acked = 0
    failures: list[bytes] = []

    async def on_ack(msg: Any) -> None:
        nonlocal acked
        acked += 1
        slots.release()
        if b'"error"' in msg.data or (msg.headers and msg.headers.get("Status")):
            failures.append(msg.data or str(msg.headers).encode())
        if all_sent.is_set() and acked >= sent:
            all_acked.set()

    sub = await nc.subscribe(inbox, cb=on_ack)
    try:
        async with asyncio.timeout(timeout):
            for subject, data, headers in msgs:
                await slots.acquire()
                sent += 1
                await nc.publish(subject, data, reply=inbox, headers=headers)
            all_sent.set()
            if acked >= sent:
                all_acked.set()
            await all_acked.wait()
    finally:
        await sub.unsubscribe()
    if failures:
        raise RuntimeError(f"{len(failures)} publishes failed, first: {failures[0][:200]!r}")
    return sent


def inbox_messages(agent: str, n: int) -> list[Msg]:
    """``n`` AssignTask commands of about 200 bytes for ``agent``'s inbox, with Legion's headers."""
    subject = subj.AGENT_INBOX.render(agent=agent)
    out: list[Msg] = []
    for i in range(n):
        data, hdrs = encode(AssignTask(task_id=f"t{i:07d}", text="x" * 90, requested_by="bench"))
        out.append((subject, data, {**hdrs, h.TRACE: new_id(), h.MSG_ID: new_id()}))
    return out


# -- consumers ------------------------------------------------------------------------------------------


async def drive_pull_consumer(
    broker: Broker,
    spec: ConsumeSpec,
    handle: Callable[[Delivery], Awaitable[bool]],
    *,
    producer: Callable[[], Coroutine[Any, Any, object]] | None,
    timeout: float,
) -> float:
    """Run a PullConsumer until ``handle`` returns True; seconds from start (and producer start) to then."""
    done = asyncio.Event()
    errors: list[BaseException] = []
    t_done = 0.0

    async def handler(delivery: Delivery) -> None:
        nonlocal t_done
        try:
            finished = await handle(delivery)
        except Exception as exc:  # surfaced after the run: PullConsumer would retry it silently
            errors.append(exc)
            finished = True
        if finished and not done.is_set():
            t_done = time.perf_counter()
            done.set()

    consumer = PullConsumer(broker, spec, handler)
    async with asyncio.TaskGroup() as tg:
        tg.create_task(consumer.run(), name="bench-consumer")
        t0 = time.perf_counter()
        try:
            async with asyncio.timeout(timeout):
                producing = tg.create_task(producer(), name="bench-producer") if producer else None
                await done.wait()
                if producing is not None:
                    await producing
        finally:
            consumer.stop()
    if errors:
        raise errors[0]
    return t_done - t0


async def drive_fetch(
    broker: Broker,
    agent: str,
    n: int,
    *,
    batch: int,
    producer: Callable[[], Coroutine[Any, Any, object]] | None,
    timeout: float,
) -> float:
    """nats-py's own pull loop: ``pull_subscribe(...).fetch(batch)``, decode, ack; seconds for ``n``."""
    sub = await broker.js.pull_subscribe(
        subj.AGENT_INBOX.render(agent=agent), durable=agent_inbox_durable(agent), stream=INBOX
    )
    handled = 0
    try:
        async with asyncio.TaskGroup() as tg:
            t0 = time.perf_counter()
            async with asyncio.timeout(timeout):
                producing = tg.create_task(producer(), name="bench-producer") if producer else None
                for _ in range(n + 1000):  # every fetch returns at least one message or times out
                    if handled >= n:
                        break
                    try:
                        msgs = await sub.fetch(batch, timeout=2)
                    except TimeoutError:
                        continue
                    for msg in msgs:
                        if not isinstance(decode(msg.data, msg.headers), AssignTask):
                            raise TypeError(f"unexpected message on {msg.subject}")
                        await msg.ack()
                        handled += 1
                t_done = time.perf_counter()
                if producing is not None:
                    await producing
    finally:
        with contextlib.suppress(Exception):
            await sub.unsubscribe()
    if handled < n:
        raise RuntimeError(f"fetch() loop got {handled} of {n} messages")
    return t_done - t0


# -- 1. publish-to-consume throughput --------------------------------------------------------------------


@dataclass(slots=True)
class _Conns:
    admin: Broker  # legion, LEGION account: provisions and produces into agent inboxes
    plain: Broker  # baseline: provisions and produces
    plain_consumer: Broker  # baseline: consumes


async def throughput_round(env: Env, rep: int, progress: Callable[[str], None]) -> dict[str, dict[str, float]]:
    """One repetition of every throughput variant: ``{variant: {e2e, drain, publish}}`` in msgs/s."""
    out: dict[str, dict[str, float]] = {}
    async with contextlib.AsyncExitStack() as stack:
        conns = _Conns(
            admin=await stack.enter_async_context(await connect(env.legion_url, env.admin_creds, "bench-admin")),
            plain=await stack.enter_async_context(await connect(env.baseline_url, None, "bench-plain")),
            plain_consumer=await stack.enter_async_context(await connect(env.baseline_url, None, "bench-plain-c")),
        )
        for variant in rotate(THROUGHPUT_VARIANTS, rep):
            row = out.setdefault(variant, {})
            for mode in ("e2e", "drain"):
                row.update(await _throughput_one(env, conns, variant, mode))
            progress(f"{variant}: e2e {row['e2e']:,.0f} msgs/s, drain {row['drain']:,.0f} msgs/s")
    return out


async def _throughput_one(env: Env, conns: _Conns, variant: str, mode: str) -> dict[str, float]:
    s = env.sizes
    agent = f"tp-{new_id()[:10]}"  # a fresh inbox and durable per measurement
    legion = variant == TP_LEGION
    producer_broker = conns.admin if legion else conns.plain
    await provision(producer_broker, FleetLayout(agents=(agent,), streams=()))
    msgs = inbox_messages(agent, s.tp_msgs)
    consumer_broker = conns.plain_consumer
    if legion:
        consumer_broker = await connect(env.legion_url, env.auth.issue_agent(agent), f"bench-{agent}")

    async def produce() -> None:
        await publish_window(producer_broker, msgs, window=s.window, timeout=s.timeout_s)

    handled = 0

    async def count(delivery: Delivery) -> bool:
        nonlocal handled
        if not isinstance(delivery.message, AssignTask):
            raise TypeError(f"unexpected {type(delivery.message).__name__} in the inbox")
        handled += 1
        return handled >= s.tp_msgs

    result: dict[str, float] = {}
    try:
        producer: Callable[[], Coroutine[Any, Any, None]] | None = produce
        if mode == "drain":  # fill first, then time the consumer alone
            t0 = time.perf_counter()
            await produce()
            result["publish"] = s.tp_msgs / (time.perf_counter() - t0)
            producer = None
        if variant == TP_FETCH:
            elapsed = await drive_fetch(
                consumer_broker, agent, s.tp_msgs, batch=s.batch, producer=producer, timeout=s.timeout_s
            )
        else:
            spec = ConsumeSpec(stream=INBOX, durable=agent_inbox_durable(agent), batch=s.batch, expires_s=1.0)
            elapsed = await drive_pull_consumer(consumer_broker, spec, count, producer=producer, timeout=s.timeout_s)
        result[mode] = s.tp_msgs / elapsed
    finally:
        if legion:
            await consumer_broker.close()
        with contextlib.suppress(Exception):
            await producer_broker.js.delete_consumer(INBOX, agent_inbox_durable(agent))
        with contextlib.suppress(Exception):
            await producer_broker.js.purge_stream(INBOX, subject=subj.AGENT_INBOX.render(agent=agent))
    return result


# -- 2 and 3. request/reply and JetStream publish latency --------------------------------------------------


async def _time_calls(call: Callable[[], Awaitable[object]], n: int, warmup: int) -> list[int]:
    """Latency in ns of ``n`` sequential calls, after ``warmup`` untimed ones."""
    for _ in range(warmup):
        await call()
    out: list[int] = []
    clock = time.perf_counter_ns
    for _ in range(n):
        t = clock()
        await call()
        out.append(clock() - t)
    return out


async def latency_round(env: Env, rep: int) -> dict[str, dict[str, list[int]]]:
    """One repetition of sections 2 and 3 under the running loop: ``{section: {variant: [ns, ...]}}``."""
    s = env.sizes
    agent = env.rr_agent
    vault_subject = subj.VAULT_LLM.render(agent=agent)
    request = LlmRequest(request_id="r1", model="fast", messages=[{"role": "user", "content": "y" * 70}])
    req_data, req_hdrs = encode(request)
    req_hdrs = {**req_hdrs, h.TRACE: new_id()}
    reply_data, _ = encode(LlmReply(request_id="r1", model="fast", content="z" * 110, prompt_tokens=12))

    async def respond(msg: Any) -> None:
        await msg.respond(reply_data)

    out: dict[str, dict[str, list[int]]] = {"request_reply": {}, "js_publish": {}}
    async with contextlib.AsyncExitStack() as stack:

        async def conn(url: str, creds: Path | None, name: str) -> Broker:
            return await stack.enter_async_context(await connect(url, creds, name))

        agent_b = await conn(env.legion_url, env.rr_agent_creds, "bench-rr-agent")
        vault = await conn(env.legion_url, env.vault_creds, "bench-vault")
        admin = await conn(env.legion_url, env.admin_creds, "bench-admin")
        plain = await conn(env.baseline_url, None, "bench-plain")
        plain_responder = await conn(env.baseline_url, None, "bench-plain-responder")
        await vault.subscribe(subj.VAULT_LLM.wildcard(), respond)
        await plain_responder.subscribe(subj.VAULT_LLM.wildcard(), respond)

        calls: dict[str, Callable[[], Awaitable[object]]] = {
            RR_LEGION: lambda: agent_b.request_raw(vault_subject, req_data, headers=req_hdrs),
            RR_LEGION_NC: lambda: agent_b.nc.request(vault_subject, req_data, timeout=10, headers=req_hdrs),
            RR_BASE: lambda: plain.request_raw(vault_subject, req_data, headers=req_hdrs),
            RR_BASE_NC: lambda: plain.nc.request(vault_subject, req_data, timeout=10, headers=req_hdrs),
        }
        for variant in rotate(RR_VARIANTS, rep):
            out["request_reply"][variant] = await _time_calls(calls[variant], s.rr_requests, s.rr_warmup)

        agent_events = subj.EVENTS.render(source=agent, type="bench.usage")
        admin_events = subj.EVENTS.render(source="benchadmin", type="bench.usage")
        seq = itertools.count()

        def usage() -> UsageRecorded:
            i = next(seq)
            return UsageRecorded(agent=agent, model="fast", cost_usd=Decimal(i) / 1_000_000, prompt_tokens=i)

        async def nats_py_publish() -> object:
            data, hdrs = encode(usage())
            return await plain.js.publish(agent_events, data, headers={**hdrs, h.TRACE: new_id(), h.MSG_ID: new_id()})

        pubs: dict[str, Callable[[], Awaitable[object]]] = {
            PUB_AGENT: lambda: agent_b.js_publish(agent_events, usage()),
            PUB_ADMIN: lambda: admin.js_publish(admin_events, usage()),
            PUB_BASE: lambda: plain.js_publish(agent_events, usage()),
            PUB_BASE_NATS: nats_py_publish,
        }
        for variant in rotate(PUB_VARIANTS, rep):
            out["js_publish"][variant] = await _time_calls(pubs[variant], s.pub_count, s.rr_warmup)
    return out
