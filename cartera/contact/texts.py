"""Texts: sending one through the compliance gate, the gateway's delivery receipts, and debtors' messages
(an opt-out keyword stops texts to that number at once)."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import replace
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from cartera.contact.compliance import Decision, Purpose
from cartera.contact.optout import opt_out_keyword
from cartera.contact.phones import InvalidPhone, normalize
from cartera.contact.sms_templates import PROMISE, RenderedSms, SmsTemplates, TemplateProblem
from cartera.contact.targets import Denied, Targets
from cartera.core.adapters import IN_DOUBT, KILLED_WHILE_SENDING, SmsGateway
from cartera.core.audit import audit
from cartera.core.clock import Clock
from cartera.core.errors import UsageError
from cartera.core.hooks import Hooks
from cartera.core.logs import event
from cartera.core.models import (
    Activity,
    ActivityKind,
    Channel,
    DeliveryReport,
    Disposition,
    InboundSms,
    SmsMessage,
    SmsState,
    SmsSubmitResult,
)
from cartera.core.store.database import Database
from cartera.core.store.schema import Account, ActivityRow, AuditEntry, InboundSmsRow, Phone, SmsOptOut, SmsRow
from cartera.core.store.text_senders import SendingText, no_text_in_flight, sending_texts
from cartera.portfolio.export import add_activity, to_activity

log = logging.getLogger("cartera.contacts")
#: The largest id the store holds (a signed 64-bit integer): a report naming a larger one is unknown.
MAX_ROW_ID = 2**63 - 1
#: The longest gateway id the store keeps (``sms_messages.gateway_id``: String(128)).
GATEWAY_ID_MAX = 128
#: The longest inbound sender the store keeps (``sms_inbound.phone``).
MAX_SENDER = 32
#: The longest gateway id of an inbound message the store keeps (``sms_inbound.gateway_id``).
MAX_GATEWAY_ID = 128
#: Why a sender's opt-out keyword stops nothing (round 21 C-F11: it was logged ``opt_out=BAJA`` all the same).
_NO_NUMBER = "the sender is no phone number"
_FINAL_SMS_STATES = frozenset({SmsState.DELIVERED.value, SmsState.FAILED.value, SmsState.EXPIRED.value})


def _given_up(detail: str | None) -> bool:
    """Whether a text's detail (a gateway's answer, or a row's stored one) says it was given up not knowing whether it
    went: in doubt (IN_DOUBT; told by the detail alone, never by a missing gateway id: a multi-part SMPP text in doubt
    on part 2 or later has part 1's SMSC id, round 25 C-F1), or settled unknown after its sender was killed
    (KILLED_WHILE_SENDING). The first report for such a text tells what became of it."""
    return detail == KILLED_WHILE_SENDING or (detail or "").startswith(IN_DOUBT)


def _answered_late(detail: str, state: str) -> str:
    """The detail of a text given up in doubt once a report told what became of it (``state``): it keeps the sender's
    answer but no longer starts with IN_DOUBT, so the text is no longer in doubt: later reports are applied as any
    text's (a stale SUBMITTED never moves a final state back, round 26 C-F2)."""
    return f"reported {state} after its send was given up {detail}"


class TextService:
    """One site's texts; :attr:`templates` are its SMS templates."""

    def __init__(
        self,
        *,
        targets: Targets,
        db: Database,
        hooks: Hooks,
        clock: Clock,
        sms: Callable[[], SmsGateway[Any]] | None,
        templates: SmsTemplates,
    ) -> None:
        """``sms`` gives the site's gateway, started on first use (``None``: not configured)."""
        self.targets, self.site, self.db = targets, targets.site, db
        self.hooks, self.clock, self.sms, self.templates = hooks, clock, sms, templates

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
        with sending_texts(self.db, self.site) as sending:  # until its answer is stored: a killed sender's is settled
            return self._send_sms(phone=phone, text=text, account=account, actor=actor, purpose=purpose, lock=sending)

    def _send_sms(
        self,
        *,
        phone: str | None,
        text: str,
        account: int | str | None,
        actor: str,
        purpose: Purpose,
        lock: SendingText,
    ) -> SmsSubmitResult:
        assert self.sms is not None
        now = self.clock.now()
        with self.db.session() as session:
            target = self.targets.find(
                session, Channel.SMS, phone, account, at=now, text=text, purpose=purpose, lock=True
            )
            decision = self.targets.gate.decide(session, target.subject, now, actor)
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
                self.db.fence(session)  # a node whose site was taken over sends nothing
                session.flush()
                message_id = row.id
        if not decision.allowed:
            raise Denied(decision)
        message = SmsMessage(message_id, self.site, target.phone, text, target.account_ref)
        if lock.lock_retaken():  # its lock was lost a moment: a settler may have taken the text for a killed sender's
            with self.db.session() as session:
                row = session.get_one(SmsRow, message_id)
                if row.state != SmsState.QUEUED.value or row.gateway_id is not None:
                    event(log, "sms.not_sent", logging.WARNING, message=message_id, reason="settled meanwhile")
                    return SmsSubmitResult(message_id, SmsState(row.state), row.gateway_id, row.detail or "")
        try:
            result = self.sms().send(message)
        except Exception as exc:
            result = SmsSubmitResult(message_id, SmsState.FAILED, None, f"gateway error: {exc}")
        if result.gateway_id is not None and len(result.gateway_id) > GATEWAY_ID_MAX:
            # the text was taken: its state and activity are stored, without an id the store cannot keep (round 17 M4)
            event(log, "sms.gateway_id_too_long", logging.WARNING, message=message_id, length=len(result.gateway_id),
                  gateway_id=result.gateway_id[:GATEWAY_ID_MAX])  # fmt: skip
            result = replace(result, gateway_id=None)
        with self.db.session() as session:
            # FOR UPDATE: a report committed after an unlocked read was overwritten on PostgreSQL (round 27 C-F2)
            row = session.get_one(SmsRow, message_id, with_for_update=True)
            settled = self._settled_as_killed(session, row)
            # A report may have moved it on before this answer: its state and gateway id are kept. One for a text this
            # answer gives up in doubt (the vendor's late acceptance, then its receipts) tells what became of it, as
            # on_delivery makes it when the report comes after: the activity is made from it, and the sender says it.
            reported = settled is None and row.state != SmsState.QUEUED.value
            if row.state in (SmsState.QUEUED.value, settled):
                row.state = result.state.value
            # detail, "" at least, marks the sender's answer stored (a receipt may move the state on before it)
            row.gateway_id = result.gateway_id or row.gateway_id
            row.detail, row.updated_at = result.detail or "", self.clock.now()
            if reported and result.state is SmsState.FAILED and _given_up(result.detail):
                event(log, "sms.answered_late", logging.WARNING, message=row.id, state=row.state)
                result = replace(result, state=SmsState(row.state), gateway_id=row.gateway_id)
                row.detail = _answered_late(row.detail, row.state)
            if settled is None:
                activities = self._activity(session, target.account_id, now, target.phone, result.state)
            else:  # its lock was lost and the node settled it meanwhile: the sender's real answer replaces the guess
                audit(session, at=self.clock.now(), site=self.site, actor=actor, action="sms.sender_answer",
                      subject=f"{Channel.SMS}:{row.phone}", message=row.id, state=result.state.value,
                      gateway_id=result.gateway_id, detail=result.detail, settled=settled)  # fmt: skip
                activities = []
                for added in self._settled_activities(session, row):  # the one the settle added, updated
                    added.outcome = row.state
            session.flush()
            done = [to_activity(a) for a in activities]
        event(log, "sms.submitted", message=message_id, state=result.state.value, gateway_id=result.gateway_id)
        for activity in done:
            self.hooks.activity_recorded(self.site, activity)
        return result

    def reconcile_texts(self) -> list[int] | None:
        """Settle the site's texts a killed sender (a node, an ``sms`` command) left with no answer stored (no
        detail: ``queued``, or moved on by a receipt that reached the node first): the gateway says what became of
        each (:meth:`cartera.core.adapters.SmsGateway.settle`: smpp from its submit ledger, else failed as
        unknown); each gets that state (a receipt's is kept) and detail, its SMS activity (the creditor's export
        has it) and an ``sms.reconcile`` audit entry. Only while no live process is sending one of the
        site's texts (:mod:`cartera.core.store.text_senders`): a text an ``sms`` command beside the node is
        sending is never touched. Returns the texts settled, or ``None`` when a sender was live (try later)."""
        if self.sms is None:
            return []
        with no_text_in_flight(self.db, self.site) as quiet:
            if not quiet:
                event(log, "sms.reconcile_deferred", reason="a text of the site is being sent")
                return None
            return self._reconcile_texts(self.sms)

    def _reconcile_texts(self, gateway: Callable[[], SmsGateway[Any]]) -> list[int]:
        with self.db.session() as session:
            left = session.execute(
                select(SmsRow.id, SmsRow.phone, SmsRow.text, Account.ref)
                .outerjoin(Account, SmsRow.account_id == Account.id)
                .where(SmsRow.site == self.site, SmsRow.detail.is_(None))  # no sender's answer stored
                .order_by(SmsRow.id)
            ).all()
        if not left:
            return []
        ids = [row.id for row in left]
        event(log, "sms.reconciling", logging.WARNING, messages=ids)
        messages = [SmsMessage(row.id, self.site, row.phone, row.text, row.ref) for row in left]
        try:
            results = gateway().settle(messages)
            if [result.message_id for result in results] != ids:
                raise ValueError(f"settle() answered for {[r.message_id for r in results]}, not {ids}")
        except Exception:
            log.exception("the sms gateway could not settle texts a killed sender left: settled as unknown")
            results = SmsGateway.settle(gateway(), messages)
        now = self.clock.now()
        done: list[Activity] = []
        for result in results:
            done += self._settle(result, now)
        for activity in done:
            self.hooks.activity_recorded(self.site, activity)
        return ids

    def _settle(self, result: SmsSubmitResult, now: datetime) -> list[Activity]:
        """Store what became of one text a killed sender left unanswered; its activity, if it has an account. A state
        a receipt gave it meanwhile is kept (the receipt knows more than the gateway's record)."""
        gateway_id = result.gateway_id if result.gateway_id and len(result.gateway_id) <= GATEWAY_ID_MAX else None
        with self.db.session() as session:
            row = session.get_one(SmsRow, result.message_id, with_for_update=True)
            if row.detail is not None:
                return []  # settled meanwhile
            receipt = row.state if row.state != SmsState.QUEUED.value else None
            state = SmsState(receipt) if receipt else result.state
            row.state, row.gateway_id = state.value, row.gateway_id or gateway_id
            # a text a report answered is no longer unknown (nor in doubt): later reports follow the usual rules, a
            # stale "accepted" never moves its final state back (round 28 C-F1)
            detail = result.detail or ""
            if receipt and _given_up(detail):
                detail = _answered_late(detail, receipt)
            row.detail, row.updated_at = detail, now
            audit(session, at=now, site=self.site, actor="node", action="sms.reconcile",
                  subject=f"{Channel.SMS}:{row.phone}", message=row.id, state=state.value, detail=result.detail,
                  settled=result.state.value, receipt=receipt)  # fmt: skip
            activities = self._activity(session, row.account_id, row.created_at, row.phone, state)
            session.flush()
            done = [to_activity(a) for a in activities]
        event(log, "sms.reconciled", message=result.message_id, state=state.value, detail=result.detail)
        return done

    def _settled_as_killed(self, session: Session, row: SmsRow) -> str | None:
        """The state :meth:`reconcile_texts` gave ``row`` as a killed sender's text (its ``sms.reconcile`` audit entry
        tells), or ``None`` when it did not settle it."""
        if row.state == SmsState.QUEUED.value:
            return None
        entries = session.scalars(
            select(AuditEntry.details).where(
                AuditEntry.site == self.site, AuditEntry.action == "sms.reconcile", AuditEntry.at >= row.created_at
            )
        )
        states = [entry.get("state") for entry in entries if entry.get("message") == row.id]
        return str(states[-1]) if states else None

    def _settled_activities(self, session: Session, row: SmsRow) -> list[ActivityRow]:
        """The SMS activity its sender or :meth:`_settle` added for ``row`` (none without an account)."""
        if row.account_id is None:
            return []
        return list(
            session.scalars(
                select(ActivityRow).where(
                    ActivityRow.site == self.site,
                    ActivityRow.kind == ActivityKind.SMS.value,
                    ActivityRow.account_id == row.account_id,
                    ActivityRow.phone == row.phone,
                    ActivityRow.at == row.created_at,
                )
            )
        )

    def _activity(
        self, session: Session, account_id: int | None, at: datetime, phone: str, state: SmsState
    ) -> list[ActivityRow]:
        """The SMS activity of a text sent at ``at`` about an account (none without one), as the creditor gets it."""
        if account_id is None:
            return []
        account = session.get_one(Account, account_id)
        return [add_activity(session, site=self.site, kind=ActivityKind.SMS, at=at, account=account, phone=phone,
                             outcome=state.value)]  # fmt: skip

    def on_delivery(self, report: DeliveryReport) -> None:
        """Apply a gateway's receipt to the message it was made for: the one ``report.message_id`` names (else
        the one with its gateway id) when the gateway id stored for that message is the report's. A report
        naming no message of this site, or another submission's gateway id (a forged report, or a stale one
        after the store was restored and message ids were reused), is refused as unknown: logged, nothing
        changed, no hook. While a text is still being submitted (queued) its gateway id is not stored yet: a
        report then (the outbox's, a fast gateway's) is taken and its gateway id kept; so is any for a text settled
        failed as unknown after its sender was killed (:meth:`reconcile_texts`: Kannel's receipt tells at last) or
        failed in doubt (:data:`~cartera.core.adapters.IN_DOUBT`: the vendor's late acceptance, then its receipts):
        the first such report sets its SMS activity to what became of it and rewrites its detail, so later reports
        follow the usual rules (round 27 C-F1: the activity of a text settled unknown stayed failed)."""
        with self.db.session() as session:
            row = self._reported_row(session, report)
            if row is None:
                event(log, "sms.unknown_delivery", logging.WARNING, message=report.message_id,
                      gateway_id=report.gateway_id)  # fmt: skip
                return
            # given up in doubt, or settled unknown after its sender was killed (Kannel, the outbox): the first report
            # tells what became of it, so its activity says so whether it comes before the settle or after
            answered_late = row.state == SmsState.FAILED.value and _given_up(row.detail)
            if answered_late:  # it went after all: the text's activity (failed) tells what became of it
                event(log, "sms.answered_late", logging.WARNING, message=row.id, state=report.state.value)
                for activity in self._settled_activities(session, row):
                    activity.outcome = report.state.value
                row.detail = _answered_late(row.detail or "", report.state.value)
            elif row.state in _FINAL_SMS_STATES and report.state.value not in _FINAL_SMS_STATES:
                # Receipts overtake each other (Kannel's "delivered" can precede its "accepted by the SMSC").
                event(log, "sms.late_delivery", message=row.id, state=report.state.value, kept=row.state)
                return
            row.state, row.updated_at = report.state.value, report.at
            if report.gateway_id is None or len(report.gateway_id) <= GATEWAY_ID_MAX:
                row.gateway_id = row.gateway_id or report.gateway_id
            message_id = row.id
        event(log, "sms.delivery", message=message_id, state=report.state.value, raw=report.raw_status)
        self.hooks.sms_delivery(self.site, message_id, report)

    def _reported_row(self, session: Session, report: DeliveryReport) -> SmsRow | None:
        """The site's message ``report`` is for, when its stored gateway id is the report's (see on_delivery), locked
        (FOR UPDATE) so that a report and the sender's answer stored at once serialize (round 27 C-F2)."""
        if report.message_id is None:
            if not report.gateway_id:
                return None
            return session.scalar(
                select(SmsRow).where(SmsRow.site == self.site, SmsRow.gateway_id == report.gateway_id).with_for_update()
            )
        if not 0 < report.message_id <= MAX_ROW_ID:  # no message has it (and SQLite cannot even compare it)
            return None
        row = session.get(SmsRow, report.message_id, with_for_update=True)  # the sender's answer waits (or it does)
        if row is None or row.site != self.site:
            return None
        if row.gateway_id is None:  # still being submitted, settled unknown after its sender was killed, in doubt
            taken = row.state == SmsState.QUEUED.value or _given_up(row.detail)
            return row if taken else None
        return row if report.gateway_id == row.gateway_id else None

    def on_inbound(self, message: InboundSms) -> None:
        """A debtor's message (MO) reached the site: stored and audited with its sender and text. An opt-out
        keyword (:mod:`cartera.contact.optout`) stops texts to that number at once, audited as ``sms.opt_out``; a
        message the gateway delivers twice (same gateway id) is handled once. A sender longer than the store
        keeps (:data:`MAX_SENDER`: no phone number nor alphanumeric sender is), or a gateway id longer than
        :data:`MAX_GATEWAY_ID`, is refused, logged as ``sms.inbound_refused``, never stored cut short. A sender of
        digits that is no number of the site's country is read as international (an SMSC's TON 0); one that is no
        phone number at all opts nothing out: its keyword is logged and audited ``sms.opt_out_not_applied``."""
        try:
            phone, is_number = normalize(message.phone, self.targets.country, or_international=True), True
        except InvalidPhone:
            phone, is_number = message.phone.strip(), False
        if len(phone) > MAX_SENDER or len(message.gateway_id or "") > MAX_GATEWAY_ID:
            event(log, "sms.inbound_refused", logging.WARNING, reason="sender or gateway id too long",
                  sender_length=len(phone), gateway_id_length=len(message.gateway_id or ""))  # fmt: skip
            return
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
                phone=phone,
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
            if keyword is not None and is_number:
                self._opt_out(session, phone, keyword, row, message)
            elif keyword is not None:  # no text goes to a sender that is no number: none to stop
                audit(session, at=message.received_at, site=self.site, actor=f"phone:{message.phone}",
                      action="sms.opt_out_not_applied", subject=phone, keyword=keyword, inbound_id=row.id,
                      reason=_NO_NUMBER)  # fmt: skip
        event(log, "sms.inbound", phone=phone, opt_out=keyword if is_number else None)
        if keyword is not None and not is_number:
            event(log, "sms.opt_out_not_applied", logging.WARNING, phone=phone, keyword=keyword, reason=_NO_NUMBER)

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
            return self.templates.render(template, self.targets.account(session, account, lock=False))

    def preview_sms(self, *, account_id: int, text: str, at: datetime) -> tuple[Decision, str]:
        """What the gate would decide for texting the account's number at ``at`` (not audited, sends nothing),
        and the number it would pick."""
        with self.db.session() as session:
            target = self.targets.find(session, Channel.SMS, None, account_id, at=at, text=text)
            return self.targets.gate.evaluate(target.subject, at), target.phone

    def promise_confirmation(self, account: Account, promise: Disposition) -> str | None:
        """The text confirming a promise to pay (with its amount and date), from the portfolio's ``promise``
        template; ``None`` when the site has no gateway or the template cannot be filled (logged)."""
        if self.sms is None:
            return None
        fields = {"promised_amount": promise.promised_amount, "promised_date": promise.promised_date}
        try:
            rendered = self.templates.render(PROMISE, account, **fields)
        except TemplateProblem as problem:
            event(log, "sms.promise_not_sent", logging.WARNING, account=account.ref, reason=str(problem))
            return None
        assert rendered is not None  # built in
        return rendered.text
