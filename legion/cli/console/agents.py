"""The console side of ``legion task`` and ``legion chat``: send work to an agent's inbox with the
admin credential and follow what the agent records about it (core subscriptions in LEGION, opened
before the work is sent, so nothing is missed)."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from nats.aio.msg import Msg

from legion.broker import Broker, new_id
from legion.cli.console.connect import admin
from legion.cli.console.hints import hint
from legion.contracts import subjects as subj
from legion.contracts.agent_events import ChatReplied, SessionStep, TaskCompleted, TaskFailed
from legion.contracts.codec import decode
from legion.contracts.commands import AssignTask, ChatMessage, ChatReset, Steer
from legion.contracts.errors import ConfigError
from legion.contracts.names import validate_token
from legion.contracts.vault import LlmChunk
from legion.runtime.config import load_config

__all__ = ["ChatClient", "TaskResult", "TaskSpec", "open_chat", "run_task"]


def _check_agent(fleet_dir: Path, agent: str) -> None:
    validate_token(agent, kind="agent name")
    config = load_config(fleet_dir.resolve())
    if agent not in config.agents:
        known = ", ".join(sorted(config.agents)) or "none"
        raise ConfigError(f"no agent {agent!r} in {fleet_dir.resolve() / 'legion.yaml'} (agents: {known})")


@dataclass(frozen=True, slots=True)
class TaskSpec:
    fleet_dir: Path
    agent: str
    text: str
    wait: bool = False
    timeout_s: float = 600.0
    task_id: str | None = None
    input: dict[str, Any] = field(default_factory=dict)


@dataclass(slots=True)
class TaskResult:
    task_id: str
    trace: str
    status: Literal["sent", "completed", "failed", "timeout"]
    output: Any = None
    summary: str = ""
    reason: str = ""
    iterations: int = 0

    def as_dict(self) -> dict[str, Any]:
        return {
            "task_id": self.task_id,
            "trace": self.trace,
            "status": self.status,
            "output": self.output,
            "summary": self.summary,
            "reason": self.reason,
            "iterations": self.iterations,
        }


async def run_task(spec: TaskSpec, on_step: Callable[[SessionStep], None] | None = None) -> TaskResult:
    """Send ``AssignTask``; with ``wait``, follow its steps until TaskCompleted or TaskFailed."""
    _check_agent(spec.fleet_dir, spec.agent)
    task_id = spec.task_id or uuid.uuid4().hex[:16]
    trace = new_id()
    result = TaskResult(task_id=task_id, trace=trace, status="sent")
    ended = asyncio.Event()

    async def on_event(msg: Msg) -> None:
        event = decode(msg.data, msg.headers)
        if isinstance(event, SessionStep) and event.session.endswith(f".{task_id}") and on_step is not None:
            on_step(event)
        elif isinstance(event, TaskCompleted) and event.task_id == task_id:
            result.status, result.output, result.summary = "completed", event.output, event.summary
            result.iterations = event.iterations
            ended.set()
        elif isinstance(event, TaskFailed) and event.task_id == task_id:
            result.status, result.reason = "failed", event.reason
            ended.set()

    async with admin(spec.fleet_dir, "legion-task") as broker:
        if spec.wait:
            await broker.subscribe(subj.EVENTS.wildcard(source=spec.agent), on_event)
        command = AssignTask(task_id=task_id, text=spec.text, input=spec.input, requested_by="cli")
        await broker.js_publish(subj.AGENT_INBOX.render(agent=spec.agent), command, trace=trace)
        if spec.wait:
            try:
                async with asyncio.timeout(spec.timeout_s):
                    await ended.wait()
            except TimeoutError:
                result.status = "timeout"
                follow = hint("tail --follow", spec.fleet_dir)
                result.reason = f"no outcome within {spec.timeout_s:g}s; the task goes on (`{follow}`)"
    return result


@dataclass(slots=True)
class ChatClient:
    broker: Broker
    agent: str
    session: str
    deltas: asyncio.Queue[LlmChunk | ChatReplied] = field(default_factory=asyncio.Queue)

    async def _on_chunk(self, msg: Msg) -> None:
        chunk = decode(msg.data, msg.headers)
        if isinstance(chunk, LlmChunk):
            self.deltas.put_nowait(chunk)

    async def _on_event(self, msg: Msg) -> None:
        event = decode(msg.data, msg.headers)
        if isinstance(event, ChatReplied) and event.session == self.session:
            self.deltas.put_nowait(event)

    async def send(self, text: str, on_delta: Callable[[str], None], *, timeout_s: float = 600.0) -> ChatReplied:
        """One turn: the streamed deltas go to ``on_delta``; returns the agent's ChatReplied."""
        inbox = subj.AGENT_INBOX.render(agent=self.agent)
        await self.broker.js_publish(inbox, ChatMessage(session=self.session, text=text, sender="cli"))
        async with asyncio.timeout(timeout_s):
            while True:
                item = await self.deltas.get()
                if isinstance(item, ChatReplied):
                    return item
                on_delta(item.delta)

    async def reset(self) -> None:
        await self.broker.js_publish(subj.AGENT_INBOX.render(agent=self.agent), ChatReset(session=self.session))

    async def steer(self, text: str) -> None:
        await self.broker.js_publish(subj.AGENT_INBOX.render(agent=self.agent), Steer(text=text))


@contextlib.asynccontextmanager
async def open_chat(fleet_dir: Path, agent: str, session: str | None = None) -> AsyncIterator[ChatClient]:
    _check_agent(fleet_dir, agent)
    session = validate_token(session or f"cli-{uuid.uuid4().hex[:8]}", kind="chat session")
    async with admin(fleet_dir, "legion-chat") as broker:
        client = ChatClient(broker, agent, session)
        await broker.subscribe(subj.STREAM.render(agent=agent, session=session), client._on_chunk)
        await broker.subscribe(subj.EVENTS.render(source=agent, type="chat.replied"), client._on_event)
        yield client
