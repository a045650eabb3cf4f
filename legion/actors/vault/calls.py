"""One LLM request, start to finish: caller, policy, budget, failover chain, billing, events.

Order: identify the caller (denied) -> policy (policy/invalid) -> a turn in the agent's lane of the
fair scheduler (busy/rate_limited, see :mod:`.scheduler`) -> skip cooling models -> Reserve the
largest estimate of the chain (budget) -> try each alias until one answers -> Commit what was spent
(or Release when nothing was) -> reply. Every provider call is recorded as ModelCalled, every refusal
as LlmRefused, except quota refusals (the scheduler logs those, counted: a flood of refused calls
must not become a flood of events). Nothing here holds a lock across calls: calls of one agent run
concurrently, up to the agent's cap.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal

import msgspec
import structlog

from legion.actors.vault.caller import CallerDenied, identify_caller
from legion.actors.vault.health import ModelHealth
from legion.actors.vault.keys import ProviderKeys
from legion.actors.vault.llm import Attempt, Completion, ProviderFailure, complete, count_prompt_tokens
from legion.actors.vault.policy import ModelRoute, Plan, Policy, PolicyRefused
from legion.actors.vault.scheduler import QuotaRefused, Scheduler
from legion.broker import new_id
from legion.contracts import subjects as subj
from legion.contracts.base import Event
from legion.contracts.errors import LegionError
from legion.contracts.ledger import Commit, Release, Reserve
from legion.contracts.names import NAME_PATTERN
from legion.contracts.vault import LlmChunk, LlmError, LlmErrorCode, LlmRefused, LlmReply, LlmRequest, ModelCalled
from legion.runtime.clients import LedgerClient, LedgerUnavailable
from legion.runtime.host.actor import Context

__all__ = ["CallSettings", "LlmCall"]

log = structlog.get_logger("legion.actors.vault")

# log event names
REFUSED = "vault.refused"
MODEL_CALLED = "vault.model_called"
MODEL_FAILED = "vault.model_failed"
EMIT_FAILED = "vault.emit_failed"


@dataclass(frozen=True, slots=True)
class CallSettings:
    """What every call shares: resolved once at start."""

    policy: Policy
    health: ModelHealth
    keys: ProviderKeys
    ledger_service: str
    ledger_timeout_s: float
    reservation_ttl_s: float
    agents_account: str | None
    scheduler: Scheduler


class LlmCall:
    def __init__(self, settings: CallSettings, req: LlmRequest, ctx: Context) -> None:
        self.s = settings
        self.req = req
        self.ctx = ctx
        self.agent = ""
        self.ledger = LedgerClient(ctx.broker, service=settings.ledger_service, timeout_s=settings.ledger_timeout_s)
        self.log = ctx.log if ctx.log is not None else log
        self._chunks = 0
        self._prompt_tokens: dict[str, int] = {}

    # -- refusals ---------------------------------------------------------------------------
    async def _refuse(
        self, code: LlmErrorCode, reason: str, *, retryable: bool = False, agent: str | None = None, claimed: str = ""
    ) -> LlmError:
        agent = self.agent if agent is None else agent
        self.log.info(
            REFUSED, agent=agent, model=self.req.model, code=code, reason=reason, request_id=self.req.request_id
        )
        await self._emit(
            LlmRefused(
                request_id=self.req.request_id,
                agent=agent,
                model=self.req.model,
                code=code,
                reason=reason,
                claimed=claimed,
            )
        )
        await self._end_stream_if_valid()
        return LlmError(request_id=self.req.request_id, code=code, message=reason, retryable=retryable)

    async def _emit(self, event: Event) -> None:
        try:
            await self.ctx.emit(event)
        except LegionError as exc:
            self.log.warning(EMIT_FAILED, event=event.contract_tag(), error=type(exc).__name__)

    # -- the call ------------------------------------------------------------------------------
    async def run(self) -> LlmReply | LlmError:
        plan = await self._admit()
        if isinstance(plan, LlmError):
            return plan
        try:
            async with self.s.scheduler.admit(plan.agent, "llm"):
                return await self._call(plan)
        except QuotaRefused as refused:
            await self._end_stream_if_valid()
            return LlmError(request_id=self.req.request_id, code=refused.code, message=refused.message, retryable=True)

    async def _call(self, plan: Plan) -> LlmReply | LlmError:
        ready = [r for r in plan.chain if self.s.health.available(r.alias)]
        if not ready:
            wait = min(self.s.health.cooldown_left(r.alias) for r in plan.chain)
            reason = f"every model of the chain is cooling down after failures; retry in {wait:.0f} s"
            return await self._refuse("provider", reason, retryable=True)
        reservation_id = new_id()
        reserve = Reserve(
            reservation_id=reservation_id,
            agent=plan.agent,
            project=plan.project,
            estimate_usd=self._estimate(plan, ready),
            # held at least as long as the whole chain may take
            ttl_s=max(self.s.reservation_ttl_s, sum(r.timeout_s for r in ready) + 60),
        )
        try:
            reserved = await self.ledger.reserve(reserve, trace=self.ctx.trace)
        except LedgerUnavailable as exc:
            return await self._refuse("budget", f"no budget reservation: {exc}; no model was called", retryable=True)
        if not reserved.granted:
            return await self._refuse("budget", f"budget refused: {reserved.reason or 'no reason given'}")
        return await self._attempts(plan, ready, reservation_id)

    async def _admit(self) -> Plan | LlmError:
        """The caller and what the policy allows; or the refusal."""
        subject = self.ctx.msg.subject if self.ctx.msg is not None else ""
        try:
            caller = identify_caller(subject, self.ctx.headers, agents_account=self.s.agents_account)
        except CallerDenied as denied:
            return await self._refuse("denied", denied.reason, agent=denied.agent, claimed=denied.claimed)
        self.agent = caller.agent
        try:
            plan = self.s.policy.plan(caller.agent, self.req)
        except PolicyRefused as refused:
            return await self._refuse(refused.code, refused.message)
        if not plan.chain:
            return await self._refuse("provider", "no model of the chain can be called: " + "; ".join(plan.skipped))
        return plan

    def _estimate(self, plan: Plan, ready: Sequence[ModelRoute]) -> Decimal:
        """The largest cost the chain could reach: prompt tokens plus the max_tokens cap, per alias."""
        worst = Decimal(0)
        for route in ready:
            assert route.price is not None  # the plan keeps only priced aliases
            prompt = self._prompt_tokens.get(route.model)
            if prompt is None:
                prompt = count_prompt_tokens(route.model, self.req.messages, self.req.tools)
                self._prompt_tokens[route.model] = prompt
            cap = self.s.policy.max_tokens(plan.agent, route, self.req.max_tokens)
            worst = max(worst, route.price.cost(prompt, cap))
        return worst

    async def _attempts(self, plan: Plan, ready: Sequence[ModelRoute], reservation_id: str) -> LlmReply | LlmError:
        req = self.req
        spent = Decimal(0)
        prompt_total = completion_total = 0
        failures: list[tuple[str, ProviderFailure]] = []
        last_alias = ready[0].alias
        for route in ready:
            if failures and not self.s.health.available(route.alias):
                continue  # cooled down by a concurrent call meanwhile
            last_alias = route.alias
            attempt = Attempt(
                route=route,
                messages=req.messages,
                max_tokens=self.s.policy.max_tokens(plan.agent, route, req.max_tokens),
                tools=req.tools,
                temperature=req.temperature,
                stream=req.stream,
            )
            started = time.perf_counter()
            try:
                result = await complete(
                    attempt,
                    api_key=self.s.keys.get(route.key_name) if route.key_name else None,
                    scrub=self.s.keys.scrub_error,
                    on_delta=self._publish_delta if req.stream else None,
                )
            except ProviderFailure as failure:
                cost = self._cost(route, failure.prompt_tokens, failure.completion_tokens)
                spent += cost
                prompt_total += failure.prompt_tokens
                completion_total += failure.completion_tokens
                cooldown = self.s.health.record_failure(route.alias, failure.kind)
                self.log.warning(
                    MODEL_FAILED,
                    agent=plan.agent,
                    model=route.alias,
                    kind=failure.kind.value,
                    status=failure.status,
                    cooldown_s=cooldown,
                    error=failure.message,
                )
                await self._called(route, started, failure.prompt_tokens, failure.completion_tokens, cost, ok=False)
                failures.append((route.alias, failure))
                if failure.streamed:
                    break  # deltas were published: another model would repeat them
                continue
            cost = self._cost(route, result.prompt_tokens, result.completion_tokens)
            spent += cost
            prompt_total += result.prompt_tokens
            completion_total += result.completion_tokens
            self.s.health.record_success(route.alias)
            await self._called(route, started, result.prompt_tokens, result.completion_tokens, cost, ok=True)
            await self._settle(
                plan, reservation_id, alias=route.alias, spent=spent, prompt=prompt_total, completion=completion_total
            )
            await self._end_stream()
            return self._reply(route, result, spent)
        await self._settle(
            plan, reservation_id, alias=last_alias, spent=spent, prompt=prompt_total, completion=completion_total
        )
        await self._end_stream()
        return self._failed(failures)

    @staticmethod
    def _cost(route: ModelRoute, prompt: int, completion: int) -> Decimal:
        assert route.price is not None
        return route.price.cost(prompt, completion)

    async def _called(
        self, route: ModelRoute, started: float, prompt: int, completion: int, cost: Decimal, *, ok: bool
    ) -> None:
        event = ModelCalled(
            request_id=self.req.request_id,
            agent=self.agent,
            model=route.alias,
            provider_model=route.model,
            prompt_tokens=prompt,
            completion_tokens=completion,
            cost_usd=cost,
            latency_ms=round((time.perf_counter() - started) * 1000, 1),
            ok=ok,
        )
        self.log.info(MODEL_CALLED, **{**msgspec.structs.asdict(event), "cost_usd": str(cost)})
        await self._emit(event)

    async def _settle(
        self, plan: Plan, reservation_id: str, *, alias: str, spent: Decimal, prompt: int, completion: int
    ) -> None:
        """Commit what was spent (even a failed stream's delivered part), else release the reservation."""
        trace = self.ctx.trace
        if spent > 0 or prompt or completion:
            commit = Commit(
                reservation_id=reservation_id,
                agent=plan.agent,
                project=plan.project,
                model=alias,
                actual_usd=spent,
                prompt_tokens=prompt,
                completion_tokens=completion,
            )
            await self.ledger.commit(commit, trace=trace)
        else:
            release = Release(reservation_id=reservation_id, reason="the call failed before any cost")
            await self.ledger.release(release, agent=plan.agent, trace=trace)

    # -- streaming -------------------------------------------------------------------------------
    async def _publish_delta(self, text: str) -> None:
        await self._publish_chunk(self.s.keys.scrub(text), done=False)

    async def _publish_chunk(self, delta: str, *, done: bool) -> None:
        subject = subj.STREAM.render(agent=self.agent, session=self.req.session)
        chunk = LlmChunk(request_id=self.req.request_id, index=self._chunks, delta=delta, done=done)
        self._chunks += 1
        await self.ctx.broker.publish(subject, chunk, trace=self.ctx.trace)

    async def _end_stream_if_valid(self) -> None:
        """After a refusal: listeners of the session learn that nothing more comes."""
        if self.agent and self.req.stream and NAME_PATTERN.fullmatch(self.req.session):
            await self._end_stream()

    async def _end_stream(self) -> None:
        if self.req.stream:
            await self._publish_chunk("", done=True)

    # -- replies -----------------------------------------------------------------------------------
    def _reply(self, route: ModelRoute, result: Completion, spent: Decimal) -> LlmReply:
        scrub = self.s.keys
        return LlmReply(
            request_id=self.req.request_id,
            model=route.alias,
            content=scrub.scrub(result.content) if result.content is not None else None,
            tool_calls=[scrub.scrub_any(c) for c in result.tool_calls],
            finish_reason=result.finish_reason,
            prompt_tokens=result.prompt_tokens,
            completion_tokens=result.completion_tokens,
            cost_usd=spent,
        )

    def _failed(self, failures: list[tuple[str, ProviderFailure]]) -> LlmError:
        if not failures:
            return LlmError(
                request_id=self.req.request_id,
                code="provider",
                message="every model of the chain cooled down before it could be called; retry later",
                retryable=True,
            )
        last = failures[-1][1]
        message = "; ".join(f"{alias}: {f.message}" for alias, f in failures)
        return LlmError(
            request_id=self.req.request_id,
            code=last.code,
            message=message,
            retryable=any(f.retryable for _, f in failures),
        )
