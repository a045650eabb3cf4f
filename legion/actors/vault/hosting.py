"""How the vault is hosted and what its credential allows; light to import (no LiteLLM), for the launcher."""

from __future__ import annotations

from collections.abc import Iterable

from legion.broker import Permissions, service_permissions
from legion.contracts import subjects as subj
from legion.runtime.clients import LEDGER_SERVICE
from legion.runtime.host.actor_host import HostSpec, ServiceSpec

__all__ = ["QUEUE", "host_spec", "vault_permissions"]

QUEUE = "vault"
"""The queue group of every vault instance: each request is answered by one of them."""


def host_spec(*, agents: Iterable[str] | None = None, queue: str = QUEUE, heartbeat_s: float = 5.0) -> HostSpec:
    """How to host the vault: every agent's subjects (``legion.vault.*.llm``, ``.http`` and ``.budget``)
    in queue group ``vault``.

    ``agents`` gives one subscription per agent and subject instead of the wildcards: the vault
    process passes every agent of legion.yaml, so each agent's requests wait in their own
    subscription's queue and a flood from one agent is never read in front of another's request
    (tests pass their own agents, sharing one server with other vaults). The host does not bound
    the requests in flight (``concurrency=None``): it hands each to the vault at once, whose
    scheduler admits it in the calling agent's own lane.
    """
    templates = (subj.VAULT_LLM, subj.VAULT_HTTP, subj.VAULT_BUDGET)
    if agents is None:
        subjects = [t.wildcard() for t in templates]
    else:
        subjects = [t.render(agent=a) for a in agents for t in templates]
    return HostSpec(
        services=tuple(ServiceSpec(subject=s, queue=queue, concurrency=None) for s in subjects), heartbeat_s=heartbeat_s
    )


def vault_permissions(
    name: str, *, ledger_service: str = LEDGER_SERVICE, serves: Iterable[str] | None = None
) -> Permissions:
    """The vault's LEGION credential: serve LLM (and HTTP proxy) calls, ask the ledger, append to LEDGER,
    stream tokens. ``serves`` narrows the served subjects (tests); the default is every agent's."""
    return service_permissions(
        name,
        serves=list(serves)
        if serves is not None
        else [subj.VAULT_LLM.wildcard(), subj.VAULT_HTTP.wildcard(), subj.VAULT_BUDGET.wildcard()],
        publishes=[
            subj.SERVICE.wildcard(service=ledger_service),
            subj.LEDGER.wildcard(),
            subj.STREAM.wildcard(),
        ],
        jetstream=(),  # it only appends (events, LEDGER): no stream, consumer or purge rights
    )
