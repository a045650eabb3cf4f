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

``legion up`` provisions the stream: the scheduler kind declares it (``kind.py``, ``streams``). A
scheduler started without the launcher (by hand, in tests) creates it if it is missing.
"""

from __future__ import annotations

from typing import Final

from legion.actors.scheduler.table import ScheduleEvent, op_of
from legion.broker import Broker, FleetLayout, PubAck, StreamSpec, provision
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
    "schedules_stream",
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


def schedules_stream(name: str = SCHEDULES, subjects: list[str] | None = None) -> StreamSpec:
    """The SCHEDULES stream as the launcher provisions it (the scheduler kind declares it)."""
    return StreamSpec(
        name=name,
        subjects=tuple(subjects or [subj.SCHEDULES_ALL]),
        max_msgs_per_subject=1,
        description="Schedules: definitions and the last fired/skipped slot of each (the scheduler's truth)",
    )


async def ensure_stream(broker: Broker, name: str = SCHEDULES, subjects: list[str] | None = None) -> int:
    """Create the stream if missing (``legion up`` provisions it; a scheduler run by hand or in a test
    creates its own); returns its last sequence."""
    try:
        info = await broker.js_api(f"STREAM.INFO.{name}")
    except NotFound:
        await provision(broker, FleetLayout(streams=(schedules_stream(name, subjects),)))
        info = await broker.js_api(f"STREAM.INFO.{name}")
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
