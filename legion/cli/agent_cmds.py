"""``legion task`` and ``legion chat``: talk to an agent of the running fleet."""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path
from typing import Annotated

import typer

from legion.cli import options, render
from legion.cli.console.agents import TaskSpec, open_chat, run_task
from legion.contracts.agent_events import SessionStep

__all__ = ["register"]

_HELP = "/reset forgets this chat's history (memories stay), /steer TEXT steers the running task, /quit ends"


def _step_line(step: SessionStep) -> str | None:
    if step.kind == "llm":
        calls = [c.get("function", {}).get("name", "?") for c in step.data.get("tool_calls") or []]
        return f"  model: {'calls ' + ', '.join(calls) if calls else 'answered'}"
    if step.kind == "tool":
        ok = "ok" if step.data.get("ok") else "error"
        return f"  tool {step.data.get('name')}: {ok}"
    return None


def task(
    agent: options.AgentArg,
    text: Annotated[str, typer.Argument(help="what the agent should do")],
    *,
    wait: Annotated[bool, typer.Option("--wait", envvar="LEGION_TASK_WAIT", help="wait for the outcome")] = False,
    as_json: options.JsonOpt = False,
    timeout: Annotated[
        float, typer.Option("--timeout", envvar="LEGION_TASK_TIMEOUT", help="seconds --wait waits")
    ] = 600.0,
) -> None:
    """Give AGENT a task; --wait prints its steps and the result (exit 1 if it failed or timed out)."""
    fleet_dir = options.fleet_dir()

    def on_step(step: SessionStep) -> None:
        line = _step_line(step)
        if line and not as_json:
            typer.echo(render.safe(line), err=True)

    spec = TaskSpec(fleet_dir=fleet_dir, agent=agent, text=text, wait=wait, timeout_s=timeout)
    result = asyncio.run(run_task(spec, on_step))
    if as_json:
        typer.echo(json.dumps(result.as_dict(), default=str))
    elif result.status == "sent":
        typer.echo(
            f"task {result.task_id} sent to {agent} (trace {result.trace}); follow it with `{options.hint('tail -f')}`"
        )
    elif result.status == "completed":
        summary = render.safe(result.summary)
        typer.secho(f"task {result.task_id} completed in {result.iterations} rounds: {summary}", fg="green")
        if result.output is not None:
            typer.echo(json.dumps(result.output, indent=2, default=str))
    else:
        typer.secho(f"task {result.task_id} {result.status}: {render.safe(result.reason)}", fg="red", err=True)
    if result.status in ("failed", "timeout"):
        raise typer.Exit(1)


async def _chat(fleet_dir: Path, agent: str, session: str | None) -> None:
    loop = asyncio.get_running_loop()
    async with open_chat(fleet_dir, agent, session) as client:
        typer.echo(f"chat with {agent} (session {client.session}); {_HELP}")
        while True:
            try:
                line = await loop.run_in_executor(None, input, "you> ")
            except EOFError:
                return
            line = line.strip()
            if not line:
                continue
            if line == "/quit":
                return
            if line == "/reset":
                await client.reset()
                typer.echo("(history forgotten)")
                continue
            if line.startswith("/steer "):
                await client.steer(line.removeprefix("/steer ").strip())
                typer.echo("(steer sent)")
                continue
            sys.stdout.write(f"{agent}> ")
            streamed: list[str] = []

            def on_delta(delta: str, streamed: list[str] = streamed) -> None:
                streamed.append(delta)
                sys.stdout.write(render.safe(delta))
                sys.stdout.flush()

            reply = await client.send(line, on_delta)
            if not streamed:
                sys.stdout.write(render.safe(reply.text))
            sys.stdout.write("\n")
            if reply.error:
                typer.secho(f"({render.safe(reply.error)})", fg="red", err=True)


def chat(
    agent: options.AgentArg,
    session: Annotated[
        str | None, typer.Option("--session", envvar="LEGION_CHAT_SESSION", help="resume this chat session")
    ] = None,
) -> None:
    """Chat with AGENT; its answer streams as it is written. /reset, /steer TEXT, /quit."""
    fleet_dir = options.fleet_dir()
    asyncio.run(_chat(fleet_dir, agent, session))


def register(app: typer.Typer) -> None:
    """Add ``task`` and ``chat`` to ``app``."""
    app.command("task")(task)
    app.command("chat")(chat)
