"""The ledger's NATS permissions: a service credential that may also append to LEDGER."""

from __future__ import annotations

from legion.broker import Permissions, service_permissions
from legion.contracts import subjects as subj
from legion.runtime.clients import LEDGER_SERVICE

__all__ = ["ledger_permissions"]


def ledger_permissions(actor: str = LEDGER_SERVICE, *, service: str = LEDGER_SERVICE) -> Permissions:
    """Serve ``legion.svc.<service>.*``, append to ``legion.ledger.>``, emit its own events, use JetStream."""
    return service_permissions(actor, serves=[subj.SERVICE.wildcard(service=service)], publishes=[subj.LEDGER_ALL])
