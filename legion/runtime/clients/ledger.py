"""THE ledger client: Reserve before a call, Commit or Release after it (the vault), and the costs
query (the vault's budget answer, ``legion costs``, the dashboard to come).

Requests go to ``legion.svc.<ledger>.<op>``. A Commit must never be lost: when the ledger does not
answer, the Commit is appended straight to the LEDGER stream on ``legion.ledger.<agent>.commit``
with ``Nats-Msg-Id`` = reservation id, so a retry (or the ledger's own append) is stored once.
Release is handled the same way (an unreleased reservation would also expire after its TTL).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from decimal import Decimal
from typing import Final

import structlog

from legion.broker import Broker
from legion.contracts import subjects as subj
from legion.contracts.errors import LegionError, Unavailable
from legion.contracts.ledger import Commit, CostsQuery, CostsReport, LedgerAck, Release, Reserve, Reserved
from legion.contracts.service import ServiceError

__all__ = ["LEDGER_SERVICE", "LedgerClient", "LedgerUnavailable"]

log = structlog.get_logger("legion.runtime.clients.ledger")

LEDGER_SERVICE: Final = "ledger"
"""The ledger's service name: callers request ``legion.svc.ledger.<op>``."""

_STREAM_RETRIES = (0.0, 0.2, 1.0)  # seconds before each attempt to append to the LEDGER stream


class LedgerUnavailable(Unavailable):
    """The ledger did not answer (or refused) a request; for a reservation, no call is made (fail closed)."""


@dataclass(frozen=True, slots=True)
class LedgerClient:
    broker: Broker
    service: str = LEDGER_SERVICE
    timeout_s: float = 2.0

    async def costs(self, query: CostsQuery, *, timeout_s: float | None = None) -> CostsReport:
        """Spend grouped by day or month. Raises LedgerUnavailable if the ledger does not answer or refuses."""
        subject = subj.SERVICE.render(service=self.service, op="costs")
        try:
            reply = await self.broker.request(
                subject, query, reply_type=(CostsReport, ServiceError), timeout=timeout_s or self.timeout_s
            )
        except LegionError as exc:
            raise LedgerUnavailable(
                f"the ledger does not answer ({type(exc).__name__}); see .legion/logs/ledger.log"
            ) from None
        if isinstance(reply, ServiceError):
            raise LedgerUnavailable(f"the ledger refused the query: {reply.code}: {reply.message}")
        assert isinstance(reply, CostsReport)
        return reply

    async def reserve(self, reserve: Reserve, *, trace: str) -> Reserved:
        subject = subj.SERVICE.render(service=self.service, op="reserve")
        try:
            reply = await self.broker.request(
                subject, reserve, reply_type=(Reserved, ServiceError), trace=trace, timeout=self.timeout_s
            )
        except LegionError as exc:
            raise LedgerUnavailable(f"the ledger did not answer ({type(exc).__name__})") from None
        if isinstance(reply, ServiceError):
            raise LedgerUnavailable(f"the ledger refused the request: {reply.code}: {reply.message}")
        assert isinstance(reply, Reserved)
        return reply

    async def commit(self, commit: Commit, *, trace: str) -> None:
        await self._settle("commit", commit, commit.agent, commit.reservation_id, trace=trace)

    async def release(self, release: Release, *, agent: str, trace: str) -> None:
        await self._settle("release", release, agent, release.reservation_id, trace=trace)

    async def _settle(self, op: str, message: Commit | Release, agent: str, reservation_id: str, *, trace: str) -> None:
        subject = subj.SERVICE.render(service=self.service, op=op)
        try:
            reply = await self.broker.request(
                subject, message, reply_type=(LedgerAck, ServiceError), trace=trace, timeout=self.timeout_s
            )
        except LegionError as exc:
            log.warning("ledger.no_answer", op=op, reservation_id=reservation_id, error=type(exc).__name__)
        else:
            if isinstance(reply, LedgerAck):
                if not reply.ok:
                    log.warning("ledger.refused", op=op, reservation_id=reservation_id, reason=reply.reason)
                return
            log.warning("ledger.service_error", op=op, reservation_id=reservation_id, code=getattr(reply, "code", ""))
        await self._append(op, message, agent, reservation_id, trace=trace)

    async def _append(self, op: str, message: Commit | Release, agent: str, reservation_id: str, *, trace: str) -> None:
        subject = subj.LEDGER.render(agent=agent, op=op)
        for delay in _STREAM_RETRIES:
            if delay:
                await asyncio.sleep(delay)
            try:
                await self.broker.js_publish(
                    subject, message, trace=trace, msg_id=reservation_id, timeout=self.timeout_s
                )
            except LegionError as exc:
                log.warning("ledger.append_failed", op=op, reservation_id=reservation_id, error=type(exc).__name__)
                continue
            log.info("ledger.appended", op=op, reservation_id=reservation_id, subject=subject)
            return
        amount = message.actual_usd if isinstance(message, Commit) else Decimal(0)
        log.error("ledger.settlement_lost", op=op, reservation_id=reservation_id, agent=agent, usd=str(amount))
