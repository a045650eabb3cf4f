"""The LEDGER feed: reply-subject metadata, and recovery when its consumer disappears."""

from __future__ import annotations

import uuid
from decimal import Decimal
from pathlib import Path

import pytest
from ledger_rig import start_ledger

from legion.actors.ledger import Budgets, Limits
from legion.actors.ledger.feed import parse_ack_subject
from legion.broker import LEDGER, LEGION_INBOX_PREFIX
from legion.contracts import Commit
from legion.contracts import subjects as subj
from legion.testing import TestFleet


def test_ack_subjects_of_both_formats_give_sequence_timestamp_and_pending() -> None:
    v1 = "$JS.ACK.LEDGER.abc.1.42.7.1795250993050396891.3"
    v2 = "$JS.ACK.hub.ACCHASH.LEDGER.abc.1.42.7.1795250993050396891.3.rand"
    assert parse_ack_subject(v1) == parse_ack_subject(v2) == (42, 7, 1795250993050396891, 3)
    assert parse_ack_subject("_INBOX.x") is None
    assert parse_ack_subject("$JS.ACK.LEDGER.abc.1.x.7.1.3") is None


@pytest.mark.nats
async def test_a_deleted_consumer_is_recreated_and_nothing_is_missed(legion_fleet: TestFleet, tmp_path: Path) -> None:
    fleet = legion_fleet
    agent = fleet.name("zeta")
    name = fleet.name("ledger")
    budgets = Budgets(agents={agent: Limits(daily_usd=Decimal("1.00"))})
    running = await start_ledger(fleet, tmp_path / "ledger.db", budgets, name=name, heartbeat_s=0.2)
    try:
        listing = await fleet.admin.js_api(f"CONSUMER.LIST.{LEDGER}", {"offset": 0})
        ours = [
            c["name"]
            for c in listing["consumers"]
            if str(c["config"].get("deliver_subject", "")).startswith(f"{LEGION_INBOX_PREFIX}.{name}.")
        ]
        assert len(ours) == 1
        await fleet.admin.js_api(f"CONSUMER.DELETE.{LEDGER}.{ours[0]}")

        spent = Commit(reservation_id=uuid.uuid4().hex, agent=agent, model="m", actual_usd=Decimal("0.95"))
        await fleet.admin.js_publish(subj.LEDGER.render(agent=agent, op="commit"), spent, msg_id=spent.reservation_id)
        # the Reserve's append conflicts with that Commit; the ledger waits for its re-created feed
        refused = await running.client.reserve(uuid.uuid4().hex, agent, "0.10")
        assert not refused.granted and refused.remaining_usd == Decimal("0.05")
    finally:
        await running.stop()
