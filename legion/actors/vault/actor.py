"""The vault actor: serves ``legion.vault.<agent>.llm`` and ``legion.vault.<agent>.http`` for every agent.

Many instances may run (queue group ``vault``); each holds its own model health and nothing else,
so none assumes it is the only one. Configuration, provider keys and agent credentials are read
once, at construction.

Every call is admitted per agent by the fair scheduler (:mod:`.scheduler`): the host hands each
request over at once (``ServiceSpec(concurrency=None)``, see :mod:`.hosting`), and the agent's lane
decides whether it starts, waits its turn or is refused (``busy`` / ``rate_limited``).
"""

from __future__ import annotations

import asyncio
import time
import traceback
from dataclasses import dataclass, field
from typing import Final

import msgspec
import structlog

from legion.actors.vault.budget import BudgetReader
from legion.actors.vault.caller import CallerDenied, identify_caller
from legion.actors.vault.calls import CallSettings, LlmCall
from legion.actors.vault.credentials import CredentialStore
from legion.actors.vault.health import Clock, ModelHealth
from legion.actors.vault.http_proxy import HttpProxy, HttpProxySpec
from legion.actors.vault.keys import ProviderKeys, install_log_scrubber, uninstall_log_scrubber
from legion.actors.vault.policy import Policy
from legion.actors.vault.scheduler import QuotaRefused, Scheduler, limits_from
from legion.contracts import subjects as subj
from legion.contracts.errors import LegionError
from legion.contracts.http import HttpError, HttpRequest, HttpResponse
from legion.contracts.vault import BudgetQuery, BudgetStatus, LlmError, LlmReply, LlmRequest
from legion.runtime.clients import LEDGER_SERVICE
from legion.runtime.config import FleetConfig
from legion.runtime.host.actor import Actor, Context, handler

__all__ = ["Vault", "VaultSpec"]

# log event names
INTERNAL_ERROR: Final = "vault.internal_error"
HTTP_DENIED: Final = "vault.http.denied"


@dataclass(frozen=True, slots=True)
class VaultSpec:
    ledger_service: str = LEDGER_SERVICE
    """The ledger's service token: requests go to ``legion.svc.<ledger_service>.<op>``."""
    agents_account: str | None = None
    """The AGENTS account public key; requests from any other account are denied. None: not pinned."""
    ledger_timeout_s: float = 2.0
    default_max_tokens: int = 4096
    """Cap on completion tokens when neither the request, the agent nor the model sets one."""
    reservation_ttl_s: float = 300.0
    http: HttpProxySpec = field(default_factory=HttpProxySpec)
    """Limits of the HTTP proxy (and, in tests only, its SSRF exemptions)."""


class Vault(Actor):
    kind = "vault"

    def __init__(
        self,
        name: str,
        config: FleetConfig,
        keys: ProviderKeys,
        spec: VaultSpec | None = None,
        *,
        credentials: CredentialStore | None = None,
        clock: Clock = time.monotonic,
    ) -> None:
        """``credentials``: the agent-tier credentials of the HTTP proxy (``CredentialStore.load(fleet_dir)``);
        None holds none, so only calls without ``$CRED{name}`` handles can succeed."""
        super().__init__(name)
        self.spec = spec or VaultSpec()
        self.keys = keys
        self.policy = Policy(config, keys, default_max_tokens=self.spec.default_max_tokens)
        self.health = ModelHealth(clock)
        self.scheduler = Scheduler(limits_from(config), concurrency=config.runtime.vault.concurrency)
        self._settings = CallSettings(
            policy=self.policy,
            health=self.health,
            keys=keys,
            ledger_service=self.spec.ledger_service,
            ledger_timeout_s=self.spec.ledger_timeout_s,
            reservation_ttl_s=self.spec.reservation_ttl_s,
            agents_account=self.spec.agents_account,
            scheduler=self.scheduler,
        )
        self._budgets = BudgetReader(config, self.spec.ledger_service, timeout_s=self.spec.ledger_timeout_s)
        store = credentials if credentials is not None else CredentialStore({})
        self.http_proxy = HttpProxy(config, store, spec=self.spec.http)
        self._redact_credentials = store.redactor()

    async def on_start(self, ctx: Context) -> None:
        install_log_scrubber(self.keys)
        self.log.info(
            "vault.ready",
            models=sorted(self.policy.routes),
            keys=self.keys.names(),
            credentials=sorted(self.http_proxy.credentials.names()),
            unpriced=self.policy.unpriced(),
            keyless=self.policy.keyless(),
            offline=self.policy.offline(),
            agents_account_pinned=self.spec.agents_account is not None,
        )
        if self.spec.agents_account is None:
            self.log.warning("vault.agents_account_unpinned")
        if self.spec.http.ssrf_exemptions:
            exempt = [f"{e.network}:{e.port}" for e in self.spec.http.ssrf_exemptions]
            self.log.warning("vault.http.ssrf_exemptions", exemptions=exempt)

    async def on_stop(self) -> None:
        uninstall_log_scrubber(self.keys)

    @handler
    async def llm(self, req: LlmRequest, ctx: Context) -> LlmReply | LlmError:
        try:
            return await LlmCall(self._settings, req, ctx).run()
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - never let the host format an error that may hold a key
            self._internal_error(exc)
            return LlmError(
                request_id=req.request_id, code="internal", message=f"internal error ({type(exc).__name__})"
            )

    @handler
    async def budget(self, req: BudgetQuery, ctx: Context) -> BudgetStatus | LlmError:
        """The calling agent's own limits and spend (agents cannot ask the ledger themselves)."""
        subject = ctx.msg.subject if ctx.msg is not None else ""
        try:
            caller = identify_caller(
                subject, ctx.headers, agents_account=self.spec.agents_account, template=subj.VAULT_BUDGET
            )
        except CallerDenied as denied:
            return LlmError(request_id=req.request_id, code="denied", message=f"denied: {denied.reason}")
        try:
            async with self.scheduler.admit(caller.agent, "budget"):
                return await self._budgets.status(ctx.broker, caller.agent)
        except QuotaRefused as refused:
            return LlmError(request_id=req.request_id, code=refused.code, message=refused.message, retryable=True)
        except LegionError as exc:
            return LlmError(request_id=req.request_id, code="budget", message=f"{exc}", retryable=True)

    @handler
    async def http(self, req: HttpRequest, ctx: Context) -> HttpResponse | HttpError:
        """Make an HTTP call for the calling agent with its credentials (see :mod:`.http_proxy`).

        The caller is identified exactly as for ``llm``; a request that cannot be attributed to the
        agent of its subject is refused with code ``policy`` before anything else is looked at.
        The proxy logs every call (``vault.http.fetched`` / ``vault.http.refused``, never a value).
        """
        subject = ctx.msg.subject if ctx.msg is not None else ""
        try:
            caller = identify_caller(
                subject, ctx.headers, agents_account=self.spec.agents_account, template=subj.VAULT_HTTP
            )
        except CallerDenied as denied:
            self.log.warning(
                HTTP_DENIED,
                agent=denied.agent,
                claimed=denied.claimed,
                reason=denied.reason,
                request_id=req.request_id,
            )
            return HttpError(request_id=req.request_id, code="policy", message=f"denied: {denied.reason}")
        try:
            with structlog.contextvars.bound_contextvars(request_id=req.request_id):
                async with self.scheduler.admit(caller.agent, "http"):
                    reply = await self.http_proxy.fetch(caller.agent, req)
        except QuotaRefused as refused:
            return HttpError(request_id=req.request_id, code=refused.code, message=refused.message, retryable=True)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - fetch answers every failure itself; this is a bug
            self._internal_error(exc)
            return HttpError(
                request_id=req.request_id, code="network", message=f"internal error ({type(exc).__name__})"
            )
        return self._scrub_http(reply)

    def _scrub_http(self, reply: HttpResponse | HttpError) -> HttpResponse | HttpError:
        """The provider keys too are never returned (the proxy redacts the agent-tier credentials)."""
        scrub = self.keys.scrub
        if isinstance(reply, HttpError):
            return msgspec.structs.replace(reply, message=scrub(reply.message))
        return msgspec.structs.replace(
            reply,
            headers={scrub(k): scrub(v) for k, v in reply.headers.items()},
            body=scrub(reply.body),
            final_url=scrub(reply.final_url),
        )

    def _internal_error(self, exc: Exception) -> None:
        """Log a bug without exc_info: the traceback's text goes into ``detail``, keys and credentials redacted."""
        self.log.error(
            INTERNAL_ERROR,
            error_type=type(exc).__name__,
            detail=self._redact_credentials(self.keys.scrub_error("".join(traceback.format_exception(exc)))),
        )
