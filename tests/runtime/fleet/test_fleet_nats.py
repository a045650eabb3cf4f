"""FleetNats: the NATS side of `legion up`, across restarts and config changes."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from legion.broker import Broker, ConnectSpec
from legion.contracts import PermissionDenied
from legion.contracts import subjects as subj
from legion.runtime import FleetNats

pytestmark = pytest.mark.nats


async def test_agent_removed_from_config_loses_its_credentials(tmp_path: Path) -> None:
    (tmp_path / "legion.yaml").write_text("agents:\n  alpha: {}\n  beta: {}\n")
    async with FleetNats(tmp_path) as fleet:
        creds = fleet.state_dir / "creds" / "alpha.creds"
        stolen = tmp_path / "alpha.copy"
        shutil.copy(creds, stolen)
        async with await Broker.connect(ConnectSpec(url=fleet.url, creds=stolen)) as alpha:
            await alpha.js_publish(subj.EVENTS.render(source="alpha", type="ping"), b"{}")
    (tmp_path / "legion.yaml").write_text("agents:\n  beta: {}\n")
    async with FleetNats(tmp_path) as fleet:
        assert not (fleet.state_dir / "creds" / "alpha.creds").exists()
        with pytest.raises(PermissionDenied, match="credential refused"):
            await Broker.connect(ConnectSpec(url=fleet.url, creds=stolen, max_reconnect_attempts=0, connect_timeout=2))
        beta = fleet.state_dir / "creds" / "beta.creds"
        async with await Broker.connect(ConnectSpec(url=fleet.url, creds=beta)) as b:
            await b.js_publish(subj.EVENTS.render(source="beta", type="ping"), b"{}")
        health = await fleet.health()
        assert health.streams["EVENTS"] == 2, "history survived the restart"


async def test_admin_credential_is_reused_across_restarts(tmp_path: Path) -> None:
    async with FleetNats(tmp_path) as fleet:
        first = (fleet.state_dir / "creds" / "admin.creds").read_text()
    async with FleetNats(tmp_path) as fleet:
        assert (fleet.state_dir / "creds" / "admin.creds").read_text() == first
