"""The vault actor: serves ``legion.vault.<agent>.llm`` for every agent, with the fleet's provider keys.

Many instances may run (queue group ``vault``); each holds its own model health and nothing else,
so none assumes it is the only one. Configuration and keys are read once, at construction.
"""

from __future__ import annotations

import asyncio
import time
import traceback
from collections.abc import Iterable
from dataclasses import dataclass

from legion.actors.vault.calls import CallSettings, LlmCall
from legion.actors.vault.health import Clock, ModelHealth
from legion.actors.vault.keys import ProviderKeys, install_log_scrubber, uninstall_log_scrubber
from legion.actors.vault.policy import Policy
from legion.broker import Permissions, service_permissions
from legion.contracts import subjects as subj
from legion.contracts.vault import LlmError, LlmReply, LlmRequest
from legion.runtime.actor import Actor, Context, handler
from legion.runtime.config import FleetConfig
from legion.runtime.host import HostSpec, ServiceSpec

__all__ = ["QUEUE", "Vault", "VaultSpec", "host_spec", "vault_permissions"]

QUEUE = "vault"


@dataclass(frozen=True, slots=True)
class VaultSpec:
    ledger_service: str = "ledger"
    """The ledger's service token: requests go to ``legion.svc.<ledger_service>.<op>``."""
    agents_account: str | None = None
    """The AGENTS account public key; requests from any other account are denied. None: not pinned."""
    ledger_timeout_s: float = 2.0
    default_max_tokens: int = 4096
    """Cap on completion tokens when neither the request, the agent nor the model sets one."""
    reservation_ttl_s: float = 300.0


class Vault(Actor):
    kind = "vault"

    def __init__(
        self,
        name: str,
        config: FleetConfig,
        keys: ProviderKeys,
        spec: VaultSpec | None = None,
        *,
        clock: Clock = time.monotonic,
    ) -> None:
        super().__init__(name)
        self.spec = spec or VaultSpec()
        self.keys = keys
        self.policy = Policy(config, keys, default_max_tokens=self.spec.default_max_tokens)
        self.health = ModelHealth(clock)
        self._settings = CallSettings(
            policy=self.policy,
            health=self.health,
            keys=keys,
            ledger_service=self.spec.ledger_service,
            ledger_timeout_s=self.spec.ledger_timeout_s,
            reservation_ttl_s=self.spec.reservation_ttl_s,
            agents_account=self.spec.agents_account,
        )

    async def on_start(self, ctx: Context) -> None:
        install_log_scrubber(self.keys)
        self.log.info(
            "vault.ready",
            models=sorted(self.policy.routes),
            keys=self.keys.names(),
            unpriced=self.policy.unpriced(),
            keyless=self.policy.keyless(),
            agents_account_pinned=self.spec.agents_account is not None,
        )
        if self.spec.agents_account is None:
            self.log.warning("vault.agents_account_unpinned")

    async def on_stop(self) -> None:
        uninstall_log_scrubber(self.keys)

    @handler
    async def llm(self, req: LlmRequest, ctx: Context) -> LlmReply | LlmError:
        try:
            return await LlmCall(self._settings, req, ctx).run()
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - never let the host format an error that may hold a key
            self.log.error(  # noqa: TRY400 - no exc_info: a traceback's text is scrubbed into `detail` instead
                "vault.internal_error",
                error_type=type(exc).__name__,
                detail=self.keys.scrub("".join(traceback.format_exception(exc))),
            )
            return LlmError(
                request_id=req.request_id, code="internal", message=f"internal error ({type(exc).__name__})"
            )


def host_spec(*, agents: Iterable[str] | None = None, queue: str = QUEUE, heartbeat_s: float = 5.0) -> HostSpec:
    """How to host the vault: every agent's subject (``legion.vault.*.llm``) in queue group ``vault``.

    ``agents`` limits it to those agents' subjects (tests sharing one server with other vaults).
    """
    subjects = [subj.VAULT_LLM.wildcard()] if agents is None else [subj.VAULT_LLM.render(agent=a) for a in agents]
    return HostSpec(services=tuple(ServiceSpec(subject=s, queue=queue) for s in subjects), heartbeat_s=heartbeat_s)


def vault_permissions(name: str, *, ledger_service: str = "ledger", serves: Iterable[str] | None = None) -> Permissions:
    """The vault's LEGION credential: serve LLM calls, ask the ledger, append to LEDGER, stream tokens."""
    return service_permissions(
        name,
        serves=list(serves) if serves is not None else [subj.VAULT_LLM.wildcard()],
        publishes=[
            subj.SERVICE.wildcard(service=ledger_service),
            subj.LEDGER.wildcard(),
            subj.STREAM.wildcard(),
        ],
    )
