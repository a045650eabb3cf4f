"""Credentials: files are private, removed and expired credentials cannot connect, ingest
credentials publish their own source and nothing else."""

from __future__ import annotations

import asyncio
import shutil
import stat
import time

import pytest

from legion.broker import Broker, ConnectSpec
from legion.broker.jwt import decode_claims, read_creds
from legion.contracts import ExternalEvent, PermissionDenied
from legion.contracts import subjects as subj
from legion.testing import TestFleet

pytestmark = [pytest.mark.nats, pytest.mark.security]


async def test_creds_files_are_mode_0600_under_creds_dir(legion_fleet: TestFleet) -> None:
    alpha = await legion_fleet.add_agent("alpha")
    assert alpha.creds == legion_fleet.server.state_dir / "creds" / f"{alpha.name}.creds"
    assert stat.S_IMODE(alpha.creds.stat().st_mode) == 0o600
    keys = legion_fleet.server.state_dir / "keys" / "accounts.json"
    assert stat.S_IMODE(keys.stat().st_mode) == 0o600


async def test_removed_agent_is_disconnected_and_cannot_reconnect(legion_fleet: TestFleet) -> None:
    fleet = legion_fleet
    alpha = await fleet.add_agent("alpha")
    kept = alpha.creds.with_suffix(".stolen")
    shutil.copy(alpha.creds, kept)  # an attacker kept a copy of the file
    closed = asyncio.Event()

    async def on_closed() -> None:
        closed.set()

    live = await Broker.connect(
        ConnectSpec(url=fleet.server.url, creds=alpha.creds, max_reconnect_attempts=1, reconnect_wait=0.1),
        closed_cb=on_closed,
    )
    await live.js_publish(subj.EVENTS.render(source=alpha.name, type="ping"), b"{}")  # works before removal
    await fleet.remove_agent(alpha)
    await asyncio.wait_for(closed.wait(), 10)
    assert not alpha.creds.exists()
    with pytest.raises(PermissionDenied, match="credential refused"):
        await Broker.connect(ConnectSpec(url=fleet.server.url, creds=kept, max_reconnect_attempts=0, connect_timeout=2))
    # other agents are unaffected
    beta = await fleet.add_agent("beta")
    b = await fleet.connect(beta.creds)
    await b.js_publish(subj.EVENTS.render(source=beta.name, type="ping"), b"{}")


POLL_S = 0.2  # between two connection attempts while waiting (bounded) for the expiry


async def test_expired_credential_cannot_connect(legion_fleet: TestFleet) -> None:
    """The server refuses a credential once its JWT has expired, and only then.

    No race with a busy machine: the same permissions with a long expiry connect (so a refusal is the
    expiry's doing), and the short-lived one is tried until the server refuses it, within a deadline,
    checking that the refusal came after its expiry second."""
    alpha = await legion_fleet.add_agent("alpha", expires_in=1)
    lasting = await legion_fleet.add_agent("lasting", expires_in=3600)
    jwt, _seed = read_creds(alpha.creds.read_text())
    expires_at = decode_claims(jwt)["exp"]
    lasting_spec = ConnectSpec(url=legion_fleet.server.url, creds=lasting.creds, max_reconnect_attempts=0)
    async with await Broker.connect(lasting_spec):
        pass
    spec = ConnectSpec(url=legion_fleet.server.url, creds=alpha.creds, max_reconnect_attempts=0, connect_timeout=2)
    deadline = expires_at + 30  # JWT expiry has one-second resolution; the server shares this machine's clock
    refused: PermissionDenied | None = None
    refused_at = 0.0
    while refused is None and time.time() < deadline:
        try:
            async with await Broker.connect(spec):
                pass
        except PermissionDenied as exc:
            refused, refused_at = exc, time.time()
        else:
            await asyncio.sleep(POLL_S)
    assert refused is not None, "the expired credential was still accepted"
    assert "credential refused" in str(refused)
    assert refused_at >= expires_at, "refused before its expiry: something else than the expiry refused it"


async def test_ingest_credential_publishes_its_own_source_only(legion_fleet: TestFleet) -> None:
    fleet = legion_fleet
    source, creds = fleet.add_ingest("github")
    other, _ = fleet.add_ingest("stripe")
    ext = await fleet.connect(creds, name="external")
    ack = await ext.js_publish(
        subj.EXT.render(source=source, type="push"), ExternalEvent(kind="push", data={"ref": "main"})
    )
    assert ack.stream == "EVENTS"
    stored = await fleet.admin.js.get_msg("EVENTS", ack.seq)
    assert stored.subject == subj.EXT.render(source=source, type="push")
    refused = [
        subj.EXT.render(source=other, type="charge"),
        subj.EVENTS.render(source=source, type="push"),
        subj.AGENT_INBOX.render(agent=source),
        subj.VAULT_LLM.render(agent=source),
        "$KV.bb_x.k",
        "$JS.API.STREAM.LIST",
        "JSL.API.STREAM.LIST",
    ]
    for subject in refused:
        with pytest.raises(PermissionDenied):
            await ext.publish(subject, b"{}", confirm=True)
    for subject in (">", subj.EXT.wildcard(), "_INBOX.>"):
        with pytest.raises(PermissionDenied):
            await ext.subscribe(subject)
