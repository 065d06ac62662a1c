"""Calls and texts: the only path from a contact request to a plugin, through the compliance gate.

An attempt row is committed *before* the dialer sees the request, so a crash never makes core place the
same call twice; the dialer's report later completes that row. Reports arrive on vendor threads.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from functools import partial
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session, joinedload

from cartera.contact.compliance import ComplianceGate, Decision, Purpose, Subject
from cartera.contact.compliance import history as contact_history
from cartera.contact.compliance import prefs as contact_prefs
from cartera.contact.optout import opt_out_keyword
from cartera.contact.phones import InvalidPhone, normalize
from cartera.contact.sms_templates import PROMISE, RenderedSms, SmsPricing, SmsTemplates, TemplateProblem
from cartera.core.adapters import Dialer, SmsGateway
from cartera.core.audit import audit
from cartera.core.clock import Clock
from cartera.core.config import CampaignConfig
from cartera.core.errors import CarteraError, NotFound, UsageError
from cartera.core.hooks import Hooks
from cartera.core.logs import event
from cartera.core.models import (
    ActivityKind,
    CallOutcome,
    CallRequest,
    CallResult,
    Channel,
    DeliveryReport,
    DispositionCode,
    InboundSms,
    SmsMessage,
    SmsState,
    SmsSubmitResult,
    UnfinishedCall,
)
from cartera.core.store.database import Database
from cartera.core.store.schema import (
    Account,
    ActivityRow,
    ContactAttempt,
    InboundSmsRow,
    Phone,
    Portfolio,
    SmsOptOut,
    SmsRow,
)
from cartera.portfolio.export import add_activity, to_activity
from cartera.portfolio.identity import resolve_account

log = logging.getLogger("cartera.contacts")
_FINAL_SMS_STATES = frozenset({SmsState.DELIVERED.value, SmsState.FAILED.value, SmsState.EXPIRED.value})


class Denied(CarteraError):
    """The compliance gate refused the contact; the decision is audited."""

    def __init__(self, decision: Decision) -> None:
        super().__init__(decision.explain())
        self.decision = decision


@dataclass(frozen=True)
class _Target:
    phone: str
    account: Account | None  # valid in the session that found it
    account_id: int | None
    account_ref: str | None
    subject: Subject
    balance: str | None


class ContactService:
    def __init__(
        self,
        *,
        site: str,
        country: str,
        db: Database,
        gate: ComplianceGate,
        hooks: Hooks,
        clock: Clock,
        campaign: CampaignConfig,
        dialer: Callable[[], Dialer[Any]] | None,
        sms: Callable[[], SmsGateway[Any]] | None,
        templates: SmsTemplates | None = None,
    ) -> None:
        """``dialer`` and ``sms`` give the site's adapters, started on first use (``None``: not configured)."""
        self.site, self.country, self.db, self.gate = site, country, db, gate
        self.hooks, self.clock, self.campaign = hooks, clock, campaign
        self.dialer, self.sms = dialer, sms
        self.templates = templates or SmsTemplates({}, SmsPricing())
        self._lock = threading.Condition()
        self._requests: dict[int, CallRequest] = {}
        self._results: dict[int, CallResult] = {}
        self._dialled: set[int] = set()  # attempts in flight that the dialer has taken (place_call returned)
        self._cancel_asked: set[int] = set()

    # --- calls ----------------------------------------------------------------------------------

    def place_call(self, *, phone: str | None, account: int | str | None = None, actor: str) -> CallRequest:
        """Gate, record and hand one call to the dialer. Raises :class:`Denied` when the gate says no.
        ``account`` is the account's id (the campaign's), or a reference (see :mod:`cartera.portfolio.identity`)."""
        if self.dialer is None:
            raise UsageError(f"site {self.site!r} has no dialer configured")
        now = self.clock.now()
        with self.db.session() as session:
            target = self._target(session, Channel.CALL, phone, account, at=now, lock=True)
            decision = self.gate.decide(session, target.subject, now, actor)
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
                session.flush()
                attempt_id = attempt.id
        if not decision.allowed:
            raise Denied(decision)
        request = self._call_request(attempt_id, target.phone, target.account_ref, target.balance)
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
        self.dialer().place_call(request)
        with self._lock:
            if attempt_id in self._requests:  # not reported yet
                self._dialled.add(attempt_id)
        return request

    def _call_request(
        self, attempt_id: int, phone: str, account_ref: str | None, balance: str | None = None
    ) -> CallRequest:
        variables = {"CARTERA_ATTEMPT": str(attempt_id)}
        if account_ref:
            variables["CARTERA_ACCOUNT"] = account_ref
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
            attempt.state = "finished"
            attempt.outcome = result.outcome.value
            attempt.raw_cause = result.raw_cause
            attempt.started_at = result.started_at
            attempt.answered_at = result.answered_at
            attempt.ended_at = result.ended_at or now
            attempt.agent = result.agent
            attempt.vendor_call_id = result.vendor_call_id
            attempt.disposition = result.disposition.code.value if result.disposition else None
            rows = self._call_activities(session, attempt, result)
            confirmation = self._promise_text(attempt.account, result)
            if result.outcome is CallOutcome.INVALID_NUMBER and attempt.account is not None:
                for phone in attempt.account.debtor.phones:
                    phone.invalid = phone.invalid or phone.e164 == attempt.phone
            if attempt.account is not None and attempt.account.status == "active":  # a closed account stays so
                wanted = self._next_contact(result, now)
                attempt.account.next_contact_at = self._schedule(session, attempt.account, wanted)
            account_ref = attempt.account.ref if attempt.account else None
            account_id = attempt.account_id
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
        self.hooks.call_finished(self.site, request, result)
        for activity in activities:
            self.hooks.activity_recorded(self.site, activity)
        if confirmation is not None:
            self._confirm_promise(request, confirmation, account_id)
        with self._lock:
            self._results[result.attempt_id] = result
            self._requests.pop(result.attempt_id, None)
            self._dialled.discard(result.attempt_id)
            self._cancel_asked.discard(result.attempt_id)
            self._lock.notify_all()

    def _call_activities(self, session: Session, attempt: ContactAttempt, result: CallResult) -> list[ActivityRow]:
        if attempt.account is None:
            return []
        record = partial(
            add_activity,
            session,
            site=self.site,
            at=result.ended_at or result.started_at,
            account=attempt.account,
            phone=attempt.phone,
            agent=result.agent,
        )
        promise = result.disposition
        rows = [record(kind=ActivityKind.CALL_ATTEMPT, outcome=promise.code.value if promise else result.outcome.value)]
        if promise and promise.code is DispositionCode.PROMISE_TO_PAY and promise.promised_amount is not None:
            rows.append(
                record(kind=ActivityKind.PROMISE_TO_PAY, amount=promise.promised_amount, due_date=promise.promised_date)
            )
        return rows

    def _next_contact(self, result: CallResult, now: datetime) -> datetime:
        """When the campaign would like to try again; :meth:`_schedule` moves it to when the law allows."""
        if result.outcome is CallOutcome.ANSWERED:
            return now + timedelta(days=1)
        return now + timedelta(minutes=self.campaign.retry_after_minutes)

    def _promise_text(self, account: Account | None, result: CallResult) -> str | None:
        """The confirmation of the promise to pay the call ended with, from the portfolio's ``promise`` template;
        ``None`` when there is none to text (no promise, confirmations off, no gateway, a template problem)."""
        promise = result.disposition
        if not (
            self.campaign.promise_sms
            and self.sms is not None
            and account is not None
            and promise is not None
            and promise.code is DispositionCode.PROMISE_TO_PAY
            and promise.promised_amount is not None
            and promise.promised_date is not None
        ):
            return None
        fields = {"promised_amount": promise.promised_amount, "promised_date": promise.promised_date}
        try:
            rendered = self.templates.render(PROMISE, account, **fields)
        except TemplateProblem as problem:
            event(log, "sms.promise_not_sent", logging.WARNING, account=account.ref, reason=str(problem))
            return None
        assert rendered is not None  # built in
        return rendered.text

    def _confirm_promise(self, request: CallRequest, text: str, account_id: int | None) -> None:
        try:
            self.send_sms(
                phone=request.phone,
                text=text,
                account=account_id,
                actor="campaign",
                purpose=Purpose.PROMISE_CONFIRMATION,
            )
        except Denied as denied:
            event(log, "sms.denied", account=request.account_ref, reason=str(denied))

    def _request_for(self, attempt: ContactAttempt, account_ref: str | None) -> CallRequest:
        with self._lock:
            known = self._requests.get(attempt.id)
        return known or CallRequest(attempt.id, self.site, attempt.phone, account_ref)

    # --- sms ------------------------------------------------------------------------------------

    def send_sms(
        self,
        *,
        phone: str | None,
        text: str,
        account: int | str | None = None,
        actor: str,
        purpose: Purpose = Purpose.COLLECTION,
    ) -> SmsSubmitResult:
        """Gate, record and submit one text. Raises :class:`Denied` when the gate says no. ``account`` is the
        account's id, or a reference."""
        if self.sms is None:
            raise UsageError(f"site {self.site!r} has no sms gateway configured")
        if not text.strip():
            raise UsageError("the message text is empty")
        now = self.clock.now()
        with self.db.session() as session:
            target = self._target(session, Channel.SMS, phone, account, at=now, text=text, purpose=purpose, lock=True)
            decision = self.gate.decide(session, target.subject, now, actor)
            if decision.allowed:
                row = SmsRow(
                    site=self.site,
                    account_id=target.account_id,
                    phone=target.phone,
                    text=text,
                    state=SmsState.QUEUED.value,
                    created_at=now,
                    updated_at=now,
                )
                session.add(row)
                session.flush()
                message_id = row.id
        if not decision.allowed:
            raise Denied(decision)
        message = SmsMessage(message_id, self.site, target.phone, text, target.account_ref)
        try:
            result = self.sms().send(message)
        except Exception as exc:
            result = SmsSubmitResult(message_id, SmsState.FAILED, None, f"gateway error: {exc}")
        activities: list[ActivityRow] = []
        with self.db.session() as session:
            row = session.get_one(SmsRow, message_id)
            if row.state == SmsState.QUEUED.value:  # a delivery report may already have moved it on
                row.state = result.state.value
            row.gateway_id, row.detail, row.updated_at = result.gateway_id, result.detail, self.clock.now()
            if target.account_id is not None:
                activities.append(
                    add_activity(
                        session,
                        site=self.site,
                        kind=ActivityKind.SMS,
                        at=now,
                        account=session.get_one(Account, target.account_id),
                        phone=target.phone,
                        outcome=result.state.value,
                    )
                )
            session.flush()
            done = [to_activity(a) for a in activities]
        event(log, "sms.submitted", message=message_id, state=result.state.value, gateway_id=result.gateway_id)
        for activity in done:
            self.hooks.activity_recorded(self.site, activity)
        return result

    def on_delivery(self, report: DeliveryReport) -> None:
        with self.db.session() as session:
            row = None
            if report.message_id is not None:
                row = session.get(SmsRow, report.message_id)
            if row is None and report.gateway_id:
                row = session.scalar(
                    select(SmsRow).where(SmsRow.site == self.site, SmsRow.gateway_id == report.gateway_id)
                )
            if row is None or row.site != self.site:
                event(log, "sms.unknown_delivery", logging.WARNING, gateway_id=report.gateway_id)
                return
            if row.state in _FINAL_SMS_STATES and report.state.value not in _FINAL_SMS_STATES:
                # Receipts overtake each other (Kannel's "delivered" can precede its "accepted by the SMSC").
                event(log, "sms.late_delivery", message=row.id, state=report.state.value, kept=row.state)
                return
            row.state, row.updated_at = report.state.value, report.at
            row.gateway_id = row.gateway_id or report.gateway_id
            message_id = row.id
        event(log, "sms.delivery", message=message_id, state=report.state.value, raw=report.raw_status)
        self.hooks.sms_delivery(self.site, message_id, report)

    def on_inbound(self, message: InboundSms) -> None:
        """A debtor's message (MO) reached the site: stored and audited with its sender and text. An opt-out
        keyword (:mod:`cartera.contact.optout`) stops texts to that number at once, audited as ``sms.opt_out``; a
        message the gateway delivers twice (same gateway id) is handled once."""
        try:
            phone = normalize(message.phone, self.country)
        except InvalidPhone:
            phone = message.phone.strip()
        keyword = opt_out_keyword(message.text)
        with self.db.session() as session:
            if message.gateway_id is not None and session.scalar(
                select(InboundSmsRow.id).where(
                    InboundSmsRow.site == self.site, InboundSmsRow.gateway_id == message.gateway_id
                )
            ):
                event(log, "sms.inbound_duplicate", gateway_id=message.gateway_id)
                return
            row = InboundSmsRow(
                site=self.site,
                phone=phone[:32],
                text=message.text,
                received_at=message.received_at,
                gateway_id=message.gateway_id,
                opt_out=keyword,
            )
            session.add(row)
            session.flush()
            audit(
                session,
                at=message.received_at,
                site=self.site,
                actor=f"phone:{message.phone}",
                action="sms.inbound",
                subject=phone,
                text=message.text,
                gateway_id=message.gateway_id,
            )
            if keyword is not None:
                self._opt_out(session, phone, keyword, row, message)
        event(log, "sms.inbound", phone=phone, opt_out=keyword)

    def _opt_out(self, session: Session, phone: str, keyword: str, row: InboundSmsRow, message: InboundSms) -> None:
        """Flag every debtor's copy of the number and keep the number on the site's opt-out list."""
        flagged = 0
        for match in session.scalars(select(Phone).where(Phone.e164 == phone)):
            flagged += not match.do_not_text
            match.do_not_text = True
        if session.get(SmsOptOut, phone) is None:
            session.add(
                SmsOptOut(e164=phone, site=self.site, at=message.received_at, keyword=keyword, inbound_id=row.id)
            )
        audit(
            session,
            at=message.received_at,
            site=self.site,
            actor=f"phone:{message.phone}",
            action="sms.opt_out",
            subject=phone,
            keyword=keyword,
            inbound_id=row.id,
            phones_flagged=flagged,
        )

    def render_sms(self, template: str, account: int | str) -> RenderedSms | None:
        """Template ``template`` of the account's portfolio filled for it (``None``: no such template); the
        account is an id or a reference (see :mod:`cartera.portfolio.identity`)."""
        with self.db.session() as session:
            return self.templates.render(template, self._account(session, account, lock=False))

    def preview_sms(self, *, account_id: int, text: str, at: datetime) -> tuple[Decision, str]:
        """What the gate would decide for texting the account's number at ``at`` (not audited, sends nothing),
        and the number it would pick."""
        with self.db.session() as session:
            target = self._target(session, Channel.SMS, None, account_id, at=at, text=text)
            return self.gate.evaluate(target.subject, at), target.phone

    # --- shared ---------------------------------------------------------------------------------

    def explain(
        self, *, phone: str | None, account: int | str | None, channel: Channel, at: datetime, actor: str
    ) -> tuple[Decision, Subject]:
        """What the gate would decide for this contact at ``at``, contacting no one; audited. ``account``: an id
        or a reference."""
        with self.db.session() as session:
            target = self._target(session, channel, phone, account, at=at, as_of=True)
            decision = self.gate.explain(session, target.subject, at, actor)
        return decision, target.subject

    def _target(
        self,
        session: Session,
        channel: Channel,
        phone: str | None,
        wanted: int | str | None,
        *,
        at: datetime,
        text: str | None = None,
        purpose: Purpose = Purpose.COLLECTION,
        lock: bool = False,
        as_of: bool = False,
    ) -> _Target:
        """The contact asked for (``wanted``: the account's id or reference), as the gate sees it. ``lock``
        holds the account's row until the transaction ends (PostgreSQL), so two nodes cannot both pass a
        frequency cap with the same history."""
        account = None if wanted is None else self._account(session, wanted, lock=lock)
        if phone is not None:
            try:
                e164 = normalize(phone, account.portfolio.country if account else self.country)
            except InvalidPhone as exc:
                raise UsageError(str(exc)) from None
        elif account is None:
            raise UsageError("give a phone number or an account")
        if phone is not None or account is None:
            subject = self._subject(session, channel, e164, account, at=at, text=text, purpose=purpose, as_of=as_of)
        else:
            e164, subject = self._pick_phone(session, account, channel, at=at, text=text, purpose=purpose, as_of=as_of)
        return _Target(
            phone=e164,
            account=account,
            account_id=account.id if account else None,
            account_ref=account.ref if account else None,
            subject=subject,
            balance=str(account.balance) if account else None,
        )

    def _account(self, session: Session, wanted: int | str, *, lock: bool) -> Account:
        """This site's account ``wanted``: an id, or a reference
        :func:`cartera.portfolio.identity.resolve_account` takes."""
        account_id = wanted if isinstance(wanted, int) else resolve_account(session, self.site, wanted)
        query = (
            select(Account)
            .join(Portfolio)
            .where(Portfolio.site == self.site, Account.id == account_id)
            .options(
                joinedload(Account.portfolio, innerjoin=True).joinedload(Portfolio.creditor, innerjoin=True),
                joinedload(Account.debtor, innerjoin=True),
            )
        )
        account = session.scalar(query.with_for_update(of=Account) if lock else query)
        if account is None:
            raise NotFound(f"no account {wanted!r} at site {self.site!r}")
        return account

    def _subject(
        self,
        session: Session,
        channel: Channel,
        e164: str,
        account: Account | None,
        *,
        at: datetime,
        text: str | None = None,
        purpose: Purpose = Purpose.COLLECTION,
        as_of: bool = False,
    ) -> Subject:
        """Everything the rules look at, with the stored history of the account and the number (as it was at
        ``at`` when ``as_of``, for explaining a past instant)."""
        flags = session.execute(select(Phone.do_not_call, Phone.do_not_text).where(Phone.e164 == e164)).all()
        opted_out: set[Channel] = set()
        if any(call for call, _ in flags):
            opted_out.add(Channel.CALL)
        if any(sms for _, sms in flags) or session.get(SmsOptOut, e164) is not None:
            opted_out.add(Channel.SMS)
        portfolio = account.portfolio if account else None
        requested, lines = contact_prefs.load(
            session,
            account_id=account.id if account else None,
            debtor_id=account.debtor_id if account else None,
            phone=e164,
        )
        subject = Subject(
            channel=channel,
            phone=e164,
            account_ref=account.ref if account else None,
            account_status=account.status if account else None,
            portfolio=f"{portfolio.creditor.code}/{portfolio.code}" if portfolio else None,
            country=portfolio.country if portfolio else None,
            opted_out=frozenset(opted_out),
            timezone=account.debtor.timezone if account else None,
            region=account.debtor.region if account else None,
            text=text,
            purpose=purpose,
            requested_hours=requested,
            line_types=lines,
        )
        policy = self.gate.policy_for(subject)
        if policy is None:
            return subject
        found = contact_history.load(
            session, account_id=account.id if account else None, phone=e164, at=at, horizon=policy.horizon, as_of=as_of
        )
        return replace(subject, history=found)

    def _schedule(self, session: Session, account: Account, wanted: datetime) -> datetime:
        """``wanted``, or the first instant after it the gate will allow a call: the campaign picks the account
        when the law lets it, instead of asking and being refused."""
        try:
            _phone, subject = self._pick_phone(session, account, Channel.CALL, at=wanted)
        except UsageError:
            return wanted
        preview = self.gate.evaluate(subject, wanted)
        if preview.allowed or preview.next_allowed_at is None:
            return wanted
        return preview.next_allowed_at

    def _pick_phone(
        self, session: Session, account: Account, channel: Channel, *, at: datetime, **subject: Any
    ) -> tuple[str, Subject]:
        """The account's first valid phone the gate allows now, trying those tried least often first (then in
        the creditor's order) and skipping do-not-contact; when none is allowed, the first of them, so the gate
        denies with its reasons (a per-number cap on one line must not hold back the debtor's other line)."""
        valid = [phone for phone in account.debtor.phones if not phone.invalid]
        if not valid:
            raise UsageError(f"account {account.ref!r} has no valid phone number left")
        allowed = [
            phone for phone in valid if not (phone.do_not_call if channel is Channel.CALL else phone.do_not_text)
        ]
        candidates = allowed or valid  # all blocked: the gate then denies with do_not_contact, audited
        tries: dict[str, int] = dict(
            session.execute(
                select(ContactAttempt.phone, func.count())
                .where(ContactAttempt.account_id == account.id)
                .group_by(ContactAttempt.phone)
            ).all()
        )
        ordered = sorted(candidates, key=lambda phone: (tries.get(phone.e164, 0), phone.position))
        first: tuple[str, Subject] | None = None
        for phone in ordered:
            picked = phone.e164, self._subject(session, channel, phone.e164, account, at=at, **subject)
            if self.gate.evaluate(picked[1], at).allowed:
                return picked
            first = first or picked
        assert first is not None
        return first

    def _defer(self, account: Account | None, decision: Decision, now: datetime) -> None:
        if account is not None:
            account.next_contact_at = decision.next_allowed_at or now + timedelta(days=1)
