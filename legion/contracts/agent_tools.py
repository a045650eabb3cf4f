"""Contracts of the agent's system tools: notifications, the agent's own events, cron requests.

- :class:`UserNotified` on ``legion.events.<agent>.user.notify``: channel bridges deliver it.
- :class:`AgentEvent` on ``legion.events.<agent>.<event_type>``: an event type the agent names itself.
- :class:`CronSet`, :class:`CronList`, :class:`CronRemove` on ``legion.scheduler.<agent>.{set,list,remove}``
  (a service import, like the vault), answered by :class:`CronReply`. The agent never keeps timers.
"""

from __future__ import annotations

from typing import Any, Literal

import msgspec

from legion.contracts.base import Event, Reply, Request

__all__ = ["AgentEvent", "CronList", "CronRemove", "CronReply", "CronSet", "NotifyLevel", "UserNotified"]

NotifyLevel = Literal["info", "warning", "urgent"]


class UserNotified(Event, frozen=True, kw_only=True, tag="user.notify.v1"):
    """An agent asks for a message to reach its user; channel bridges deliver it."""

    agent: str
    text: str
    level: NotifyLevel = "info"
    session: str = ""


class AgentEvent(Event, frozen=True, kw_only=True, tag="agent.event.v1"):
    """An event an agent publishes under its own source, with a type it names (``report.ready``).

    ``event_type`` repeats the subject's type tokens (the body's ``type`` field is the contract tag).
    """

    agent: str
    event_type: str
    data: dict[str, Any] = msgspec.field(default_factory=dict)


class CronSet(Request, frozen=True, kw_only=True, tag="cron.set.v1"):
    """Create or replace the agent's job ``name``: send ``text`` to its inbox on ``schedule``.

    ``schedule`` is a cron expression (``0 9 * * 1-5``), an interval (``every 10m``) or a one-shot
    time (``at 2026-12-24T18:00``); ``tz`` is the IANA time zone a cron or an ``at`` is read in.
    """

    agent: str
    name: str
    schedule: str
    text: str
    request_id: str
    tz: str = "UTC"


class CronList(Request, frozen=True, kw_only=True, tag="cron.list.v1"):
    """List the agent's jobs."""

    agent: str
    request_id: str


class CronRemove(Request, frozen=True, kw_only=True, tag="cron.remove.v1"):
    """Remove the agent's job ``name``."""

    agent: str
    name: str
    request_id: str


class CronReply(Reply, frozen=True, kw_only=True, tag="cron.reply.v1"):
    """The scheduler's answer to a cron request: the agent's jobs after the operation."""

    ok: bool
    jobs: list[dict[str, Any]] = msgspec.field(default_factory=list)
    message: str = ""
    request_id: str = ""
