"""How a fleet runs its scheduler: the host spec, the NATS permissions and the process factory."""

from __future__ import annotations

from pathlib import Path
from typing import Final

from legion.actors.scheduler.actor import Scheduler
from legion.actors.scheduler.spec import SchedulerSpec
from legion.actors.scheduler.stream import stream_subjects
from legion.broker import Permissions, service_permissions
from legion.contracts import subjects as subj
from legion.runtime.config import FleetConfig
from legion.runtime.host import Actor, HostSpec, ServiceSpec

__all__ = ["QUEUE", "scheduler_factory", "scheduler_host_spec", "scheduler_permissions"]

QUEUE: Final = "scheduler"
"""Scheduler instances share agents' requests in this queue group."""


def _served(agents: tuple[str, ...] | None, service: str) -> list[str]:
    trusted = subj.SERVICE.wildcard(service=service)
    if agents is None:
        return [subj.SCHEDULER.wildcard(), trusted]
    return [*(subj.SCHEDULER.wildcard(agent=a) for a in agents), trusted]


def scheduler_host_spec(agents: tuple[str, ...] | None = None, *, service: str = QUEUE, queue: str = QUEUE) -> HostSpec:
    """Serve ``legion.scheduler.<agent>.<op>`` (every agent's, or only ``agents``') and the trusted
    ``legion.svc.<service>.<op>``, in queue ``scheduler``."""
    return HostSpec(services=tuple(ServiceSpec(subject=s, queue=queue) for s in _served(agents, service)))


def scheduler_permissions(
    name: str = "scheduler", *, agents: tuple[str, ...] | None = None, service: str = QUEUE
) -> Permissions:
    """Serve agents' schedule requests and the trusted ones, append to SCHEDULES, send tasks to every
    agent's inbox, emit its own events, use JetStream (its stream, its readers)."""
    return service_permissions(
        name,
        serves=_served(agents, service),
        publishes=[*stream_subjects(agents), subj.INBOX_ALL],
    )


async def scheduler_factory(name: str, config: FleetConfig, fleet_dir: Path) -> tuple[Actor, HostSpec]:
    """The :data:`~legion.runtime.host.ActorFactory` of ``python -m legion.actors.scheduler``.

    Limits are the defaults until legion.yaml has a ``schedules:`` section (after the config split).
    """
    del config, fleet_dir
    return Scheduler(name, SchedulerSpec()), scheduler_host_spec()
