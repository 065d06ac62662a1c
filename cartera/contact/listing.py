"""Which accounts the campaign calls first: callbacks due, at their time and to their agent; then accounts whose
promise broke; then the rest by expected value (balance x P(reaching the debtor now), :mod:`cartera.contact.reach`),
each segment of days past due (tramo de mora) given its quota of those calls when the site sets quotas
(:mod:`cartera.contact.segments`).

Only the order is decided here: every call still goes through the compliance gate
(:meth:`cartera.contact.calls.CallService.place_call`).
"""

from __future__ import annotations

import enum
import heapq
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, tzinfo
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import Select, exists, func, select
from sqlalchemy.orm import Session

from cartera.contact.reach import ReachModel, hour_of_week, learn, week_hour_label
from cartera.contact.segments import Segment, by_quota, days_past_due, segment_of
from cartera.core.clock import Clock
from cartera.core.config import ListingConfig
from cartera.core.store.database import Database
from cartera.core.store.schema import (
    Account,
    AccountStop,
    ContactAttempt,
    Creditor,
    Debtor,
    Phone,
    Portfolio,
    PromiseRow,
)
from cartera.portfolio.identity import PortfolioKey, in_portfolios
from cartera.workspace.agents import AgentRoster, AgentState
from cartera.workspace.callbacks import due_callbacks
from cartera.workspace.promises import PromiseState


class Priority(enum.IntEnum):
    CALLBACK = 0
    BROKEN_PROMISE = 1
    VALUE = 2


@dataclass(frozen=True)
class ReadyAgent:
    """An agent offered calls now: ``name`` as callbacks name it (the web user), ``extension`` its identity at the
    dialer."""

    name: str
    extension: str


def ready_in(roster: AgentRoster) -> list[ReadyAgent]:
    """The agents of the workspace's roster ready now."""
    return [ReadyAgent(s.agent, s.extension) for s in roster.everyone() if s.state is AgentState.READY]


@dataclass(frozen=True)
class Candidate:
    """A due account as the order sees it: ``phones`` the numbers a call may go to, the one the gate tries first
    first (the least tried); ``zone`` the debtor's."""

    account_id: int
    ref: str
    balance: Decimal
    currency: str
    phones: tuple[str, ...]
    zone: tzinfo
    broken_promise: bool = False
    due_on: date | None = None  #: the day the debt fell due, when the creditor said
    risk_score: float | None = None  #: the creditor's risk score, when it gave one


@dataclass(frozen=True)
class Pick:
    """An account to call, and why. ``phone``: the number to call (a callback's, the one the debtor gave), else the
    gate picks; ``agent``: the dialer identity the answered call must reach (a callback for its agent)."""

    account_id: int
    ref: str
    priority: Priority
    value: float  #: expected value: balance x P(reaching the debtor now); 0 for callbacks
    why: str
    phone: str | None = None
    agent: str | None = None
    waiting: bool = False  #: a callback whose agent is not ready: not placed yet
    segment: Segment | None = None  #: its days past due's segment (tramo de mora), when the due day is known


def risk_weight(score: float | None, config: ListingConfig) -> float:
    """What the creditor's risk ``score`` multiplies an account's expected value by: 0.5 to 1.5 by where the score
    lies in ``risk_score_range`` (reversed for ``lower_pays``), 1 without a score or when ``ignore``."""
    if score is None or config.risk_score == "ignore":
        return 1.0
    low, high = config.risk_score_range
    scaled = min(max((score - low) / (high - low), 0.0), 1.0)
    return 0.5 + (scaled if config.risk_score == "higher_pays" else 1.0 - scaled)


def rank(
    candidates: Iterable[Candidate], model: ReachModel, now: datetime, config: ListingConfig | None = None
) -> list[Pick]:
    """Broken promises first, then by expected value (times the creditor's risk score's :func:`risk_weight` and
    the segment's chance of payment, ``config.payment_chance``), highest first (ties: the order given), each
    segment of days past due given its share of the value-ordered places by ``config``'s quotas
    (:func:`cartera.contact.segments.by_quota`)."""
    config = config or ListingConfig()
    picks = []
    for candidate in candidates:
        hour = hour_of_week(now, candidate.zone)
        reach = model.reach(candidate.phones[0], hour) if candidate.phones else None
        probability = reach.probability if reach else 0.0
        weight = risk_weight(candidate.risk_score, config)
        days = days_past_due(candidate.due_on, now.astimezone(candidate.zone).date())
        segment = segment_of(days)
        payment = config.payment_chance(segment)
        value = float(candidate.balance) * probability * weight * payment
        why = f"{candidate.balance} {candidate.currency} x " + (
            f"{reach.explain()} at {week_hour_label(hour)} on {candidate.phones[0]}" if reach else "no number"
        )
        if weight != 1.0:
            why += f" x{weight:.2f} (risk score {candidate.risk_score:g})"
        if config.payment_by_segment:
            why += f" x P(payment) {payment:.2f}"
        priority = Priority.BROKEN_PROMISE if candidate.broken_promise else Priority.VALUE
        if candidate.broken_promise:
            why = f"broken promise; {why}"
        if days is not None:
            why += f"; {days} days past due" + (f" (tramo {segment})" if segment else "")
        picks.append(Pick(candidate.account_id, candidate.ref, priority, value, why, segment=segment))
    ranked = sorted(picks, key=lambda pick: (pick.priority, -pick.value))
    if not config.segment_quotas:
        return ranked
    first = [pick for pick in ranked if pick.priority is not Priority.VALUE]
    return first + by_quota(ranked[len(first) :], lambda pick: pick.segment, config.segment_quotas)


class CallList:
    """One site's order of calls. ``ready_agents`` gives the agents ready now; ``targets_agents`` whether the
    dialer can connect a call to a given agent (else a callback for an agent goes to the queue when it is ready);
    ``release``: how long after its time a callback for one agent is offered to anyone."""

    def __init__(
        self,
        *,
        site: str,
        zone: ZoneInfo,
        db: Database,
        clock: Clock,
        config: ListingConfig,
        release: timedelta,
        ready_agents: Callable[[], Sequence[ReadyAgent]],
        targets_agents: Callable[[], bool],
    ) -> None:
        self.site, self.zone, self.db, self.clock, self.config = site, zone, db, clock, config
        self.release, self.ready_agents, self.targets_agents = release, ready_agents, targets_agents
        self._model: ReachModel | None = None
        self._learned_at: datetime | None = None
        self._scored: dict[int, tuple[int, float]] = {}
        self._segments: dict[int, Segment | None] = {}  #: the scored accounts' segments (tramos de mora)
        self._callback_calls: dict[str, int] = {}  #: agent (dialer identity) -> account of its callback's call
        self._scored_for: tuple[datetime, datetime | None] | None = None
        self._lock = threading.Lock()

    def model(self, now: datetime) -> ReachModel:
        """The reach model, learned again when older than ``relearn_minutes``."""
        with self._lock:
            stale = self._learned_at is None or now - self._learned_at >= timedelta(minutes=self.config.relearn_minutes)
            if self._model is None or stale:
                fresh = ReachModel(hour_strength=self.config.hour_strength, number_strength=self.config.number_strength)
                with self.db.session() as session:
                    since = now - timedelta(days=self.config.history_days)
                    self._model = learn(session, site=self.site, zone=self.zone, since=since, model=fresh)
                self._learned_at = now
            return self._model

    def order(
        self, due: Sequence[tuple[int, str]], now: datetime, within: frozenset[PortfolioKey] | None = None
    ) -> list[Pick]:
        """The callbacks due (of the portfolios ``within``, ``None``: all; those waiting for their agent included,
        marked), then ``due`` (account id and reference, longest due first) in the configured order."""
        with self.db.session() as session:
            callbacks = self._callbacks(session, now, within)
            called_back = {pick.account_id for pick in callbacks}
            rest = [(account_id, ref) for account_id, ref in due if account_id not in called_back]
            if self.config.order == "fifo":
                ranked = [Pick(account_id, ref, Priority.VALUE, 0.0, "longest due") for account_id, ref in rest]
            else:
                candidates = self._candidates(session, rest)
        if self.config.order != "fifo":
            ranked = rank(candidates, self.model(now), now, self.config)
        return callbacks + ranked

    def pool(
        self, now: datetime, day_start: datetime, limit: int, within: frozenset[PortfolioKey] | None = None
    ) -> list[DueAccount]:
        """At most ``limit`` accounts due by ``now`` to rank (of the portfolios ``within``, ``None``: all), with
        their calls since ``day_start``: ``fifo``, the longest due; ``value``, the best of all the due accounts by
        their score this hour (kept until the hour or the model changes, so an account passed over does not hold
        its place at the front of the pool), each segment of days past due given its quota of the pool."""
        if self.config.order == "fifo":
            with self.db.session() as session:
                return due_accounts(session, site=self.site, now=now, day_start=day_start, limit=limit, within=within)
        model = self.model(now)
        with self.db.session() as session:
            due = session.execute(_due(self.site, now, Account.id, within=within)).scalars().all()
            scores = self._scores(session, model, now, due)
            best = self._best(due, scores, limit)
            found = {
                row.account_id: row
                for chunk in _chunks(best)
                for row in due_accounts(session, site=self.site, now=now, day_start=day_start, limit=limit, ids=chunk)
            }
        return [found[account_id] for account_id in best if account_id in found]

    def _best(self, due: Sequence[int], scores: dict[int, tuple[int, float]], limit: int) -> list[int]:
        """The ``limit`` best of ``due`` by ``scores``, with the segments' quotas: each segment's best are
        shortlisted, then interleaved by :func:`cartera.contact.segments.by_quota`."""
        quotas = self.config.segment_quotas
        if not quotas:
            return heapq.nlargest(limit, due, key=lambda account_id: scores[account_id])
        segments: dict[Segment | None, list[int]] = {}
        for account_id in due:
            segments.setdefault(self._segments.get(account_id), []).append(account_id)
        shortlist = [
            account_id
            for ids in segments.values()
            for account_id in heapq.nlargest(limit, ids, key=lambda account_id: scores[account_id])
        ]
        shortlist.sort(key=lambda account_id: scores[account_id], reverse=True)
        return by_quota(shortlist, self._segments.get, quotas)[:limit]

    def queue(
        self, now: datetime, top: int, max_attempts_per_day: int, within: frozenset[PortfolioKey] | None = None
    ) -> list[Pick]:
        """The next ``top`` calls in the order the campaign would place them at ``now``, placing none and changing
        nothing (callbacks waiting for their agent included, marked); the callbacks and due accounts of the
        portfolios ``within`` only (``None``: all)."""
        day_start = datetime.combine(now.astimezone(self.zone).date(), time.min, self.zone)
        size = max(top, self.config.candidates)
        rows = self.pool(now, day_start, size * 4, within)
        due = [(row.account_id, row.ref) for row in rows if row.tries_today < max_attempts_per_day]
        return self.order(due[:size], now, within)[:top]

    def _scores(
        self, session: Session, model: ReachModel, now: datetime, due: Sequence[int]
    ) -> dict[int, tuple[int, float]]:
        """Each due account's rank key (broken promise first, then expected value) at ``now``'s hour, computed once
        per hour and model (new accounts when first seen)."""
        key = (now.replace(minute=0, second=0, microsecond=0), self._learned_at)
        if key != self._scored_for:
            self._scored, self._segments, self._scored_for = {}, {}, key
        missing = [account_id for account_id in due if account_id not in self._scored]
        for chunk in _chunks(missing):
            rows = session.execute(select(Account.id, Account.ref).where(Account.id.in_(chunk))).all()
            for pick in rank(self._candidates(session, [(row.id, row.ref) for row in rows]), model, now, self.config):
                self._scored[pick.account_id] = (-pick.priority, pick.value)
                self._segments[pick.account_id] = pick.segment
        return {account_id: self._scored.get(account_id, (-Priority.VALUE, 0.0)) for account_id in due}

    def _callbacks(self, session: Session, now: datetime, within: frozenset[PortfolioKey] | None) -> list[Pick]:
        """Pending callbacks due by ``now`` and not yet tried since their time, earliest first: one for its agent
        goes to that agent once ready (one callback per agent at a time), until ``release`` after its time;
        then, or one for anyone, to any ready agent."""
        due = due_callbacks(session, site=self.site, now=now, within=within)
        ready = self.ready_agents()
        targets = self.targets_agents()
        taken = self._agents_called_back(session)
        picks: list[Pick] = []
        seen: set[int] = set()
        for callback in due:
            account_id, ref, phone, agent = callback.account_id, callback.account_ref, callback.phone, callback.agent
            if account_id in seen:
                continue
            seen.add(account_id)
            local = callback.at.astimezone(self.zone).strftime("%Y-%m-%d %H:%M")
            if callback.for_anyone(now, self.release):
                whom = "for anyone" if agent is None else f"for {agent}, released to anyone"
                picks.append(Pick(account_id, ref, Priority.CALLBACK, 0.0, f"callback {local} {whom}", phone))
                continue
            found = next((a for a in ready if agent in (a.name, a.extension) and a.extension not in taken), None)
            if found is None:
                why = f"callback {local} for {agent}: waits until the agent is ready"
                picks.append(Pick(account_id, ref, Priority.CALLBACK, 0.0, why, phone, waiting=True))
                continue
            taken.add(found.extension)
            target = found.extension if targets else None
            why = f"callback {local} for {agent}" + ("" if targets else " (the dialer cannot target it: queue)")
            picks.append(Pick(account_id, ref, Priority.CALLBACK, 0.0, why, phone, target))
        return picks

    def placed(self, pick: Pick) -> None:
        """``pick``'s call was placed: a callback's agent is offered no other callback until that call ends."""
        if pick.agent is not None:
            with self._lock:
                self._callback_calls[pick.agent] = pick.account_id

    def _agents_called_back(self, session: Session) -> set[str]:
        """The agents (dialer identities) a callback's call placed for them is still in progress for."""
        with self._lock:
            calls = dict(self._callback_calls)
        placing = set(
            session.scalars(
                select(ContactAttempt.account_id).where(
                    ContactAttempt.account_id.in_(set(calls.values())), ContactAttempt.state == "placing"
                )
            ).all()
        )
        with self._lock:
            for agent, account_id in calls.items():
                if account_id not in placing and self._callback_calls.get(agent) == account_id:
                    del self._callback_calls[agent]
        return {agent for agent, account_id in calls.items() if account_id in placing}

    def _candidates(self, session: Session, due: Sequence[tuple[int, str]]) -> list[Candidate]:
        """The due accounts with their balance, debtor's zone, callable numbers (least tried first, then the
        creditor's order) and whether a promise broke since the account was last called."""
        ids = [account_id for account_id, _ in due]
        if not ids:
            return []
        accounts = {
            row.id: row
            for row in session.execute(
                select(
                    Account.id,
                    Account.ref,
                    Account.balance,
                    Account.currency,
                    Account.debtor_id,
                    Account.due_on,
                    Account.risk_score,
                    Debtor.timezone,
                )
                .join(Debtor, Account.debtor_id == Debtor.id)
                .where(Account.id.in_(ids))
            ).all()
        }
        phones: dict[int, list[tuple[str, int]]] = {}
        for debtor_id, e164, position in session.execute(
            select(Phone.debtor_id, Phone.e164, Phone.position)
            .where(
                Phone.debtor_id.in_({row.debtor_id for row in accounts.values()}),
                Phone.invalid.is_(False),
                Phone.do_not_call.is_(False),
            )
            .order_by(Phone.position)
        ).all():
            phones.setdefault(debtor_id, []).append((e164, position))
        tries: dict[tuple[int | None, str], int] = {
            (account_id, phone): count
            for account_id, phone, count in session.execute(
                select(ContactAttempt.account_id, ContactAttempt.phone, func.count())
                .where(ContactAttempt.account_id.in_(ids))
                .group_by(ContactAttempt.account_id, ContactAttempt.phone)
            ).all()
        }
        last_call = (
            select(func.max(ContactAttempt.requested_at))
            .where(ContactAttempt.account_id == PromiseRow.account_id)
            .scalar_subquery()
        )
        broken = set(
            session.scalars(
                select(PromiseRow.account_id).where(
                    PromiseRow.account_id.in_(ids),
                    PromiseRow.state == PromiseState.BROKEN.value,
                    (last_call.is_(None)) | (PromiseRow.settled_at > last_call),
                )
            ).all()
        )
        zones: dict[str | None, tzinfo] = {None: self.zone}
        found = []
        for account_id, _ref in due:
            row = accounts.get(account_id)
            if row is None:
                continue
            if row.timezone not in zones:
                zones[row.timezone] = ZoneInfo(row.timezone)
            numbers = sorted(phones.get(row.debtor_id, []), key=lambda p: (tries.get((account_id, p[0]), 0), p[1]))
            found.append(
                Candidate(
                    account_id,
                    row.ref,
                    row.balance,
                    row.currency,
                    tuple(e164 for e164, _ in numbers),
                    zones[row.timezone],
                    broken_promise=account_id in broken,
                    due_on=row.due_on,
                    risk_score=row.risk_score,
                )
            )
        return found


@dataclass(frozen=True)
class DueAccount:
    """An account due now, with its calls today and how many were answered."""

    account_id: int
    ref: str
    tries_today: int
    answered_today: int


def due_accounts(
    session: Session,
    *,
    site: str,
    now: datetime,
    day_start: datetime,
    limit: int,
    ids: Sequence[int] | None = None,
    within: frozenset[PortfolioKey] | None = None,
) -> list[DueAccount]:
    """Active, not stopped accounts of the site due by ``now`` (of ``ids`` when given, of the portfolios
    ``within``), longest due first (never tried first), with their calls and answered calls since ``day_start``;
    at most ``limit``."""
    today = (ContactAttempt.account_id == Account.id, ContactAttempt.requested_at >= day_start)
    attempts_today = select(func.count()).where(*today).scalar_subquery()
    answered_today = select(func.count()).where(*today, ContactAttempt.outcome == "answered").scalar_subquery()
    query = _due(site, now, Account.id, Account.ref, attempts_today, answered_today, within=within)
    if ids is not None:
        query = query.where(Account.id.in_(ids))
    rows = session.execute(query.limit(limit)).all()
    return [DueAccount(account_id, ref, tries, answered) for account_id, ref, tries, answered in rows]


def _due(site: str, now: datetime, *columns: Any, within: frozenset[PortfolioKey] | None = None) -> Select[Any]:
    """``columns`` of the site's active, not stopped accounts due by ``now`` (of the portfolios ``within``, ``None``:
    all), longest due first."""
    return (
        select(*columns)
        .join(Portfolio, Account.portfolio_id == Portfolio.id)
        .join(Creditor, Portfolio.creditor_id == Creditor.id)
        .where(
            Portfolio.site == site,
            in_portfolios(within),
            Account.status == "active",
            ~exists().where(AccountStop.account_id == Account.id),  # an agent's cease contact, dispute...
            (Account.next_contact_at.is_(None)) | (Account.next_contact_at <= now),
        )
        .order_by(Account.next_contact_at.is_not(None), Account.next_contact_at, Account.id)
    )


def _chunks(ids: Sequence[int], size: int = 5000) -> Iterator[Sequence[int]]:
    """``ids`` in slices small enough for one ``IN`` list."""
    for start in range(0, len(ids), size):
        yield ids[start : start + size]
