"""Wire contracts, subjects, headers and the codec. Imports nothing else of legion."""

from __future__ import annotations

from legion.contracts import headers, subjects
from legion.contracts.agent_events import TaskCompleted, TaskFailed, TaskStarted
from legion.contracts.base import Command, Event, Message, Reply, Request, UnknownEvent, contract_for, contracts
from legion.contracts.codec import Codec, decode, encode, peek_tag
from legion.contracts.commands import AssignTask, Cancel, ChatMessage, Steer
from legion.contracts.errors import (
    ConcurrencyConflict,
    ConfigError,
    ContractError,
    LegionError,
    NotFound,
    PermissionDenied,
    RequestTimeout,
    Unavailable,
)
from legion.contracts.http import HTTP_ERROR_CODES, HttpError, HttpErrorCode, HttpRequest, HttpResponse
from legion.contracts.ingest import ExternalEvent, IngestRejected
from legion.contracts.ledger import (
    BudgetExceeded,
    Commit,
    CostRow,
    CostsQuery,
    CostsReport,
    LedgerAck,
    Release,
    Reserve,
    Reserved,
    UsageRecorded,
)
from legion.contracts.lifecycle import ActorStarted, ActorStopped, DeadLettered, Heartbeat
from legion.contracts.names import ActorName, AgentName, ProjectName, SourceName, validate_token
from legion.contracts.schema import json_schemas, write_schemas
from legion.contracts.service import ServiceError
from legion.contracts.vault import (
    LLM_ERROR_CODES,
    LlmChunk,
    LlmError,
    LlmErrorCode,
    LlmRefused,
    LlmReply,
    LlmRequest,
    ModelCalled,
)

__all__ = [
    "HTTP_ERROR_CODES",
    "LLM_ERROR_CODES",
    "ActorName",
    "ActorStarted",
    "ActorStopped",
    "AgentName",
    "AssignTask",
    "BudgetExceeded",
    "Cancel",
    "ChatMessage",
    "Codec",
    "Command",
    "Commit",
    "ConcurrencyConflict",
    "ConfigError",
    "ContractError",
    "CostRow",
    "CostsQuery",
    "CostsReport",
    "DeadLettered",
    "Event",
    "ExternalEvent",
    "Heartbeat",
    "HttpError",
    "HttpErrorCode",
    "HttpRequest",
    "HttpResponse",
    "IngestRejected",
    "LedgerAck",
    "LegionError",
    "LlmChunk",
    "LlmError",
    "LlmErrorCode",
    "LlmRefused",
    "LlmReply",
    "LlmRequest",
    "Message",
    "ModelCalled",
    "NotFound",
    "PermissionDenied",
    "ProjectName",
    "Release",
    "Reply",
    "Request",
    "RequestTimeout",
    "Reserve",
    "Reserved",
    "ServiceError",
    "SourceName",
    "Steer",
    "TaskCompleted",
    "TaskFailed",
    "TaskStarted",
    "Unavailable",
    "UnknownEvent",
    "UsageRecorded",
    "contract_for",
    "contracts",
    "decode",
    "encode",
    "headers",
    "json_schemas",
    "peek_tag",
    "subjects",
    "validate_token",
    "write_schemas",
]
