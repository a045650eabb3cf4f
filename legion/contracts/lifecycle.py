"""Actor lifecycle events and the dead-letter record."""

from __future__ import annotations

from legion.contracts.base import Event, Reply, Request

__all__ = ["ActorStarted", "ActorStopped", "DeadLettered", "Heartbeat", "RestartActor", "RestartReply"]


class ActorStarted(Event, frozen=True, kw_only=True, tag="actor.started.v1"):
    actor: str
    kind: str = ""
    pid: int = 0
    version: str = ""


class ActorStopped(Event, frozen=True, kw_only=True, tag="actor.stopped.v1"):
    actor: str
    reason: str = ""
    exit_code: int | None = None


class Heartbeat(Event, frozen=True, kw_only=True, tag="actor.heartbeat.v1"):
    """Published on ``legion.health.<actor>`` (core NATS)."""

    actor: str
    seq: int
    uptime_s: float = 0.0
    inflight: int = 0


class DeadLettered(Event, frozen=True, kw_only=True, tag="deadletter.v1"):
    """A poison message was terminated after ``deliveries`` attempts; the consumer moved on."""

    stream: str
    subject: str
    sequence: int
    deliveries: int
    error: str
    message_type: str = ""


class RestartActor(Request, frozen=True, kw_only=True, tag="fleet.restart.v1"):
    """Asks the launcher (``legion.control.launcher.restart``) to restart one actor now."""

    actor: str


class RestartReply(Reply, frozen=True, kw_only=True, tag="fleet.restart.reply.v1"):
    actor: str
    ok: bool
    message: str = ""
