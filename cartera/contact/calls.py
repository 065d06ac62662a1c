"""Calls: the only path from a call request to the dialer, through the compliance gate, and the dialer's reports.

An attempt row is committed *before* the dialer sees the request, so a crash never makes core place the
same call twice; the dialer's report later completes that row. Reports arrive on vendor threads.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from cartera.contact.compliance import Decision
from cartera.contact.pace import Pace
from cartera.contact.targets import Denied, Targets
from cartera.core.adapters import Dialer
from cartera.core.audit import audit
from cartera.core.clock import Clock
from cartera.core.config import CampaignConfig
from cartera.core.errors import DialerUnavailable, UnknownAgent, UsageError
from cartera.core.hooks import Hooks
from cartera.core.logs import event
from cartera.core.models import (
    AGENT_MAX,
    ActivityKind,
    AgentConnected,
    CallOutcome,
    CallRequest,
    CallResult,
    Channel,
    UnfinishedCall,
    storable_agent,
)
from cartera.core.store.database import Database
from cartera.core.store.schema import Account, ActivityRow, CallbackRow, ContactAttempt, DispositionRow
from cartera.portfolio.export import add_activity, to_activity
from cartera.workspace.service import WorkspaceService

log = logging.getLogger("cartera.contacts")


class CallService:
    """One site's calls: placed through the gate, completed from the dialer's reports, cancelled when their
    account closes; a disposition a dialer reports with the end goes to the workspace
    (:class:`cartera.workspace.service.WorkspaceService`), like an agent's."""

    def __init__(
        self,
        *,
        targets: Targets,
        db: Database,
        hooks: Hooks,
        clock: Clock,
        campaign: CampaignConfig,
        dialer: Callable[[], Dialer[Any]] | None,
        workspace: WorkspaceService,
        pace: Pace,
    ) -> None:
        """``dialer`` gives the site's dialer, started on first use (``None``: not configured); ``pace`` hears of
        every call handed to it, connected to an agent and ended."""
        self.targets, self.site, self.db = targets, targets.site, db
        self.hooks, self.clock, self.campaign = hooks, clock, campaign
        self.dialer, self.workspace, self.pace = dialer, workspace, pace
        self._lock = threading.Condition()
        self._requests: dict[int, CallRequest] = {}
        self._results: dict[int, CallResult] = {}
        self._dialled: set[int] = set()  # attempts in flight that the dialer has taken (place_call returned)
        self._cancel_asked: set[int] = set()

    def place_call(
        self, *, phone: str | None, account: int | str | None = None, actor: str, agent: str | None = None
    ) -> CallRequest:
        """Gate, record and hand one call to the dialer. Raises :class:`Denied` when the gate says no, and
        :class:`DialerUnavailable`, recording nothing, for an agent's call the dialer cannot take now.
        ``account`` is the account's id (the campaign's), or a reference (see :mod:`cartera.portfolio.identity`);
        ``agent``: the agent (its identity at the dialer) the answered call must reach, not any ready agent."""
        if self.dialer is None:
            raise UsageError(f"site {self.site!r} has no dialer configured")
        dialer = self.dialer()
        if agent is not None:
            if not dialer.capabilities.targets_agents:
                raise UsageError(f"site {self.site!r}: the dialer cannot connect a call to a given agent ({agent})")
            # an agent's own call is not paced by the dialer's capacity, which keeps the campaign's calls from a
            # dialer down: asked first, so no attempt is recorded (nor counted by the law) for a call never placed
            checked = dialer.check()
            if not checked.ok:
                raise DialerUnavailable(f"the dialer cannot place {agent}'s call now: {checked.detail}")
            _refuse_unknown_agent(dialer, agent)
        now = self.clock.now()
        with self.db.session() as session:
            target = self.targets.find(session, Channel.CALL, phone, account, at=now, lock=True)
            decision = self.targets.gate.decide(session, target.subject, now, actor)
            if not decision.allowed:
                self._defer(target.account, decision, now)
            else:
                attempt = ContactAttempt(
                    site=self.site,
                    account_id=target.account_id,
                    phone=target.phone,
                    state="placing",
                    requested_at=now,
                )
                session.add(attempt)
                if target.account is not None:
                    # Not picked again by the campaign while in flight; the result reschedules it.
                    target.account.next_contact_at = now + timedelta(days=1)
                self.db.fence(session)  # a node whose site was taken over originates nothing
                session.flush()
                attempt_id, due_on = attempt.id, target.account.due_on if target.account is not None else None
        if not decision.allowed:
            raise Denied(decision)
        request = replace(
            self._call_request(attempt_id, target.phone, target.account_ref, target.balance, target.subject.portfolio),
            agent=agent,
        )
        with self._lock:
            self._requests[attempt_id] = request
        event(
            log,
            "call.placing",
            attempt=attempt_id,
            account=target.account_ref,
            phone=target.phone,
            actor=actor,
        )
        self.pace.dialled(attempt_id, now, due_on)
        try:
            dialer.place_call(request)
        except BaseException:
            self.pace.dropped(attempt_id)
            raise
        with self._lock:
            if attempt_id in self._requests:  # not reported yet
                self._dialled.add(attempt_id)
        return request

    def _call_request(
        self,
        attempt_id: int,
        phone: str,
        account_ref: str | None,
        balance: str | None = None,
        portfolio: str | None = None,
    ) -> CallRequest:
        """``portfolio``: ``CREDITOR/PORTFOLIO``, whose identification message an abandoned call hears."""
        variables = {"CARTERA_ATTEMPT": str(attempt_id)}
        if account_ref:
            variables["CARTERA_ACCOUNT"] = account_ref
        if portfolio:
            variables["CARTERA_PORTFOLIO"] = portfolio
        if balance:
            variables["balance"] = balance
        return CallRequest(attempt_id, self.site, phone, account_ref, variables=variables)

    def reconcile_calls(self) -> list[int]:
        """Hand the dialer the site's calls a previous run left ``placing`` (it was killed with calls in flight)
        for it to report how each ended (:meth:`cartera.core.adapters.Dialer.reconcile`); each is audited as
        ``call.reconcile``. Only this site's attempts, none this process placed; returns their ids."""
        if self.dialer is None:
            return []
        with self._lock:
            ours = set(self._requests)
        now = self.clock.now()
        calls: list[UnfinishedCall] = []
        with self.db.session() as session:
            rows = session.execute(
                select(ContactAttempt.id, ContactAttempt.phone, ContactAttempt.requested_at, Account.ref)
                .outerjoin(Account, ContactAttempt.account_id == Account.id)
                .where(ContactAttempt.site == self.site, ContactAttempt.state == "placing")
                .order_by(ContactAttempt.id)
            ).all()
            for row in rows:
                if row.id in ours:
                    continue
                calls.append(UnfinishedCall(self._call_request(row.id, row.phone, row.ref), row.requested_at))
                audit(
                    session,
                    at=now,
                    site=self.site,
                    actor="node",
                    action="call.reconcile",
                    subject=f"{Channel.CALL}:{row.phone}",
                    account=row.ref,
                    attempt=row.id,
                )
        attempts = [call.request.attempt_id for call in calls]
        if calls:
            event(log, "call.reconciling", logging.WARNING, attempts=attempts)
            self.dialer().reconcile(calls)
        return attempts

    def cancel_closed_calls(self, actor: str) -> int:
        """Ask the dialer to cancel each call in flight whose account is no longer active (withdrawn or paid,
        perhaps by an import in another process: the store says so). Each call is asked about once, audited as
        ``call.cancel``; returns how many the dialer will end as cancelled. Only the calls this process handed
        to its dialer are looked up (by primary key): no other dialer instance could cancel the others."""
        with self._lock:
            in_flight = sorted(self._dialled - self._cancel_asked)
        if not in_flight or self.dialer is None:
            return 0
        with self.db.session() as session:
            closed = session.execute(
                select(ContactAttempt.id, ContactAttempt.phone, Account.ref, Account.status)
                .join(Account, ContactAttempt.account_id == Account.id)
                .where(
                    ContactAttempt.id.in_(in_flight),
                    ContactAttempt.site == self.site,
                    ContactAttempt.state == "placing",
                    Account.status != "active",
                )
            ).all()
        with self._lock:
            closed = [row for row in closed if row.id in self._dialled and row.id not in self._cancel_asked]
            self._cancel_asked.update(row.id for row in closed)
        cancelled = 0
        for row in closed:
            try:
                accepted = self.dialer().cancel(row.id)
            except Exception:
                log.exception("attempt %s: the dialer's cancel failed", row.id)
                accepted = False
            cancelled += accepted
            with self.db.session() as session:
                audit(
                    session,
                    at=self.clock.now(),
                    site=self.site,
                    actor=actor,
                    action="call.cancel",
                    subject=f"{Channel.CALL}:{row.phone}",
                    account=row.ref,
                    account_status=row.status,
                    attempt=row.id,
                    cancelled=accepted,
                )
            event(log, "call.cancel", attempt=row.id, account=row.ref, status=row.status, cancelled=accepted)
        return cancelled

    def wait_for_call(self, attempt_id: int, timeout: float) -> CallResult | None:
        with self._lock:
            self._lock.wait_for(lambda: attempt_id in self._results, timeout)
            return self._results.get(attempt_id)

    def on_agent_connected(self, connected: AgentConnected) -> bool:
        """A dialer's report that an answered call reached an agent: the attempt is that agent's from now on (a
        disposition is checked against it). ``False`` for an attempt this site never placed."""
        with self.db.session() as session:
            attempt = session.get(ContactAttempt, connected.attempt_id)
            if attempt is None or attempt.site != self.site:
                event(log, "call.unknown_attempt", logging.WARNING, attempt=connected.attempt_id, agent=connected.agent)
                return False
            agent = _stored_agent(connected.attempt_id, connected.agent)
            attempt.agent, attempt.connected_at = agent, connected.at
        event(log, "call.agent_connected", attempt=connected.attempt_id, agent=agent)
        self.pace.connected(connected)
        return True

    def on_call_result(self, result: CallResult) -> None:
        """A dialer's report: complete the attempt, record activities, reschedule the account."""
        now = self.clock.now()
        with self.db.session() as session:
            attempt = session.get(ContactAttempt, result.attempt_id)
            if attempt is None or attempt.site != self.site:
                event(log, "call.unknown_attempt", logging.WARNING, attempt=result.attempt_id)
                return
            if attempt.state == "finished":
                event(log, "call.duplicate_report", logging.WARNING, attempt=result.attempt_id)
                return
            if result.agent is not None:
                result = replace(result, agent=_stored_agent(result.attempt_id, result.agent))
            attempt.state = "finished"
            attempt.outcome = result.outcome.value
            attempt.raw_cause = result.raw_cause
            attempt.started_at = result.started_at
            attempt.answered_at = result.answered_at
            attempt.ended_at = result.ended_at or now
            attempt.agent = result.agent or attempt.agent  # the agent it was connected to, when the end names none
            if result.disposition is not None and self.workspace.agents_call(session, attempt, result.disposition):
                result = replace(result, disposition=None)  # the agent's to record, not the dialer's
            attempt.vendor_call_id = result.vendor_call_id
            rows = self._call_activities(session, attempt, result)
            if result.outcome is CallOutcome.INVALID_NUMBER and attempt.account is not None:
                for phone in attempt.account.debtor.phones:
                    phone.invalid = phone.invalid or phone.e164 == attempt.phone
            if attempt.account is not None and attempt.account.status == "active":  # a closed account stays so
                wanted = self._next_contact(result, now)
                attempt.account.next_contact_at = self._callback_at(session, attempt) or self._schedule(
                    session, attempt.account, wanted
                )
            account_ref = attempt.account.ref if attempt.account else None
            session.flush()
            activities = [to_activity(row) for row in rows]
            request = self._request_for(attempt, account_ref)
        event(
            log,
            "call.finished",
            attempt=result.attempt_id,
            outcome=result.outcome.value,
            cause=result.raw_cause,
            agent=result.agent,
            talk_s=round(result.talk_seconds),
        )
        self.pace.finished(result)
        self.hooks.call_finished(self.site, request, result)
        for activity in activities:
            self.hooks.activity_recorded(self.site, activity)
        if result.disposition is not None:
            self.workspace.dialer_disposition(result)
        with self._lock:
            self._results[result.attempt_id] = result
            self._requests.pop(result.attempt_id, None)
            self._dialled.discard(result.attempt_id)
            self._cancel_asked.discard(result.attempt_id)
            self._lock.notify_all()

    def _call_activities(self, session: Session, attempt: ContactAttempt, result: CallResult) -> list[ActivityRow]:
        """The call's activity for the creditor, its outcome the disposition's code when there is one; none yet for
        an answered call an agent took and has not dispositioned: the disposition records it (with its code)."""
        if attempt.account is None:
            return []
        code = attempt.disposition or (result.disposition.code.value if result.disposition else None)
        if code is None and attempt.connected_at is not None and result.outcome is CallOutcome.ANSWERED:
            return []
        row = add_activity(
            session,
            site=self.site,
            kind=ActivityKind.CALL_ATTEMPT,
            at=result.ended_at or result.started_at,
            account=attempt.account,
            phone=attempt.phone,
            outcome=code or result.outcome.value,
            agent=attempt.agent,
            attempt_id=attempt.id,
        )
        return [row]

    def _next_contact(self, result: CallResult, now: datetime) -> datetime:
        """When the campaign would like to try again; :meth:`_schedule` moves it to when the law allows."""
        if result.outcome is CallOutcome.ANSWERED:
            return now + timedelta(days=1)
        return now + timedelta(minutes=self.campaign.retry_after_minutes)

    def _callback_at(self, session: Session, attempt: ContactAttempt) -> datetime | None:
        """When the campaign should call again for the callback the agent set during this call, if any (the
        workspace scheduled it when the disposition was saved; the call's end must not move it)."""
        return session.scalar(
            select(Account.next_contact_at)
            .join(CallbackRow, CallbackRow.account_id == Account.id)
            .join(DispositionRow, CallbackRow.disposition_id == DispositionRow.id)
            .where(DispositionRow.attempt_id == attempt.id, Account.id == attempt.account_id)
        )

    def _request_for(self, attempt: ContactAttempt, account_ref: str | None) -> CallRequest:
        with self._lock:
            known = self._requests.get(attempt.id)
        return known or CallRequest(attempt.id, self.site, attempt.phone, account_ref)

    def _schedule(self, session: Session, account: Account, wanted: datetime) -> datetime:
        """``wanted``, or the first instant after it the gate will allow a call: the campaign picks the account
        when the law lets it, instead of asking and being refused."""
        try:
            _phone, subject = self.targets.pick_phone(session, account, Channel.CALL, at=wanted)
        except UsageError:
            return wanted
        preview = self.targets.gate.evaluate(subject, wanted)
        if preview.allowed or preview.next_allowed_at is None:
            return wanted
        return preview.next_allowed_at

    def _defer(self, account: Account | None, decision: Decision, now: datetime) -> None:
        if account is not None:
            account.next_contact_at = decision.next_allowed_at or now + timedelta(days=1)


def _stored_agent(attempt_id: int, agent: str | None) -> str | None:
    """``agent`` as the store can keep it (:func:`~cartera.core.models.storable_agent`), logged when dropped."""
    stored = storable_agent(agent)
    if agent is not None and stored is None:
        event(
            log, "call.agent_too_long", logging.WARNING, attempt=attempt_id, length=len(agent), agent=agent[:AGENT_MAX]
        )
    return stored


def _refuse_unknown_agent(dialer: Dialer[Any], agent: str) -> None:
    """Raise :class:`UnknownAgent`, recording nothing, for an agent a dialer that tells its agents
    (``reports_seats``) does not serve: the call could never reach it, nor count for the law."""
    if dialer.capabilities.reports_seats and agent not in {seat.agent for seat in dialer.seats()}:
        raise UnknownAgent(f"the dialer serves no agent {agent!r}: its call is not placed")
