"""The scheduler as an actor kind: one per fleet, after the vault, before the agents (they ask it for
their schedules). It declares its SCHEDULES stream, which the launcher provisions."""

from __future__ import annotations

from legion.actors.scheduler.service import scheduler_permissions
from legion.actors.scheduler.stream import schedules_stream
from legion.runtime.clients.scheduler import SCHEDULER_SERVICE
from legion.runtime.kinds import ActorKind, singleton

__all__ = ["KIND"]


KIND = ActorKind(
    name="scheduler",
    module="legion.actors.scheduler",
    stage=30,
    instances=singleton("scheduler"),
    permissions=lambda name, _config: scheduler_permissions(name, service=SCHEDULER_SERVICE),
    streams=lambda _config: (schedules_stream(),),
    description="schedules (legion.yaml schedules:, agents' set_cron) that send tasks to agents",
)
