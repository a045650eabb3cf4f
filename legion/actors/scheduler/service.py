"""How a fleet runs its scheduler: the host spec, the NATS permissions and the process factory."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Final

from legion.actors.scheduler.actor import Scheduler
from legion.actors.scheduler.spec import SchedulerSpec
from legion.actors.scheduler.stream import SCHEDULES, stream_subjects
from legion.actors.scheduler.validate import Limits, check_schedule
from legion.broker import EVENTS, Permissions, service_permissions
from legion.contracts import subjects as subj
from legion.contracts.errors import ConfigError
from legion.contracts.scheduler import SchedulePut
from legion.runtime.config import FleetConfig, declared_puts
from legion.runtime.host import Actor, HostSpec, ServiceSpec

__all__ = [
    "QUEUE",
    "check_declared",
    "scheduler_api",
    "scheduler_factory",
    "scheduler_host_spec",
    "scheduler_permissions",
]

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
    name: str = "scheduler",
    *,
    agents: tuple[str, ...] | None = None,
    service: str = QUEUE,
    stream: str = SCHEDULES,
    events_stream: str = EVENTS,
) -> Permissions:
    """Serve agents' schedule requests and the trusted ones, append to SCHEDULES, send tasks to every
    agent's inbox, emit its own events, and the JetStream API it uses (:func:`scheduler_api`)."""
    return service_permissions(
        name,
        serves=_served(agents, service),
        publishes=[*stream_subjects(agents), subj.INBOX_ALL],
        jetstream=scheduler_api(stream, events_stream),
    )


def scheduler_api(stream: str = SCHEDULES, events_stream: str = EVENTS) -> tuple[str, ...]:
    """The JetStream API the scheduler calls, and nothing that deletes or purges:

    - its stream: info, create when missing (a scheduler run without ``legion up``), and the
      ephemeral pull consumer of its feed (create, next, delete);
    - EVENTS: the task-end feed's consumer, and one direct get by start time (where to start);
    - any stream, read only: ``STREAM.INFO`` and ``DIRECT.GET`` for probes, which may watch any
      stream (``EVENTS``, a blackboard's ``KV_bb_<project>``). Direct gets can read any message of
      any stream: the price of probes; the scheduler can already send any agent a task.
    """
    feeds = []
    for name in dict.fromkeys((stream, events_stream)):
        feeds += [
            f"$JS.API.CONSUMER.CREATE.{name}",
            f"$JS.API.CONSUMER.CREATE.{name}.>",
            f"$JS.API.CONSUMER.MSG.NEXT.{name}.>",
            f"$JS.API.CONSUMER.DELETE.{name}.>",
        ]
    return (
        f"$JS.API.STREAM.CREATE.{stream}",
        *feeds,
        "$JS.API.STREAM.INFO.*",
        "$JS.API.DIRECT.GET.*",
        "$JS.API.DIRECT.GET.*.>",
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
