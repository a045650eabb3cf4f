"""An agent's (or ingest) credential carries connection limits in its JWT: at most AGENT_MAX_SUBS
subscriptions and MAX_USER_PAYLOAD bytes a message. Past them the server cuts that connection
only; other agents and the fleet are unaffected."""

from __future__ import annotations

import nats.errors
import pytest

from legion.broker.jwt import decode_claims, read_creds
from legion.broker.permissions import AGENT_MAX_SUBS, MAX_USER_PAYLOAD
from legion.contracts import subjects as subj
from legion.testing import TestFleet

pytestmark = [pytest.mark.nats, pytest.mark.security]


async def test_agent_jwt_carries_the_limits(legion_fleet: TestFleet) -> None:
    agent = await legion_fleet.add_agent("limits")
    nats_claims = decode_claims(read_creds(agent.creds.read_text())[0])["nats"]
    assert (nats_claims["subs"], nats_claims["payload"]) == (AGENT_MAX_SUBS, MAX_USER_PAYLOAD)
    _source, creds = legion_fleet.add_ingest("limitsrc")
    ingest = decode_claims(read_creds(creds.read_text())[0])["nats"]
    assert (ingest["subs"], ingest["payload"]) == (AGENT_MAX_SUBS, MAX_USER_PAYLOAD)


async def test_a_subscription_flood_cuts_only_that_connection(legion_fleet: TestFleet) -> None:
    flooder = await legion_fleet.add_agent("flooder")
    other = await legion_fleet.add_agent("other")
    bad = await legion_fleet.connect(flooder.creds, name=flooder.name)
    good = await legion_fleet.connect(other.creds, name=other.name)
    prefix = f"_INBOX.{flooder.name}"

    async def flood() -> None:
        for i in range(AGENT_MAX_SUBS * 4):  # bounded: the server stops it well before
            await bad.subscribe(f"{prefix}.s{i}")

    with pytest.raises(nats.errors.Error):
        await flood()
    ack = await good.js_publish(subj.EVENTS.render(source=other.name, type="still.here"), b"{}")
    assert ack.stream == "EVENTS", "another agent is unaffected"
