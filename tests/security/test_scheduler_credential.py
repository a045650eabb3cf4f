"""The scheduler's credential carries only the JetStream API it uses (``scheduler_api()``): it creates
its own stream when missing and reads streams (probes), but cannot delete, purge or update a stream,
list streams, create another stream, or touch consumers outside its own feeds (its stream, EVENTS)."""

from __future__ import annotations

import pytest

from legion.actors.scheduler import ensure_stream, scheduler_permissions
from legion.broker import Broker
from legion.contracts import PermissionDenied
from legion.testing import TestFleet

pytestmark = [pytest.mark.nats, pytest.mark.security]


async def _scheduler(fleet: TestFleet) -> tuple[Broker, str]:
    name, stream = fleet.name("scheduler"), f"SCHED_{fleet.id}"
    perms = scheduler_permissions(name, agents=(fleet.name("alpha"),), service=name, stream=stream)
    creds = fleet.server.auth.issue_service(name, perms)
    return await fleet.connect(creds, name=name), stream


def _forbidden(stream: str) -> list[tuple[str, object]]:
    return [
        ("STREAM.DELETE.EVENTS", None),
        ("STREAM.PURGE.INBOX", None),
        ("STREAM.PURGE.LEDGER", None),
        (f"STREAM.DELETE.{stream}", None),
        (f"STREAM.PURGE.{stream}", None),
        (f"STREAM.UPDATE.{stream}", {"name": stream, "subjects": ["legion.schedules.>"]}),
        (f"STREAM.CREATE.X{stream}", {"name": f"X{stream}", "subjects": [f"x.{stream}.>"]}),
        ("CONSUMER.CREATE.INBOX", {"stream_name": "INBOX", "config": {"ack_policy": "none"}}),
        ("CONSUMER.DELETE.INBOX.anything", None),
        ("STREAM.LIST", None),
    ]


async def test_the_scheduler_credential_cannot_change_streams(legion_fleet: TestFleet) -> None:
    scheduler, stream = await _scheduler(legion_fleet)
    assert await ensure_stream(scheduler, stream, [f"legion.schedules.{legion_fleet.name('alpha')}.>"]) == 0
    assert (await scheduler.js_api("STREAM.INFO.EVENTS", timeout=5))["config"]["name"] == "EVENTS"  # probes
    for api, body in _forbidden(stream):
        with pytest.raises(PermissionDenied):
            await scheduler.js_api(api, body, timeout=5)
    info = await legion_fleet.admin.js.stream_info(stream)
    assert info.config.max_msgs_per_subject == 1, "created from the kind's StreamSpec, untouched since"
