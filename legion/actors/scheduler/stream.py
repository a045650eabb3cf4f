"""The SCHEDULES stream: where schedules live, how it is created, and conditional appends to it.

One subject set per schedule, ``legion.schedules.<agent>.<schedule>.<op>``, and **one message kept
per subject** (``max_msgs_per_subject: 1``). The fold needs only the latest event of each op of a
schedule (table.py explains why that gives the same table), so the stream holds at most seven
messages per schedule however long it runs, and a restart replays O(schedules), not O(firings).
The history of firings is kept on EVENTS (``schedule.fired`` / ``schedule.skipped``).

Appends are conditional on the schedule's own last sequence (``Nats-Expected-Last-Subject-Sequence``
with ``Nats-Expected-Last-Subject-Sequence-Subject`` = the schedule's wildcard): two scheduler
instances, or a firing racing a pause, cannot both win; the loser gets ConcurrencyConflict, catches
up and decides again.

The scheduler creates the stream itself on start (its service credential may use the JetStream API):
until actor kinds can declare their streams to the launcher, this keeps the change in this package.
"""

from __future__ import annotations

from typing import Final

from legion.actors.scheduler.table import ScheduleEvent, op_of
from legion.broker import Broker, PubAck
from legion.contracts import subjects as subj
from legion.contracts.errors import NotFound

__all__ = [
    "EXPECTED_LAST_SUBJECT_SEQUENCE",
    "EXPECTED_LAST_SUBJECT_SEQUENCE_SUBJECT",
    "SCHEDULES",
    "append",
    "ensure_stream",
    "schedule_subject",
    "schedule_wildcard",
    "stream_config",
    "stream_subjects",
]

SCHEDULES: Final = "SCHEDULES"

# JetStream headers; to move to legion/contracts/headers.py with the layout change on main
EXPECTED_LAST_SUBJECT_SEQUENCE: Final = "Nats-Expected-Last-Subject-Sequence"
EXPECTED_LAST_SUBJECT_SEQUENCE_SUBJECT: Final = "Nats-Expected-Last-Subject-Sequence-Subject"


def stream_subjects(agents: tuple[str, ...] | None = None) -> list[str]:
    """``legion.schedules.>``, or only these agents' schedules (a scheduler scoped to some agents)."""
    if agents is None:
        return [subj.SCHEDULES_ALL]
    return [subj.SCHEDULES.wildcard(agent=a) for a in agents]


def stream_config(name: str = SCHEDULES, subjects: list[str] | None = None) -> dict[str, object]:
    return {
        "name": name,
        "description": "Schedules: definitions and the last fired/skipped slot of each (the scheduler's truth)",
        "subjects": subjects or [subj.SCHEDULES_ALL],
        "retention": "limits",
        "max_msgs_per_subject": 1,
        "storage": "file",
        "num_replicas": 1,
        "max_msg_size": 1024 * 1024,
        "duplicate_window": 120 * 1_000_000_000,
        "allow_direct": True,
    }


async def ensure_stream(broker: Broker, name: str = SCHEDULES, subjects: list[str] | None = None) -> int:
    """Create the stream if missing; returns its last sequence."""
    try:
        info = await broker.js_api(f"STREAM.INFO.{name}")
    except NotFound:
        info = await broker.js_api(f"STREAM.CREATE.{name}", stream_config(name, subjects))
    return int(info.get("state", {}).get("last_seq", 0))


def schedule_subject(agent: str, schedule_id: str, op: str) -> str:
    return subj.SCHEDULES.render(agent=agent, schedule=schedule_id, op=op)


def schedule_wildcard(agent: str, schedule_id: str) -> str:
    return subj.SCHEDULES.wildcard(agent=agent, schedule=schedule_id)


async def append(broker: Broker, event: ScheduleEvent, *, expected_seq: int, msg_id: str, trace: str) -> PubAck:
    """Append ``event`` if the schedule's last sequence is still ``expected_seq`` (0: it has no messages).

    ConcurrencyConflict if something else landed on the schedule first.
    """
    headers = {
        EXPECTED_LAST_SUBJECT_SEQUENCE: str(expected_seq),
        EXPECTED_LAST_SUBJECT_SEQUENCE_SUBJECT: schedule_wildcard(event.agent, event.schedule_id),
    }
    subject = schedule_subject(event.agent, event.schedule_id, op_of(event))
    return await broker.js_publish(subject, event, trace=trace, msg_id=msg_id, headers=headers)
