"""The ledger's state: a pure fold of LEDGER entries, and the decisions taken on it. No I/O.

Every total is kept in memory, keyed by (scope, name, period, period key), and updated by each
event, so a budget check is a handful of dict lookups however much usage has been recorded.
Periods come from the stream timestamp of each event (UTC), never from the clock, so folding the
same stream gives the same state. Changes are tracked for the store, which mirrors them in SQLite
together with ``last_seq``.

Rules of the fold:

- Reserve holds ``estimate_usd`` against the agent and (if given) its project until Commit,
  Release, or a Release(reason="expired") recorded after ``start + ttl_s``.
- Commit records ``actual_usd`` in the period of the Commit's timestamp and frees the reservation;
  a Commit of an unknown, released or expired reservation still records the usage. A second Commit
  of the same reservation id within :data:`COMMIT_DEDUPE_NS` is ignored.
- Events with a negative or non-finite amount, unknown tags or foreign subjects are skipped (their
  sequence still counts as applied).
"""

from __future__ import annotations

import heapq
import math
from collections import deque
from collections.abc import Iterator
from decimal import Decimal
from typing import Final

from legion.actors.ledger.budgets import Budgets, Period, Scope
from legion.actors.ledger.model import (
    LEVELS,
    ZERO,
    Alert,
    AlertKey,
    Changes,
    CostKey,
    CostTotals,
    Decision,
    HoldKey,
    Reservation,
    Snapshot,
    TotalKey,
    UsageRow,
)
from legion.actors.ledger.periods import period_key, period_keys
from legion.actors.ledger.wire import Entry
from legion.contracts.ledger import BudgetExceeded, Commit, Release, Reserve, UsageRecorded

__all__ = ["COMMIT_DEDUPE_NS", "MAX_TTL_S", "LedgerState"]

COMMIT_DEDUPE_NS: Final = 2 * 86_400 * 1_000_000_000
"""A second Commit of one reservation id within two days (by stream time) is a duplicate."""
MAX_TTL_S: Final = 86_400.0


def _valid_amount(value: Decimal) -> bool:
    return value.is_finite() and value >= 0


def _scopes(agent: str, project: str) -> tuple[tuple[Scope, str], ...]:
    return (("agent", agent), ("project", project)) if project else (("agent", agent),)


class LedgerState:
    """Fold with :meth:`apply`; decide with :meth:`decide_reserve`; persist :meth:`take_changes`."""

    def __init__(self, budgets: Budgets, snapshot: Snapshot | None = None) -> None:
        self.budgets = budgets
        snap = snapshot or Snapshot()
        self.last_seq = snap.last_seq
        self.last_ts_ns = snap.last_ts_ns
        self._spent: dict[TotalKey, Decimal] = dict(snap.totals)
        self._reservations: dict[str, Reservation] = {}
        self._held: dict[HoldKey, Decimal] = {}
        self._expiry: list[tuple[int, int, str]] = []  # (expires_ns, seq, reservation id), lazily cleaned
        for res in sorted(snap.reservations.values(), key=lambda r: r.seq):
            self._add_reservation(res)
        self._costs: dict[CostKey, CostTotals] = {k: v.copy() for k, v in snap.costs.items()}
        self._alerted: set[AlertKey] = {k for k, (_, recorded) in snap.alerts.items() if recorded}
        self._pending: dict[AlertKey, Alert] = {k: a for k, (a, recorded) in snap.alerts.items() if not recorded}
        self._alert_info: dict[AlertKey, Alert] = {k: a for k, (a, _) in snap.alerts.items()}
        self._committed: dict[str, int] = {}
        self._commit_order: deque[tuple[int, str]] = deque()
        for rid, ts in sorted(snap.commits.items(), key=lambda item: (item[1], item[0])):
            self._remember_commit(rid, ts)
        self._reset_changes()

    # -- reading --------------------------------------------------------------------------------
    def spent(self, scope: Scope, name: str, period: Period, key: str) -> Decimal:
        return self._spent.get((scope, name, period, key), ZERO)

    def held(self, scope: Scope, name: str) -> Decimal:
        """The sum of the open reservations of an agent or project."""
        return self._held.get((scope, name), ZERO)

    def reservation(self, reservation_id: str) -> Reservation | None:
        return self._reservations.get(reservation_id)

    def committed_recently(self, reservation_id: str, ts_ns: int) -> bool:
        ts = self._committed.get(reservation_id)
        return ts is not None and ts_ns - ts <= COMMIT_DEDUPE_NS

    def pending_alerts(self) -> list[Alert]:
        """Thresholds reached whose BudgetExceeded is not recorded on the stream yet."""
        return [self._pending[k] for k in sorted(self._pending)]

    def next_expired(self, now_ns: int) -> Reservation | None:
        """The open reservation that expired first, if any expired at ``now_ns``."""
        while self._expiry:
            expires_ns, seq, rid = self._expiry[0]
            res = self._reservations.get(rid)
            if res is None or res.seq != seq:
                heapq.heappop(self._expiry)
                continue
            return res if expires_ns <= now_ns else None
        return None

    def snapshot(self) -> Snapshot:
        """A copy of the whole state (what the store would load back)."""
        horizon = self.last_ts_ns - COMMIT_DEDUPE_NS
        return Snapshot(
            last_seq=self.last_seq,
            last_ts_ns=self.last_ts_ns,
            totals=dict(self._spent),
            reservations=dict(self._reservations),
            costs={k: v.copy() for k, v in self._costs.items()},
            alerts={k: (a, k in self._alerted) for k, a in self._alert_info.items()},
            commits={rid: ts for rid, ts in self._committed.items() if ts >= horizon},
        )

    # -- decisions ------------------------------------------------------------------------------
    def decide_reserve(self, req: Reserve, now_ns: int) -> Decision:
        """Grant iff spent + reserved + estimate fits every budget of the agent and its project."""
        rid = req.reservation_id
        if not rid:
            return Decision(granted=False, reason="reservation_id is empty; give each call a unique id")
        if rid in self._reservations:
            remaining = self._remaining(req, now_ns)
            return Decision(granted=True, reason="already reserved", remaining_usd=remaining, duplicate=True)
        if self.committed_recently(rid, now_ns):
            return Decision(granted=False, reason=f"reservation {rid!r} was already committed; use a new id")
        est = req.estimate_usd
        if not _valid_amount(est):
            return Decision(granted=False, reason=f"estimate_usd {est} must be a finite amount >= 0")
        left_after: Decimal | None = None
        for scope, name, period, limit, spent, held in self._budgets_in_play(req, now_ns):
            left = limit - spent - held
            if est > left:
                reason = (
                    f"{scope} {name!r} {period} budget of {limit} USD: spent {spent} + reserved {held}"
                    f" + estimate {est} exceeds it"
                )
                return Decision(granted=False, reason=reason, remaining_usd=max(left, ZERO))
            left_after = left - est if left_after is None else min(left_after, left - est)
        return Decision(granted=True, remaining_usd=left_after)

    def _remaining(self, req: Reserve, now_ns: int) -> Decimal | None:
        lefts = [limit - spent - held for _s, _n, _p, limit, spent, held in self._budgets_in_play(req, now_ns)]
        return min(lefts) if lefts else None

    def _budgets_in_play(
        self, req: Reserve, now_ns: int
    ) -> Iterator[tuple[Scope, str, str, Decimal, Decimal, Decimal]]:
        """(scope, name, period, limit, spent in the current period, held) for every budget that
        applies to ``req``: the agent's and its project's, daily and monthly. O(1) dict reads."""
        day, month = period_keys(now_ns)
        for scope, name in _scopes(req.agent, req.project):
            held = self._held.get((scope, name), ZERO)
            for period, limit in self.budgets.of(scope, name).items():
                spent = self._spent.get((scope, name, period, day if period == "day" else month), ZERO)
                yield scope, name, period, limit, spent, held

    # -- the fold -------------------------------------------------------------------------------
    def apply(self, entry: Entry) -> bool:
        """Apply one stream entry; returns False if it was skipped. Entries at or below last_seq are ignored."""
        if entry.seq <= self.last_seq:
            return False
        ev = entry.event
        applied = False
        if isinstance(ev, Reserve):
            applied = self._on_reserve(entry, ev)
        elif isinstance(ev, Commit):
            applied = self._on_commit(entry, ev)
        elif isinstance(ev, Release):
            applied = self._on_release(ev)
        elif isinstance(ev, UsageRecorded):
            applied = self._on_usage(entry, ev)
        elif isinstance(ev, BudgetExceeded):
            applied = self._on_alert(entry, ev)
        self.last_seq = entry.seq
        self.last_ts_ns = max(self.last_ts_ns, entry.ts_ns)
        self._meta_dirty = True
        return applied

    def _on_reserve(self, entry: Entry, ev: Reserve) -> bool:
        rid = ev.reservation_id
        if not rid or rid in self._reservations or not _valid_amount(ev.estimate_usd):
            return False
        ttl = ev.ttl_s if math.isfinite(ev.ttl_s) else MAX_TTL_S
        ttl_ns = int(min(max(ttl, 0.0), MAX_TTL_S) * 1_000_000_000)
        res = Reservation(
            reservation_id=rid,
            agent=ev.agent,
            project=ev.project,
            estimate_usd=ev.estimate_usd,
            start_ns=entry.ts_ns,
            expires_ns=entry.ts_ns + ttl_ns,
            seq=entry.seq,
        )
        self._add_reservation(res)
        self._res_deleted.discard(rid)
        self._res_put[rid] = res
        return True

    def _on_commit(self, entry: Entry, ev: Commit) -> bool:
        rid = ev.reservation_id
        if not _valid_amount(ev.actual_usd) or (rid and self.committed_recently(rid, entry.ts_ns)):
            return False
        res = self._remove_reservation(rid) if rid else None
        project = ev.project or (res.project if res is not None else "")
        self._record_usage(
            entry,
            rid=rid,
            agent=ev.agent,
            project=project,
            model=ev.model,
            cost=ev.actual_usd,
            prompt_tokens=ev.prompt_tokens,
            completion_tokens=ev.completion_tokens,
        )
        if rid:
            self._remember_commit(rid, entry.ts_ns)
        return True

    def _on_release(self, ev: Release) -> bool:
        return self._remove_reservation(ev.reservation_id) is not None

    def _on_usage(self, entry: Entry, ev: UsageRecorded) -> bool:
        if not _valid_amount(ev.cost_usd):
            return False
        self._record_usage(
            entry,
            rid="",
            agent=ev.agent,
            project=ev.project,
            model=ev.model,
            cost=ev.cost_usd,
            prompt_tokens=ev.prompt_tokens,
            completion_tokens=ev.completion_tokens,
        )
        return True

    def _on_alert(self, entry: Entry, ev: BudgetExceeded) -> bool:
        key = entry.period_key or period_key(ev.period, entry.ts_ns)
        ident: AlertKey = (ev.scope, ev.name, ev.period, key, ev.level)
        alert = self._pending.pop(ident, None) or Alert(
            scope=ev.scope,
            name=ev.name,
            period=ev.period,
            key=key,
            level=ev.level,
            limit_usd=ev.limit_usd,
            spent_usd=ev.spent_usd,
            agent=entry.subject_agent,
        )
        self._alerted.add(ident)
        self._alert_info[ident] = alert
        self._alerts_dirty.add(ident)
        return True

    # -- helpers --------------------------------------------------------------------------------
    def _add_reservation(self, res: Reservation) -> None:
        self._reservations[res.reservation_id] = res
        heapq.heappush(self._expiry, (res.expires_ns, res.seq, res.reservation_id))
        self._hold(res, res.estimate_usd)

    def _remove_reservation(self, rid: str) -> Reservation | None:
        res = self._reservations.pop(rid, None)
        if res is not None:
            self._hold(res, -res.estimate_usd)
            if self._res_put.pop(rid, None) is None:
                self._res_deleted.add(rid)
        return res

    def _hold(self, res: Reservation, amount: Decimal) -> None:
        for key in _scopes(res.agent, res.project):
            value = self._held.get(key, ZERO) + amount
            if value == 0:
                self._held.pop(key, None)
            else:
                self._held[key] = value

    def _remember_commit(self, rid: str, ts_ns: int) -> None:
        self._committed[rid] = ts_ns
        self._commit_order.append((ts_ns, rid))
        horizon = ts_ns - COMMIT_DEDUPE_NS
        while self._commit_order and self._commit_order[0][0] < horizon:
            old_ts, old_rid = self._commit_order.popleft()
            if self._committed.get(old_rid) == old_ts:
                del self._committed[old_rid]

    def _record_usage(
        self,
        entry: Entry,
        *,
        rid: str,
        agent: str,
        project: str,
        model: str,
        cost: Decimal,
        prompt_tokens: int,
        completion_tokens: int,
    ) -> None:
        day, month = period_keys(entry.ts_ns)
        periods: tuple[tuple[Period, str], ...] = (("day", day), ("month", month))
        for scope, name in _scopes(agent, project):
            for period, key in periods:
                total: TotalKey = (scope, name, period, key)
                self._spent[total] = self._spent.get(total, ZERO) + cost
                self._totals_dirty.add(total)
            self._check_alerts(scope, name, day, month, entry.subject_agent or agent)
        ckey: CostKey = (day, agent, project, model)
        agg = self._costs.get(ckey)
        if agg is None:
            agg = self._costs[ckey] = CostTotals()
        agg.cost_usd += cost
        agg.calls += 1
        agg.prompt_tokens += prompt_tokens
        agg.completion_tokens += completion_tokens
        self._costs_dirty.add(ckey)
        self._usage.append(
            UsageRow(
                seq=entry.seq,
                ts_ns=entry.ts_ns,
                day=day,
                reservation_id=rid,
                agent=agent,
                project=project,
                model=model,
                cost_usd=cost,
                prompt_tokens=prompt_tokens,
                completion_tokens=completion_tokens,
            )
        )

    def _check_alerts(self, scope: Scope, name: str, day: str, month: str, agent: str) -> None:
        for period, limit in self.budgets.of(scope, name).items():
            key = day if period == "day" else month
            spent = self._spent[(scope, name, period, key)]
            if spent <= 0:
                continue
            for level, ratio in LEVELS:
                ident: AlertKey = (scope, name, period, key, level)
                if spent < limit * ratio or ident in self._alerted or ident in self._pending:
                    continue
                alert = Alert(
                    scope=scope,
                    name=name,
                    period=period,
                    key=key,
                    level=level,
                    limit_usd=limit,
                    spent_usd=spent,
                    agent=agent,
                )
                self._pending[ident] = alert
                self._alert_info[ident] = alert
                self._alerts_dirty.add(ident)

    # -- changes for the store ------------------------------------------------------------------
    def _reset_changes(self) -> None:
        self._meta_dirty = False
        self._totals_dirty: set[TotalKey] = set()
        self._res_put: dict[str, Reservation] = {}
        self._res_deleted: set[str] = set()
        self._usage: list[UsageRow] = []
        self._costs_dirty: set[CostKey] = set()
        self._alerts_dirty: set[AlertKey] = set()

    @property
    def has_changes(self) -> bool:
        return self._meta_dirty

    def take_changes(self) -> Changes:
        """Everything changed since the last call, as of ``last_seq``; synchronous, so it is consistent."""
        changes = Changes(
            last_seq=self.last_seq,
            last_ts_ns=self.last_ts_ns,
            totals={k: self._spent[k] for k in self._totals_dirty},
            reservations_put=self._res_put,
            reservations_deleted=self._res_deleted,
            usage=self._usage,
            costs={k: self._costs[k].copy() for k in self._costs_dirty},
            alerts={k: (self._alert_info[k], k in self._alerted) for k in self._alerts_dirty},
        )
        self._reset_changes()
        return changes
