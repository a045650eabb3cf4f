"""Idempotent provisioning of streams, blackboard buckets and durable consumers.

Run by the launcher with the admin credential. Running it twice changes nothing; a changed spec
updates the stream in place. Agents never create consumers on their inbox (they could widen a
filter or aim a push consumer anywhere), so the launcher creates them here.

An agent that subscribes to events (legion.yaml ``subscribe``) gets the durable ``<agent>_events``
on EVENTS with those filters, delivering only events published after its creation. The durable of
an agent of the layout that no longer subscribes to anything is deleted, so subscribing again later
starts afresh instead of delivering everything published in between.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import nats.js.errors
from nats.js.api import (
    AckPolicy,
    ConsumerConfig,
    DeliverPolicy,
    DiscardPolicy,
    KeyValueConfig,
    RetentionPolicy,
    StorageType,
    StreamConfig,
)

from legion.broker.client import Broker
from legion.broker.permissions import agent_events_durable, agent_state_bucket, bucket_name
from legion.broker.streams import (
    EVENTS,
    MAX_MSG_BYTES,
    ConsumerSpec,
    StreamSpec,
    agent_events_consumer,
    agent_inbox_consumer,
    default_streams,
)
from legion.contracts.errors import ConfigError

__all__ = ["FleetLayout", "ProvisionReport", "provision"]

KV_HISTORY = 64  # the most JetStream keeps per key
# No max_bytes per bucket: JetStream reserves a stream's max_bytes against the server's storage at
# creation (a 256 MiB cap per bucket exhausted the test server, and would a small disk in a big fleet).


@dataclass(frozen=True, slots=True)
class FleetLayout:
    """What to provision: streams, one bucket per project, one inbox consumer per agent, one events
    consumer per agent that subscribes to events.

    ``subscriptions``: ``(agent, filters)`` pairs, from legion.yaml's ``subscribe``.
    """

    agents: tuple[str, ...] = ()
    projects: tuple[str, ...] = ()
    streams: tuple[StreamSpec, ...] = field(default_factory=default_streams)
    consumers: tuple[ConsumerSpec, ...] = ()
    inbox_ack_wait_s: float = 30.0
    subscriptions: tuple[tuple[str, tuple[str, ...]], ...] = ()

    def all_consumers(self) -> list[ConsumerSpec]:
        inboxes = [agent_inbox_consumer(a, ack_wait_s=self.inbox_ack_wait_s) for a in self.agents]
        events = [
            agent_events_consumer(a, filters, ack_wait_s=self.inbox_ack_wait_s)
            for a, filters in self.subscriptions
            if filters
        ]
        return [*inboxes, *events, *self.consumers]

    def unsubscribed(self) -> list[str]:
        """Agents of the layout without subscriptions: their events durable must not exist."""
        subscribed = {a for a, filters in self.subscriptions if filters}
        return [a for a in self.agents if a not in subscribed]

    def all_buckets(self) -> list[str]:
        """Project blackboards, then each agent's private state bucket."""
        names = [bucket_name(p) for p in self.projects] + [agent_state_bucket(a) for a in self.agents]
        return list(dict.fromkeys(names))


@dataclass(slots=True)
class ProvisionReport:
    created: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    deleted: list[str] = field(default_factory=list)


_RETENTION = {
    "limits": RetentionPolicy.LIMITS,
    "workqueue": RetentionPolicy.WORK_QUEUE,
    "interest": RetentionPolicy.INTEREST,
}


def _stream_config(spec: StreamSpec) -> StreamConfig:
    return StreamConfig(
        name=spec.name,
        description=spec.description or None,
        subjects=list(spec.subjects),
        retention=_RETENTION[spec.retention],
        storage=StorageType.FILE,
        max_age=spec.max_age_s or None,
        max_bytes=spec.max_bytes,
        max_msg_size=spec.max_msg_size,
        max_msgs_per_subject=spec.max_msgs_per_subject,
        discard=DiscardPolicy.NEW if spec.discard_new_per_subject else DiscardPolicy.OLD,
        discard_new_per_subject=spec.discard_new_per_subject,
        duplicate_window=spec.duplicate_window_s,
        allow_direct=spec.allow_direct,
    )


def _stream_matches(current: StreamConfig, wanted: StreamConfig) -> bool:
    return (
        sorted(current.subjects or []) == sorted(wanted.subjects or [])
        and current.retention == wanted.retention
        and (current.max_age or 0) == (wanted.max_age or 0)
        and current.max_msg_size == wanted.max_msg_size
        and current.max_bytes == wanted.max_bytes
        and (current.max_msgs_per_subject or -1) == (wanted.max_msgs_per_subject or -1)
        and bool(current.discard_new_per_subject) == bool(wanted.discard_new_per_subject)
        and (current.duplicate_window or 0) == (wanted.duplicate_window or 0)
        and bool(current.allow_direct) == bool(wanted.allow_direct)
        and (current.description or None) == (wanted.description or None)
    )


def _filters(config: ConsumerConfig) -> list[str]:
    return sorted(config.filter_subjects or ([config.filter_subject] if config.filter_subject else []))


def _consumer_matches(current: ConsumerConfig, wanted: ConsumerConfig) -> bool:
    return (
        _filters(current) == _filters(wanted)
        and current.ack_wait == wanted.ack_wait
        and current.max_deliver == wanted.max_deliver
        and current.max_ack_pending == wanted.max_ack_pending
        and (current.description or None) == (wanted.description or None)
    )


async def _ensure_stream(broker: Broker, spec: StreamSpec, report: ProvisionReport) -> None:
    js = broker.js
    config = _stream_config(spec)
    try:
        info = await js.stream_info(spec.name)
    except nats.js.errors.NotFoundError:
        await js.add_stream(config)
        report.created.append(f"stream {spec.name}")
        return
    current = info.config
    if _stream_matches(current, config):
        report.unchanged.append(f"stream {spec.name}")
        return
    if current.retention != config.retention:
        raise ConfigError(
            f"stream {spec.name} exists with retention {current.retention}, not {config.retention}; "
            "JetStream cannot change retention in place: back it up and delete it, or keep its retention"
        )
    await js.update_stream(config)
    report.updated.append(f"stream {spec.name}")


async def _ensure_bucket(broker: Broker, bucket: str, report: ProvisionReport) -> None:
    try:
        await broker.js.key_value(bucket)
    except nats.js.errors.BucketNotFoundError:
        # direct=True: reads use DIRECT.GET with the key in the subject, where permissions can see it
        await broker.js.create_key_value(
            KeyValueConfig(
                bucket=bucket,
                history=KV_HISTORY,
                direct=True,
                storage=StorageType.FILE,
                max_value_size=MAX_MSG_BYTES,
            )
        )
        report.created.append(f"bucket {bucket}")
        return
    report.unchanged.append(f"bucket {bucket}")


async def _ensure_consumer(broker: Broker, spec: ConsumerSpec, report: ProvisionReport) -> None:
    filters = spec.filters()
    config = ConsumerConfig(
        durable_name=spec.durable,
        name=spec.durable,
        description=spec.description or None,
        # one filter goes in filter_subject (the server stores a single filter_subjects entry that way)
        filter_subject=filters[0] if len(filters) == 1 else None,
        filter_subjects=list(filters) if len(filters) > 1 else None,
        ack_policy=AckPolicy.EXPLICIT,
        ack_wait=spec.ack_wait_s,
        max_deliver=spec.max_deliver,
        max_ack_pending=spec.max_ack_pending,
        deliver_policy=DeliverPolicy.ALL if spec.deliver_policy == "all" else DeliverPolicy.NEW,
    )
    try:
        info = await broker.js.consumer_info(spec.stream, spec.durable)
    except nats.js.errors.NotFoundError:
        await broker.js.add_consumer(spec.stream, config)
        report.created.append(f"consumer {spec.stream}/{spec.durable}")
        return
    if _consumer_matches(info.config, config):
        report.unchanged.append(f"consumer {spec.stream}/{spec.durable}")
        return
    await broker.js.add_consumer(spec.stream, config)  # create with a changed config updates it
    report.updated.append(f"consumer {spec.stream}/{spec.durable}")


async def provision(broker: Broker, layout: FleetLayout) -> ProvisionReport:
    """Create or update everything in ``layout``; idempotent. Needs the admin credential."""
    report = ProvisionReport()
    for stream in layout.streams:
        await _ensure_stream(broker, stream, report)
    for bucket in layout.all_buckets():
        await _ensure_bucket(broker, bucket, report)
    for consumer in layout.all_consumers():
        await _ensure_consumer(broker, consumer, report)
    for agent in layout.unsubscribed():
        await _delete_consumer(broker, EVENTS, agent_events_durable(agent), report)
    return report


async def _delete_consumer(broker: Broker, stream: str, durable: str, report: ProvisionReport) -> None:
    try:
        await broker.js.delete_consumer(stream, durable)
    except nats.js.errors.NotFoundError:
        return
    report.deleted.append(f"consumer {stream}/{durable}")
