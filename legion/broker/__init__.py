"""NATS plumbing: embedded server, accounts and credentials, provisioning, typed client helpers."""

from __future__ import annotations

from legion.broker.accounts import AccountLayout, MintedUser, mint_user
from legion.broker.auth import ADMIN, FleetAuth, UserKind
from legion.broker.client import Broker, ConnectSpec, PubAck, credential_options
from legion.broker.consume import ConsumeSpec, Delivery, PullConsumer
from legion.broker.embedded import EmbeddedNats, NatsServerSpec, find_nats_server
from legion.broker.jserrors import JSApiError
from legion.broker.permissions import (
    JS_LOCAL_PREFIX,
    LEGION_INBOX_PREFIX,
    Permissions,
    admin_permissions,
    agent_events_durable,
    agent_inbox_durable,
    agent_permissions,
    agent_state_bucket,
    bucket_name,
    ingest_permissions,
    service_permissions,
)
from legion.broker.provision import FleetLayout, ProvisionReport, provision
from legion.broker.streams import EVENTS, INBOX, LEDGER, ConsumerSpec, StreamSpec, agent_inbox_consumer, default_streams
from legion.broker.trace import current_trace, new_id, trace_scope

__all__ = [
    "ADMIN",
    "EVENTS",
    "INBOX",
    "JS_LOCAL_PREFIX",
    "LEDGER",
    "LEGION_INBOX_PREFIX",
    "AccountLayout",
    "Broker",
    "ConnectSpec",
    "ConsumeSpec",
    "ConsumerSpec",
    "Delivery",
    "EmbeddedNats",
    "FleetAuth",
    "FleetLayout",
    "JSApiError",
    "MintedUser",
    "NatsServerSpec",
    "Permissions",
    "ProvisionReport",
    "PubAck",
    "PullConsumer",
    "StreamSpec",
    "UserKind",
    "admin_permissions",
    "agent_events_durable",
    "agent_inbox_consumer",
    "agent_inbox_durable",
    "agent_permissions",
    "agent_state_bucket",
    "bucket_name",
    "credential_options",
    "current_trace",
    "default_streams",
    "find_nats_server",
    "ingest_permissions",
    "mint_user",
    "new_id",
    "provision",
    "service_permissions",
    "trace_scope",
]
