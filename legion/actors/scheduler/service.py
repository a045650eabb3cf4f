"""How a fleet runs its scheduler: the host spec, the NATS permissions and the process factory."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Final

from legion.actors.scheduler.actor import Scheduler
from legion.actors.scheduler.spec import SchedulerSpec
from legion.actors.scheduler.stream import stream_subjects
from legion.actors.scheduler.validate import Limits, check_schedule
from legion.broker import Permissions, service_permissions
from legion.contracts import subjects as subj
from legion.contracts.errors import ConfigError
from legion.contracts.scheduler import SchedulePut
from legion.runtime.config import FleetConfig, declared_puts
from legion.runtime.host import Actor, HostSpec, ServiceSpec

__all__ = ["QUEUE", "check_declared", "scheduler_factory", "scheduler_host_spec", "scheduler_permissions"]

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


def check_declared(puts: list[SchedulePut], limits: Limits, now_ns: int) -> None:
    """legion.yaml's schedules against the scheduler's rules (cron syntax, minimum interval, caps);
    ConfigError naming the schedule. A one-shot ``at`` already past is let through: the sync leaves an
    unchanged one alone and reports a new one as refused."""
    per_agent: dict[str, int] = {}
    for put in puts:
        try:
            check_schedule(
                put.agent,
                put.schedule_id,
                put.spec,
                put.policy,
                put.task,
                limits=limits,
                now_ns=0 if put.spec.at else now_ns,
                existing=per_agent.get(put.agent, 0),
                replaces=False,
            )
        except ConfigError as exc:
            raise ConfigError(f"legion.yaml: schedules.{put.schedule_id}: {exc}") from None
        per_agent[put.agent] = per_agent.get(put.agent, 0) + 1


async def scheduler_factory(name: str, config: FleetConfig, fleet_dir: Path) -> tuple[Actor, HostSpec]:
    """The :data:`~legion.runtime.host.ActorFactory` of ``python -m legion.actors.scheduler``: the
    scheduler of the whole fleet, holding legion.yaml's ``schedules:`` (checked here: a bad one is a
    configuration error, exit code 2, so ``legion up`` fails naming it)."""
    del fleet_dir
    spec = SchedulerSpec()
    puts = declared_puts(config.schedules)
    check_declared(puts, spec.limits, spec.clock.now_ns())
    return Scheduler(name, replace(spec, declared=tuple(puts))), scheduler_host_spec()
