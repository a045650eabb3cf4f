"""The agent actor: works on tasks and chats from its inbox, one decide-act loop per session.

Inbox commands: ``AssignTask`` (a bounded loop ending in TaskCompleted or TaskFailed),
``ChatMessage`` (one turn; tokens streamed by the vault on ``legion.stream.<agent>.<session>``,
then ChatReplied), ``ChatReset``, ``Steer`` (injected into the running task before its next model
call) and ``Cancel``. Tasks run one at a time; each chat session's turns run in order; steer and
cancel are handled while a task runs (the inbox consumer has room for them).

A message is acked only after its outcome is recorded, so a crash mid-task redelivers it and the
task resumes from its record (:mod:`legion.actors.agent.loop`).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import defaultdict
from dataclasses import dataclass, field

from legion.actors.agent.llm import VaultClient
from legion.actors.agent.loop import LoopDeps, Outcome, SessionRun
from legion.actors.agent.memory import MemoryStore
from legion.actors.agent.session import SessionLog, chat_session, task_session
from legion.actors.agent.spec import AgentSpec
from legion.actors.agent.toolbox import build_toolset
from legion.actors.agent.workspace import Workspace
from legion.broker import ConsumeSpec, agent_inbox_durable
from legion.broker.streams import INBOX
from legion.contracts.agent_events import ChatReplied, TaskCompleted, TaskFailed, TaskStarted, TaskSteered
from legion.contracts.commands import AssignTask, Cancel, ChatMessage, ChatReset, Steer
from legion.contracts.names import NAME_PATTERN
from legion.runtime.actor import Actor, Context, handler
from legion.runtime.host import HostSpec

__all__ = ["Agent", "agent_host_spec"]

INBOX_CONCURRENCY = 16
"""Inbox messages handled at once: a running task leaves room for steer, cancel and chat turns."""


def agent_host_spec(spec: AgentSpec) -> HostSpec:
    consumer = ConsumeSpec(
        stream=INBOX,
        durable=agent_inbox_durable(spec.name),
        batch=INBOX_CONCURRENCY,
        concurrency=INBOX_CONCURRENCY,
        in_progress_every_s=max(0.5, spec.ack_wait_s / 3),
        dead_letter_source=spec.name,
    )
    # agents may not publish on legion.health: liveness is the process and its ActorStarted
    return HostSpec(consumers=(consumer,), heartbeat_s=0.0)


@dataclass(slots=True)
class _Live:
    runs: dict[str, SessionRun] = field(default_factory=dict)
    task_lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    chat_locks: defaultdict[str, asyncio.Lock] = field(default_factory=lambda: defaultdict(asyncio.Lock))
    cancelled: dict[str, str] = field(default_factory=dict)
    current_task: str | None = None


class Agent(Actor):
    kind = "agent"

    def __init__(self, spec: AgentSpec) -> None:
        super().__init__(spec.name)
        self.spec = spec
        self.workspace = Workspace(spec.workspace)
        self.memory: MemoryStore | None = None
        self.deps: LoopDeps | None = None
        self.live = _Live()

    async def on_start(self, ctx: Context) -> None:
        self.workspace.ensure()
        self.spec.state_dir.mkdir(parents=True, exist_ok=True)
        self.memory = await MemoryStore.open(self.spec.state_dir / "memory.db")
        tools = build_toolset(self.spec, ctx.broker, self.memory)
        vault = VaultClient(
            ctx.broker,
            self.name,
            self.spec.model,
            project=self.spec.projects[0] if len(self.spec.projects) == 1 else "",
            timeout_s=self.spec.llm_timeout_s,
            max_tokens=self.spec.max_tokens,
        )
        memory = self.memory
        tool_names = sorted(tools.tools)

        def system_prompt() -> str:
            return self.workspace.system_prompt(self.name, self.spec.role, self.spec.instructions, tool_names)

        async def save_fact(fact: str) -> object:
            return await memory.save(fact, source="compaction")

        def learn(text: str) -> None:
            with contextlib.suppress(OSError):
                self.workspace.add_learning("tool_failure", text)

        self.deps = LoopDeps(
            agent=self.name,
            log=SessionLog(ctx.broker, self.name),
            vault=vault,
            tools=tools,
            workspace_path=self.spec.workspace,
            system_prompt=system_prompt,
            context_window=self.spec.context_window,
            save_fact=save_fact,
            learn=learn,
        )
        self.log.info("agent.ready", tools=tool_names, model=self.spec.model, workspace=str(self.spec.workspace))

    async def on_stop(self) -> None:
        if self.memory is not None:
            await self.memory.close()

    async def _run(self, session: str, trace: str) -> SessionRun:
        assert self.deps is not None
        run = self.live.runs.get(session)
        if run is None:
            run = SessionRun(self.deps, session, trace=trace)
            run.replay(await self.deps.log.load(session))
            self.live.runs[session] = run
        run.trace = trace
        return run

    # -- tasks ---------------------------------------------------------------------------------
    @handler
    async def on_task(self, cmd: AssignTask, ctx: Context) -> None:
        session = task_session(cmd.task_id)
        async with self.live.task_lock:
            run = await self._run(session, ctx.trace)
            if run.steps == 0:
                await ctx.emit(TaskStarted(task_id=cmd.task_id, agent=self.name), msg_id=f"{session}:started")
            reason = self.live.cancelled.pop(cmd.task_id, None)
            if reason is not None and run.ended is None:
                run.cancel_reason = reason
            self.live.current_task = cmd.task_id
            try:
                outcome = await run.run_task(cmd.text, cmd.max_iterations or self.spec.max_iterations)
            finally:
                self.live.current_task = None
                self.live.runs.pop(session, None)
            await self._report_task(cmd, outcome, ctx, session)

    async def _report_task(self, cmd: AssignTask, outcome: Outcome, ctx: Context, session: str) -> None:
        msg_id = f"{session}:end"
        if outcome.status == "completed":
            summary = outcome.text[:500]
            event = TaskCompleted(
                task_id=cmd.task_id, agent=self.name, output=outcome.output, summary=summary, iterations=outcome.rounds
            )
            await ctx.emit(event, msg_id=msg_id)
            self.workspace.log_daily(f"task {cmd.task_id} completed: {summary}")
        else:
            failed = TaskFailed(
                task_id=cmd.task_id, agent=self.name, reason=outcome.reason, retryable=outcome.retryable
            )
            await ctx.emit(failed, msg_id=msg_id)
            self.workspace.log_daily(f"task {cmd.task_id} failed: {outcome.reason}")
        self.log.info("task.ended", task=cmd.task_id, status=outcome.status, rounds=outcome.rounds)

    @handler
    async def on_steer(self, cmd: Steer, ctx: Context) -> None:
        target = cmd.task_id or self.live.current_task
        run = self.live.runs.get(task_session(target)) if target else None
        if run is None or run.ended is not None:
            reason = "no such task is running" if cmd.task_id else "no task is running"
            self.log.warning("steer.ignored", task=cmd.task_id, reason=reason)
            await ctx.emit(
                TaskSteered(task_id=cmd.task_id or "", agent=self.name, text=cmd.text, accepted=False, reason=reason)
            )
            return
        run.steers.append(cmd.text)
        await ctx.emit(TaskSteered(task_id=target or "", agent=self.name, text=cmd.text))

    @handler
    async def on_cancel(self, cmd: Cancel, ctx: Context) -> None:
        reason = cmd.reason or "cancelled by request"
        run = self.live.runs.get(task_session(cmd.task_id))
        if run is not None:
            run.cancel_reason = reason
            run.cancel_event.set()
        else:  # not started yet (queued behind another task): it fails as soon as it arrives
            self.live.cancelled[cmd.task_id] = reason

    # -- chat ----------------------------------------------------------------------------------
    @handler
    async def on_chat(self, cmd: ChatMessage, ctx: Context) -> None:
        session = chat_session(cmd.session)
        turn = _turn_id(ctx)
        stream = cmd.session if NAME_PATTERN.fullmatch(cmd.session) else ""
        async with self.live.chat_locks[session]:
            run = await self._run(session, ctx.trace)
            outcome = await run.run_turn(turn, cmd.text, self.spec.chat_rounds, stream)
        reply = ChatReplied(
            session=cmd.session, agent=self.name, text=outcome.text, rounds=outcome.rounds, error=outcome.reason
        )
        await ctx.emit(reply, msg_id=f"{session}:{turn}:reply")

    @handler
    async def on_chat_reset(self, cmd: ChatReset, ctx: Context) -> None:
        session = chat_session(cmd.session)
        async with self.live.chat_locks[session]:
            run = await self._run(session, ctx.trace)
            await run.reset()


def _turn_id(ctx: Context) -> str:
    """The inbox message's stream sequence: the same turn when the message is redelivered."""
    if ctx.msg is not None:
        with contextlib.suppress(Exception):
            return str(ctx.msg.metadata.sequence.stream)
    return ctx.trace
