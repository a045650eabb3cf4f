"""The trusted actors' credentials carry only the JetStream API they use: with the vault's or the
ledger's credential, deleting or purging a stream, or reading another stream, is refused by the
server (both succeeded with the vault's credential before)."""

from __future__ import annotations

import pytest

from legion.actors.ledger import ledger_permissions
from legion.actors.vault import vault_permissions
from legion.broker import Permissions
from legion.contracts import PermissionDenied
from legion.testing import TestFleet

pytestmark = [pytest.mark.nats, pytest.mark.security]

FORBIDDEN = [
    ("STREAM.DELETE.EVENTS", None),
    ("STREAM.PURGE.INBOX", None),
    ("STREAM.PURGE.LEDGER", None),
    ("STREAM.INFO.EVENTS", None),
    ("CONSUMER.CREATE.INBOX", {"stream_name": "INBOX", "config": {"ack_policy": "none"}}),
    ("STREAM.LIST", None),
]


def _perms(kind: str, name: str) -> Permissions:
    return vault_permissions(name) if kind == "vault" else ledger_permissions(name)


@pytest.mark.parametrize("kind", ["vault", "ledger"])
@pytest.mark.parametrize(("api", "body"), FORBIDDEN, ids=[a for a, _ in FORBIDDEN])
async def test_a_service_credential_cannot_touch_other_streams(
    legion_fleet: TestFleet, kind: str, api: str, body: object
) -> None:
    name = legion_fleet.name(kind)
    creds = legion_fleet.server.auth.issue_service(name, _perms(kind, name))
    service = await legion_fleet.connect(creds, name=name)
    with pytest.raises(PermissionDenied):
        await service.js_api(api, body, timeout=5)
    assert (await legion_fleet.admin.js.stream_info("EVENTS")).config.name == "EVENTS", "nothing was deleted"


async def test_the_ledger_still_reads_its_own_stream(legion_fleet: TestFleet) -> None:
    name = legion_fleet.name("ledger")
    creds = legion_fleet.server.auth.issue_service(name, ledger_permissions(name))
    ledger = await legion_fleet.connect(creds, name=name)
    info = await ledger.js_api("STREAM.INFO.LEDGER", timeout=5)
    assert info["config"]["name"] == "LEDGER"
