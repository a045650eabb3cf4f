"""The ledger's NATS permissions: a service credential that may also append to LEDGER, with the
JetStream API narrowed to its own stream (no delete or purge of anything)."""

from __future__ import annotations

from legion.broker import LEDGER, Permissions, service_permissions
from legion.contracts import subjects as subj
from legion.runtime.clients import LEDGER_SERVICE

__all__ = ["ledger_permissions"]


def ledger_permissions(actor: str = LEDGER_SERVICE, *, service: str = LEDGER_SERVICE) -> Permissions:
    """Serve ``legion.svc.<service>.*``, append to ``legion.ledger.>``, emit its own events, use JetStream."""
    return service_permissions(
        actor,
        serves=[subj.SERVICE.wildcard(service=service)],
        publishes=[subj.LEDGER_ALL],
        jetstream=_ledger_api(LEDGER),
    )


def _ledger_api(stream: str) -> tuple[str, ...]:
    """What the ledger calls on its own stream only: stream info and direct gets (start-up and the
    sequence check), its feed's ephemeral push consumer (create, delete, flow control)."""
    return (
        f"$JS.API.STREAM.INFO.{stream}",
        f"$JS.API.DIRECT.GET.{stream}",
        f"$JS.API.DIRECT.GET.{stream}.>",
        f"$JS.API.CONSUMER.CREATE.{stream}",
        f"$JS.API.CONSUMER.CREATE.{stream}.>",
        f"$JS.API.CONSUMER.DELETE.{stream}.>",
        f"$JS.FC.{stream}.>",
    )
