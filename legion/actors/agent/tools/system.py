"""System tools: notify_user, get_system_status and the cron tools (set_cron, list_cron, remove_cron).

notify_user appends :class:`UserNotified` to ``legion.events.<agent>.user.notify``; channel
bridges deliver it. The cron tools ask the scheduler (``legion.scheduler.<agent>.<op>``, a service
import like the vault's); the agent never keeps a timer of its own, so a job survives the agent.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from typing import Any, Final

from pydantic import Field

from legion.actors.agent.sanitize import strip_invisible, strip_invisible_deep
from legion.actors.agent.tools._store import store
from legion.actors.agent.tools.base import Params, Tool, ToolContext, ToolError, ToolErrorCode
from legion.broker import Broker, bucket_name
from legion.contracts import subjects as subj
from legion.contracts.agent_tools import CronList, CronRemove, CronReply, CronSet, NotifyLevel, UserNotified
from legion.contracts.base import Request
from legion.contracts.errors import ContractError, LegionError, PermissionDenied, RequestTimeout, Unavailable
from legion.contracts.service import ServiceError

__all__ = ["CRON_TIMEOUT_S", "NOTIFY_TYPE", "system_tools"]

NOTIFY_TYPE: Final = "user.notify"
"""The event type (subject suffix) of :class:`UserNotified`."""
CRON_TIMEOUT_S: Final = 5.0
MAX_NOTIFY_CHARS: Final = 4000
_JOB: Final = re.compile(r"[a-z0-9_-]{1,64}")
_NO_SCHEDULER: Final = "the scheduler is not running in this fleet, so cron jobs cannot be set, listed or removed"

BudgetFn = Callable[[], Awaitable[dict[str, Any]]]


class NotifyParams(Params):
    text: str = Field(min_length=1, max_length=MAX_NOTIFY_CHARS, description="What to tell the user")
    level: NotifyLevel = Field("info", description="info, warning or urgent")


class NoParams(Params):
    pass


class SetCronParams(Params):
    name: str = Field(description="Job name: lower-case letters, digits, '_' or '-'; setting it again replaces it")
    schedule: str = Field(
        min_length=1, max_length=100, description="A cron expression ('0 9 * * 1-5') or an interval ('every 10m')"
    )
    text: str = Field(min_length=1, max_length=MAX_NOTIFY_CHARS, description="The task text sent to you each time")
    tz: str = Field("UTC", max_length=64, description="IANA time zone of the cron or 'at' time, e.g. 'Europe/Berlin'")


class RemoveCronParams(Params):
    name: str


def _job_name(name: str) -> str:
    if _JOB.fullmatch(name) is None:
        raise ToolError(
            "invalid_args", f"job name {name!r} is invalid: use 1 to 64 lower-case letters, digits, '_' or '-'"
        )
    return name


def system_tools(
    broker: Broker,
    agent: str,
    *,
    projects: list[str],
    tool_names: Callable[[], list[str]],
    budget: BudgetFn | None,
    can_message: list[str] | None = None,
    subscribe: list[str] | None = None,
) -> list[Tool]:
    """notify_user, get_system_status, set_cron, list_cron and remove_cron for ``agent``."""

    async def notify_user(p: NotifyParams, ctx: ToolContext) -> dict[str, Any]:
        subject = subj.EVENTS.render(source=agent, type=NOTIFY_TYPE)
        event = UserNotified(agent=agent, text=p.text, level=p.level, session=ctx.session)
        ack = await store(broker, subject, event, ctx, what="the notification")
        return {"sent": True, "level": p.level, "stream_seq": ack.seq, "duplicate": ack.duplicate}

    async def get_system_status(p: NoParams, ctx: ToolContext) -> dict[str, Any]:
        spend: Any = "unknown"
        if budget is not None:
            try:
                spend = await budget()
            except (LegionError, TimeoutError):
                spend = "unknown"
        return {
            "agent": agent,
            "projects": list(projects),
            "tools": sorted(tool_names()),
            "budget": spend,
            "may_message": sorted(can_message or []),
            "permissions": {
                "publish": [subj.EVENTS.wildcard(source=agent)],
                "blackboards": [bucket_name(proj) for proj in projects],
                "receives_events": list(subscribe or []),
            },
        }

    async def ask(op: str, req: Request) -> CronReply:
        subject = subj.SCHEDULER.render(agent=agent, op=op)
        try:
            reply = await broker.request(subject, req, reply_type=(CronReply, ServiceError), timeout=CRON_TIMEOUT_S)
        except PermissionDenied:
            raise ToolError("denied", f"your credential may not call the scheduler ({subject!r})") from None
        except (Unavailable, RequestTimeout):
            raise ToolError("unavailable", _NO_SCHEDULER, retryable=True) from None
        except ContractError as exc:
            raise ToolError("failed", f"the scheduler answered with something unexpected: {exc}") from None
        if isinstance(reply, ServiceError):
            code: ToolErrorCode = "invalid_args" if reply.code == "invalid" else "failed"
            raise ToolError(code, f"the scheduler refused: {strip_invisible(reply.message)}", retryable=reply.retryable)
        assert isinstance(reply, CronReply)
        if not reply.ok:
            raise ToolError("failed", f"the scheduler refused: {strip_invisible(reply.message)}")
        return reply

    def _result(reply: CronReply) -> dict[str, Any]:
        return {"jobs": strip_invisible_deep(reply.jobs), "message": strip_invisible(reply.message)}

    async def set_cron(p: SetCronParams, ctx: ToolContext) -> dict[str, Any]:
        req = CronSet(
            agent=agent, name=_job_name(p.name), schedule=p.schedule, text=p.text, request_id=ctx.call_key, tz=p.tz
        )
        return _result(await ask("set", req))

    async def list_cron(p: NoParams, ctx: ToolContext) -> dict[str, Any]:
        return _result(await ask("list", CronList(agent=agent, request_id=ctx.call_key)))

    async def remove_cron(p: RemoveCronParams, ctx: ToolContext) -> dict[str, Any]:
        req = CronRemove(agent=agent, name=_job_name(p.name), request_id=ctx.call_key)
        return _result(await ask("remove", req))

    g = "system"
    return [
        Tool(
            "notify_user",
            "Send your user a message now (info, warning or urgent); chat bridges deliver it.",
            NotifyParams,
            notify_user,
            side_effects=True,
            group=g,
        ),
        Tool(
            "get_system_status",
            "Who you are: your projects, tools, budget, and what you may publish.",
            NoParams,
            get_system_status,
            group=g,
        ),
        Tool(
            "set_cron",
            "Schedule a recurring task for yourself: at each time of the schedule the scheduler "
            "sends you the text as a new task. Setting an existing name replaces that job.",
            SetCronParams,
            set_cron,
            side_effects=True,
            group=g,
        ),
        Tool("list_cron", "List your scheduled jobs.", NoParams, list_cron, group=g),
        Tool(
            "remove_cron",
            "Remove one of your scheduled jobs by name.",
            RemoveCronParams,
            remove_cron,
            side_effects=True,
            group=g,
        ),
    ]
