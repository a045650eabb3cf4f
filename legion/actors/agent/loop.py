"""The decide-act loop of one session (a task, or a chat), rebuilt from its recorded steps.

Every model reply and tool result is recorded (:class:`SessionLog`) before the loop moves on. A
session resumed after a crash replays its record: the conversation is rebuilt, recorded model
replies are not asked again, recorded tool results are reused, and a tool with side effects whose
start was recorded but whose result was not is *not* run again: the model is told its effect is
unknown (tools that write pass the call's idempotency key on, so a repeat is stored once anyway).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import structlog

from legion.actors.agent.context import compact, facts_prompt, needs_compaction, parse_facts, summary_prompt
from legion.actors.agent.llm import ModelError, VaultClient
from legion.actors.agent.loopguard import LoopGuard
from legion.actors.agent.sanitize import strip_invisible
from legion.actors.agent.session import SessionLog
from legion.actors.agent.tools.base import Params, Tool, ToolContext, ToolResult, ToolSet
from legion.contracts.agent_events import SessionStep, StepKind
from legion.contracts.vault import LlmReply

__all__ = ["FINISH_TOOL", "LoopDeps", "Outcome", "SessionRun"]

log = structlog.get_logger("legion.actors.agent.loop")

FINISH_TOOL = "finish_task"
_INTERRUPTED = (
    "interrupted: the agent restarted while this call was running, so its effect is unknown. "
    "Check the current state (read the file or key) before you repeat it."
)


class _FinishParams(Params):
    summary: str
    output: Any = None


async def _no_run(_p: Any, _c: ToolContext) -> Any:  # handled by the loop itself
    return None


FINISH = Tool(
    name=FINISH_TOOL,
    description=(
        "End the task. `summary`: one or two sentences for the person who asked; `output`: the structured "
        "result (any JSON value) if the task asked for one."
    ),
    params=_FinishParams,
    run=_no_run,
)


@dataclass(slots=True)
class LoopDeps:
    """What a session run uses; one per agent, shared by its sessions."""

    agent: str
    log: SessionLog
    vault: VaultClient
    tools: ToolSet
    workspace_path: Path
    system_prompt: Callable[[], str]
    context_window: int
    save_fact: Callable[[str], Awaitable[object]]
    learn: Callable[[str], None] = lambda _text: None


@dataclass(slots=True)
class Outcome:
    status: Literal["completed", "failed", "replied"]
    text: str = ""
    output: Any = None
    reason: str = ""
    retryable: bool = False
    rounds: int = 0


@dataclass(slots=True)
class SessionRun:
    deps: LoopDeps
    session: str
    trace: str = ""
    messages: list[dict[str, Any]] = field(default_factory=list)
    pending: list[dict[str, Any]] = field(default_factory=list)
    started: set[str] = field(default_factory=set)
    steps: int = 0
    rounds: int = 0
    ended: dict[str, Any] | None = None
    turns_done: dict[str, dict[str, Any]] = field(default_factory=dict)
    turn_started: dict[str, int] = field(default_factory=dict)
    finish: tuple[str, Any] | None = None
    failure: str | None = None
    steers: list[str] = field(default_factory=list)
    cancel_reason: str | None = None
    guard: LoopGuard = field(default_factory=LoopGuard)
    _cancelled: asyncio.Event = field(default_factory=asyncio.Event)

    def cancel(self, reason: str) -> None:
        """End the work at the next step; an in-flight model call is abandoned at once."""
        self.cancel_reason = reason
        self._cancelled.set()

    # -- the record ----------------------------------------------------------------------------
    def replay(self, steps: list[SessionStep]) -> None:
        for step in steps:
            self._apply(step.step, step.kind, step.data, live=False)

    def _apply(self, number: int, kind: StepKind, data: dict[str, Any], *, live: bool) -> None:
        """Fold one step into the conversation. ``live``: the loop guard already saw it."""
        self.steps = max(self.steps, number)
        if kind == "user":
            self.messages.append({"role": "user", "content": data.get("text", "")})
            if data.get("turn"):
                self.turn_started[str(data["turn"])] = self.rounds
        elif kind == "steer":
            self.messages.append({"role": "user", "content": f"[steer from the operator] {data.get('text', '')}"})
        elif kind == "llm":
            msg: dict[str, Any] = {"role": "assistant", "content": data.get("content")}
            calls = list(data.get("tool_calls") or [])
            if calls:
                msg["tool_calls"] = calls
            self.messages.append(msg)
            self.pending = calls
            self.rounds += 1
        elif kind == "tool_start":
            self.started.add(str(data.get("call_id")))
        elif kind == "tool":
            self._apply_tool(data, live=live)
        elif kind == "summary":
            self.messages = [{"role": "user", "content": _summary_text(data.get("summary", ""))}]
            self.messages.extend(data.get("kept") or [])
        elif kind == "reset":
            self.messages, self.pending = [], []
            self.guard.reset()
        elif kind == "end":
            if data.get("turn"):
                self.turns_done[str(data["turn"])] = data
            else:
                self.ended = data

    def _apply_tool(self, data: dict[str, Any], *, live: bool) -> None:
        call_id = str(data.get("call_id"))
        result = str(data.get("result", ""))
        self.messages.append({"role": "tool", "tool_call_id": call_id, "content": result})
        self.pending = [c for c in self.pending if c.get("id") != call_id]
        name, args = str(data.get("name")), data.get("arguments") or "{}"
        if not live:  # rebuild the loop guard's window exactly as the live run left it
            if data.get("guard") in ("block", "fail"):
                self.guard.before(name, args)
            elif not data.get("exempt"):
                self.guard.after(name, args, str(data.get("seen", result)))
        if name == FINISH_TOOL and data.get("ok"):
            finish = data.get("finish") or {}
            self.finish = (str(finish.get("summary", "")), finish.get("output"))
        if data.get("guard") == "fail":
            self.failure = str(data.get("result"))

    async def record(self, kind: StepKind, data: dict[str, Any]) -> None:
        number = self.steps + 1
        await self.deps.log.append(self.session, number, kind, data, trace=self.trace)
        self._apply(number, kind, data, live=True)

    # -- task mode -----------------------------------------------------------------------------
    async def run_task(self, text: str, max_rounds: int) -> Outcome:
        if self.ended is not None:
            return _outcome_of(self.ended, self.rounds)
        if self.steps == 0:
            await self.record("user", {"text": strip_invisible(text)})
        outcome = await self._drive(max_rounds=max_rounds, base_rounds=0, stream_session="", task=True)
        end = {"status": outcome.status, "text": outcome.text, "output": outcome.output, "reason": outcome.reason}
        end["retryable"] = outcome.retryable
        await self.record("end", end)
        return outcome

    # -- chat mode -----------------------------------------------------------------------------
    async def run_turn(self, turn: str, text: str, max_rounds: int, stream_session: str) -> Outcome:
        done = self.turns_done.get(turn)
        if done is not None:
            return _outcome_of(done, self.rounds)
        if turn not in self.turn_started:
            await self.record("user", {"text": strip_invisible(text), "turn": turn})
        base = self.turn_started[turn]
        outcome = await self._drive(max_rounds=max_rounds, base_rounds=base, stream_session=stream_session, task=False)
        outcome.rounds -= base  # this turn's model rounds
        await self.record(
            "end", {"status": outcome.status, "text": outcome.text, "reason": outcome.reason, "turn": turn}
        )
        return outcome

    async def reset(self) -> None:
        await self.record("reset", {})

    # -- the loop ------------------------------------------------------------------------------
    async def _drive(self, *, max_rounds: int, base_rounds: int, stream_session: str, task: bool) -> Outcome:
        tools = self.deps.tools.schemas() + ([FINISH.schema()] if task else [])
        while True:
            if self.cancel_reason is not None:
                return Outcome("failed", reason=f"cancelled: {self.cancel_reason}", rounds=self.rounds)
            if self.pending:
                await self._run_pending()
                if self.failure is not None:
                    return Outcome("failed", reason=f"tool loop: {self.failure}", rounds=self.rounds)
                if self.finish is not None:
                    summary, output = self.finish
                    return Outcome("completed", text=summary, output=output, rounds=self.rounds)
                continue
            # steers go in right before a model call: never between a tool call and its result
            for text in self.steers:
                await self.record("steer", {"text": strip_invisible(text)})
            self.steers.clear()
            if self.rounds - base_rounds >= max_rounds:
                what = "task" if task else "turn"
                return Outcome("failed" if task else "replied", reason=_limit(what, max_rounds), rounds=self.rounds)
            try:
                prompt = await self._compact_or_go_on(self._prompt())
                reply = await self._cancellable(
                    self.deps.vault.complete(prompt, tools=tools, stream_session=stream_session, trace=self.trace)
                )
            except ModelError as exc:
                return Outcome("failed" if task else "replied", reason=str(exc), retryable=exc.retryable)
            except asyncio.CancelledError:
                if self.cancel_reason is None:
                    raise
                continue
            await self.record("llm", _llm_data(reply))
            if not reply.tool_calls:
                text = reply.content or ""
                return Outcome(
                    "completed" if task else "replied", text=text, output=_output_of(text), rounds=self.rounds
                )

    async def _cancellable(self, work: Awaitable[LlmReply]) -> LlmReply:
        """Run ``work`` until it finishes or the task is cancelled (then CancelledError)."""
        job = asyncio.ensure_future(work)
        stop = asyncio.ensure_future(self._cancelled.wait())
        try:
            await asyncio.wait({job, stop}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stop.cancel()
        if not job.done():
            job.cancel()
            raise asyncio.CancelledError
        return job.result()

    def _prompt(self) -> list[dict[str, Any]]:
        return [{"role": "system", "content": self.deps.system_prompt()}, *self.messages]

    async def _run_pending(self) -> None:
        for call in list(self.pending):
            if self.cancel_reason is not None:
                return
            await self._run_call(call)
            if self.failure is not None or self.finish is not None:
                return

    async def _run_call(self, call: dict[str, Any]) -> None:
        call_id = str(call.get("id") or "")
        fn = call.get("function") or {}
        name, args = str(fn.get("name", "")), fn.get("arguments") or "{}"
        base: dict[str, Any] = {"call_id": call_id, "name": name, "arguments": args}
        if name == FINISH_TOOL:
            await self._finish(base, args)
            return
        tool = self.deps.tools.get(name)
        exempt = tool is not None and tool.loop_exempt
        if not exempt:
            verdict = self.guard.before(name, args)
            if verdict.action in ("block", "fail"):
                level = "fail" if verdict.action == "fail" else "block"
                await self.record(
                    "tool", {**base, "result": _error("blocked", verdict.message), "ok": False, "guard": level}
                )
                return
        if call_id in self.started and tool is not None and tool.side_effects:
            result = ToolResult.error("interrupted", _INTERRUPTED)
        else:
            if tool is not None and tool.side_effects:
                await self.record("tool_start", base)
            ctx = ToolContext(
                agent=self.deps.agent,
                session=self.session,
                call_key=f"{self.deps.agent}:{self.session}:{call_id}",
                workspace=self.deps.workspace_path,
                trace=self.trace,
            )
            result = await self.deps.tools.call(name, args, ctx)
        seen = strip_invisible(result.content)
        content = seen
        if not exempt:
            warning = self.guard.after(name, args, seen)
            if warning:
                content = f"{seen}\n[warning] {warning}"
        if not result.ok:
            self.deps.learn(f"{name} failed ({result.error_code}): {seen[:300]}")
        await self.record("tool", {**base, "result": content, "seen": seen, "ok": result.ok, "exempt": exempt})

    async def _finish(self, base: dict[str, Any], args: str | dict[str, Any]) -> None:
        try:
            raw = json.loads(args) if isinstance(args, str) else args
            params = _FinishParams.model_validate(raw)
        except (json.JSONDecodeError, ValueError) as exc:
            result = _error("invalid_args", f"finish_task needs a summary: {exc}")
            await self.record("tool", {**base, "result": result, "ok": False, "exempt": True})
            return
        finish = {"summary": strip_invisible(params.summary), "output": params.output}
        await self.record(
            "tool", {**base, "result": '{"finished": true}', "ok": True, "exempt": True, "finish": finish}
        )

    async def _compact_or_go_on(self, prompt: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """``prompt`` compacted when the context is ~70 % full (the workspace files are read once per
        round, by the caller); if the model cannot help with that, ``prompt`` as it is."""
        try:
            return await self._maybe_compact(prompt)
        except ModelError as exc:
            if exc.code == "budget":
                raise
            log.warning("context.compaction_failed", session=self.session, error=str(exc))
            return prompt

    async def _maybe_compact(self, prompt: list[dict[str, Any]]) -> list[dict[str, Any]]:
        if not needs_compaction(prompt, self.deps.context_window):
            return prompt

        async def summarise(dropped: list[dict[str, Any]]) -> str:
            reply = await self.deps.vault.complete(summary_prompt(dropped), trace=self.trace)
            return reply.content or ""

        async def extract(dropped: list[dict[str, Any]]) -> list[str]:
            reply = await self.deps.vault.complete(facts_prompt(dropped), trace=self.trace)
            return parse_facts(reply.content or "")

        result = await compact(prompt, summarise=summarise, extract_facts=extract, save_fact=self.deps.save_fact)
        if result.dropped:
            kept = result.messages[2:]  # [system, summary, *kept]
            await self.record("summary", {"summary": result.summary, "facts": result.facts, "kept": kept})
        return [prompt[0], *self.messages]  # after a summary step, the messages are summary + kept


def _summary_text(summary: str) -> str:
    return f"Summary of the conversation so far: {summary}"


def _limit(what: str, n: int) -> str:
    return f"iteration limit: {n} model rounds in this {what} without a final answer"


def _error(code: str, message: str) -> str:
    return json.dumps({"error": code, "message": message})


def _llm_data(reply: LlmReply) -> dict[str, Any]:
    return {
        "content": reply.content,
        "tool_calls": [_normal_call(c, i) for i, c in enumerate(reply.tool_calls)],
        "model": reply.model,
        "prompt_tokens": reply.prompt_tokens,
        "completion_tokens": reply.completion_tokens,
        "cost_usd": str(reply.cost_usd),
    }


def _normal_call(call: dict[str, Any], index: int) -> dict[str, Any]:
    fn = call.get("function") or {}
    args = fn.get("arguments")
    if not isinstance(args, str):
        args = json.dumps(args or {})
    return {
        "id": str(call.get("id") or f"call_{index}"),
        "type": "function",
        "function": {"name": str(fn.get("name", "")), "arguments": args},
    }


def _output_of(text: str) -> Any:
    """A final answer that is a JSON object or array is the task's structured output."""
    stripped = text.strip()
    if stripped.startswith(("{", "[")):
        try:
            return json.loads(stripped)
        except json.JSONDecodeError:
            pass
    return {"text": text}


def _outcome_of(end: dict[str, Any], rounds: int) -> Outcome:
    status = end.get("status", "failed")
    if status not in ("completed", "failed", "replied"):
        status = "failed"
    return Outcome(
        status=status,
        text=str(end.get("text", "")),
        output=end.get("output"),
        reason=str(end.get("reason", "")),
        retryable=bool(end.get("retryable", False)),
        rounds=rounds,
    )
