"""Limits that keep one agent from crowding out the others: each agent's inbox has its own depth cap
(one subject of INBOX each), and every bucket bounds its value size."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from legion.broker.streams import MAX_MSG_BYTES
from legion.contracts import AssignTask, QuotaExceeded
from legion.contracts import subjects as subj
from legion.runtime import FleetNats

pytestmark = pytest.mark.nats


@pytest.fixture
async def fleet(tmp_path: Path) -> AsyncIterator[FleetNats]:
    (tmp_path / "legion.yaml").write_text(
        "runtime: {inbox_max_depth: 3}\nagents:\n  alpha: {projects: [p1]}\n  beta: {}\n"
    )
    nats = FleetNats(tmp_path)
    await nats.start()
    try:
        yield nats
    finally:
        await nats.stop()


async def test_a_full_inbox_refuses_with_a_typed_error_and_others_still_take_work(fleet: FleetNats) -> None:
    admin = fleet.admin
    assert admin is not None
    alpha, beta = subj.AGENT_INBOX.render(agent="alpha"), subj.AGENT_INBOX.render(agent="beta")
    for i in range(3):
        await admin.js_publish(alpha, AssignTask(task_id=f"a{i}", text="work"))
    with pytest.raises(QuotaExceeded) as caught:
        await admin.js_publish(alpha, AssignTask(task_id="a3", text="one too many"))
    assert "runtime.inbox_max_depth" in str(caught.value) and caught.value.retryable
    ack = await admin.js_publish(beta, AssignTask(task_id="b0", text="work"))
    assert ack.seq > 0, "another agent's inbox is not affected"
    info = await admin.js.stream_info("INBOX")
    assert info.state.messages == 4


async def test_buckets_are_bounded(fleet: FleetNats) -> None:
    admin = fleet.admin
    assert admin is not None
    for bucket in ("KV_bb_p1", "KV_ag_alpha"):
        config = (await admin.js.stream_info(bucket)).config
        assert config.max_msg_size == MAX_MSG_BYTES
