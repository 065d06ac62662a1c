"""The one path of a disposition into the store, whoever records it: an agent's page, an integration's REST call,
the workspace itself (wrap-up timed out, browser closed) or a dialer that reports one with the call's end.

A disposition is checked whole before anything is stored (the attempt is the agent's and has none yet, the code
is the portfolio's, the promise and the callback are valid, the gate allows the callback's time); then, in one
transaction: the disposition, the call's activity and the promise's for the creditor's export, the right-party
mark the KPIs and the compliance history read, the account stopped (cease contact, dispute, deceased), the number
retired (wrong number), the line type the law packs read, the promise and the callback. After the commit: the
observers, and the promise's confirmation text through the gate.
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Literal
from zoneinfo import ZoneInfo

from sqlalchemy import exists, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, selectinload

from cartera.contact.compliance import LineType, Purpose
from cartera.contact.compliance import prefs as contact_prefs
from cartera.contact.targets import Denied, Targets
from cartera.contact.texts import TextService
from cartera.core.audit import audit
from cartera.core.clock import Clock
from cartera.core.config import CampaignConfig
from cartera.core.control_characters import escape_controls, has_control
from cartera.core.hooks import Hooks
from cartera.core.logs import event
from cartera.core.models import (
    ActivityKind,
    CallOutcome,
    CallResult,
    Channel,
    Disposition,
    DispositionCode,
)
from cartera.core.store.database import Database
from cartera.core.store.schema import (
    Account,
    AccountStop,
    ActivityRow,
    CallbackRow,
    ContactAttempt,
    DispositionRow,
    PromiseInstalment,
    PromiseRow,
)
from cartera.portfolio.export import add_activity, to_activity, unexported_call_activity
from cartera.portfolio.identity import PortfolioKey, qualified
from cartera.users.directory import site_agent
from cartera.workspace import callbacks, promises
from cartera.workspace.dispositions import BROWSER_CLOSED, WRAP_UP_TIMEOUT, CodeSpec, Flag, SavedDisposition
from cartera.workspace.errors import AlreadyDispositioned, CallbackNotAllowed, NotYourCall, WorkspaceError
from cartera.workspace.promises import Instalment, PromiseState, PromiseView
from cartera.workspace.settings import PortfolioRules, WorkspaceConfig

log = logging.getLogger("cartera.workspace")
MAX_NOTE = 500  #: the longest note of a disposition, whoever records it (the page and the API cap it alike)
#: The agent recorded for a disposition a dialer reported without naming one.
DIALER = "dialer"
_Source = Literal["agent", "system", "dialer"]
#: Calls whose right party an agent confirmed, kept in memory (a node restarted asks again): more than a site's
#: agents ever have on screen at once; the oldest is forgotten past it.
KEPT_CONFIRMATIONS = 4096
#: The refusal of an agent's right-party code before the agent confirmed the call's right party: fixed, it names
#: no figure of the debt (nothing of the account is checked before it).
RIGHT_PARTY_FIRST = "confirm the right party of the call first: code {code!r} says the agent spoke with the debtor"


@dataclass(frozen=True)
class CallbackRequest:
    """The time the debtor chose (timezone-aware); ``for_anyone``: any agent may call, not only this one."""

    at: datetime
    for_anyone: bool = False


@dataclass(frozen=True)
class DispositionInput:
    """What an agent submits for a call: ``promise`` one instalment (amount and date) or a plan of several."""

    attempt_id: int
    code: str
    note: str = ""
    promise: tuple[Instalment, ...] = ()
    callback: CallbackRequest | None = None
    line_type: LineType | None = None  #: what the debtor said the number called is


@dataclass(frozen=True)
class _Done:
    """What :meth:`WorkspaceService._save` leaves for after the commit."""

    saved: SavedDisposition
    activities: list[ActivityRow]
    confirmation: tuple[str, str, int] | None  #: (phone, text, account id) of the promise's confirmation


class WorkspaceService:
    """One site's dispositions, promises and callbacks."""

    def __init__(
        self,
        *,
        targets: Targets,
        db: Database,
        hooks: Hooks,
        clock: Clock,
        config: WorkspaceConfig,
        campaign: CampaignConfig,
        texts: TextService,
        zone: ZoneInfo,
    ) -> None:
        self.targets, self.site, self.db, self.hooks, self.clock = targets, targets.site, db, hooks, clock
        self.config, self.campaign, self.texts, self.zone = config, campaign, texts, zone
        self._confirmed: OrderedDict[int, str] = OrderedDict()  #: attempt id -> the agent that confirmed it
        self._confirmed_lock = threading.Lock()

    def rules(self, account: Account | None) -> PortfolioRules:
        """The account's portfolio's codes and limits (a call without an account: the site's)."""
        if account is None:
            return self.config.rules("", "")
        return self.config.rules(account.portfolio.creditor.code, account.portfolio.code)

    def codes(self, account_id: int) -> tuple[CodeSpec, ...]:
        """The codes offered to agents for this account's calls."""
        with self.db.reading() as session:
            return self.rules(self.targets.account(session, account_id, lock=False)).codes

    def confirm_right_party(self, agent: str, attempt_id: int, *, within: frozenset[PortfolioKey] | None) -> None:
        """``agent`` confirmed it speaks with the debtor of its call ``attempt_id`` (the step that shows it the
        debt): from now on it may record that call's right-party codes (:data:`RIGHT_PARTY_FIRST`). A call that is
        not the agent's, or outside ``within``, is refused as :meth:`post_disposition` refuses it."""
        with self.db.reading() as session:
            attempt = session.get(ContactAttempt, attempt_id)
            if attempt is None or attempt.site != self.site:
                raise _not_yours(attempt_id, agent)
            self._check_agent(session, attempt, agent, within)
        with self._confirmed_lock:
            self._confirmed[attempt_id] = agent
            self._confirmed.move_to_end(attempt_id)
            while len(self._confirmed) > KEPT_CONFIRMATIONS:
                self._confirmed.popitem(last=False)

    def right_party_confirmed(self, agent: str, attempt_id: int) -> bool:
        """Whether ``agent`` confirmed the right party of its call ``attempt_id`` (since the node started)."""
        with self._confirmed_lock:
            return self._confirmed.get(attempt_id) == agent

    def post_disposition(
        self, agent: str, disposition: DispositionInput, *, within: frozenset[PortfolioKey] | None
    ) -> SavedDisposition:
        """Record what ``agent`` (a user's name) submitted for a call the dialer connected to its extension, of an
        account ``within`` the portfolios it may see (``None``: the whole site, the integrations' view). A call
        that is not the agent's, or outside ``within``, is refused alike, before anything of its account is read.
        A code flagged ``right_party`` (so every promise, dispute and cease contact) is refused (``right_party``)
        until the agent confirmed the call's right party (:meth:`confirm_right_party`), before anything of the
        account is checked. Raises :class:`~cartera.workspace.errors.WorkspaceError` (naming the field) and stores
        nothing on bad input."""
        saved = self._post(agent, disposition, actor=agent, source="agent", within=within)
        with self._confirmed_lock:
            self._confirmed.pop(disposition.attempt_id, None)
        return saved

    def system_disposition(self, agent: str, attempt_id: int, code: str) -> SavedDisposition | None:
        """Disposition the agent's call ``wrap_up_timeout`` or ``browser_closed``; ``None`` when the call was
        dispositioned meanwhile."""
        if code not in (WRAP_UP_TIMEOUT, BROWSER_CLOSED):
            raise WorkspaceError("code", f"{code!r} is not a code the workspace records itself")
        try:
            return self._post(agent, DispositionInput(attempt_id, code), actor="workspace", source="system")
        except AlreadyDispositioned:
            return None

    def dialer_disposition(self, result: CallResult) -> SavedDisposition | None:
        """The disposition a dialer reported with the call's end (its agents are simulated or its own desktop
        records them), through the same checks; a promise the portfolio would refuse is left out (logged), the
        rest recorded. ``None`` when the call had a disposition already or its code is unknown (logged)."""
        reported = result.disposition
        assert reported is not None
        plan: tuple[Instalment, ...] = ()
        if reported.promised_amount is not None and reported.promised_date is not None:
            plan = (Instalment(reported.promised_amount, reported.promised_date),)
        note = escape_controls(reported.note)[:MAX_NOTE]  # a vendor's text: kept, its controls made visible
        wanted = DispositionInput(result.attempt_id, reported.code.value, note, plan)
        try:
            return self._post(result.agent or DIALER, wanted, actor=result.agent or DIALER, source="dialer")
        except WorkspaceError as refused:
            event(
                log,
                "workspace.dialer_disposition_refused",
                logging.WARNING,
                attempt=result.attempt_id,
                reason=str(refused),
            )
            return None

    def agents_call(self, session: Session, attempt: ContactAttempt, reported: Disposition) -> str | None:
        """The enabled agent user whose extension ``attempt`` was connected to: that agent's page (or an
        integration posting for it) records the call's disposition, so ``reported``, the dialer's, is ignored
        (audited in ``session``). ``None`` when no such user holds the extension (a seat no page watches)."""
        if attempt.agent is None:
            return None
        owner = site_agent(session, self.site, attempt.agent)
        if owner is not None:
            audit(
                session,
                at=self.clock.now(),
                site=self.site,
                actor=f"dialer:{attempt.agent}",
                action="call.dialer_disposition_ignored",
                subject=f"attempt:{attempt.id}",
                agent=owner,
                code=reported.code.value,
            )
            event(log, "workspace.dialer_disposition_ignored", attempt=attempt.id, agent=owner)
        return owner

    def promises_of(self, account_id: int) -> list[PromiseView]:
        """The account's promises, newest first."""
        with self.db.reading() as session:
            rows = session.scalars(
                select(PromiseRow)
                .where(PromiseRow.account_id == account_id, PromiseRow.site == self.site)
                .options(selectinload(PromiseRow.instalments))
                .order_by(PromiseRow.made_at.desc(), PromiseRow.id.desc())
            ).all()
            return [promises.view(row) for row in rows]

    def sweep(self) -> None:
        """The periodic job: settle pending promises from the payments reported, and disposition
        ``wrap_up_timeout`` the calls connected to an agent that ended longer ago than the wrap-up limit and the
        browser's grace together without a disposition (an agent's page no node watches any more)."""
        now = self.clock.now()
        with self.db.session() as session:
            settled = promises.review(
                session, site=self.site, zone=self.zone, now=now, grace=self.config.promise_grace_days
            )
            # the limits are people's time: real seconds, however fast a simulated clock runs
            left = (self.config.wrap_up_seconds + self.config.gone_seconds) / self.clock.real_seconds(1.0)
            limit = now - timedelta(seconds=left)
            orphans = session.execute(
                select(ContactAttempt.id, ContactAttempt.agent).where(
                    ContactAttempt.site == self.site,
                    ContactAttempt.state == "finished",
                    ContactAttempt.outcome == CallOutcome.ANSWERED.value,
                    ContactAttempt.connected_at.is_not(None),
                    ContactAttempt.ended_at < limit,
                    ~exists().where(DispositionRow.attempt_id == ContactAttempt.id),
                )
            ).all()
        for promise in settled:
            event(log, f"promise.{promise.state.value}", promise=promise.id, account=promise.account_ref)
        for attempt_id, agent in orphans:
            try:
                self._post(agent or DIALER, DispositionInput(attempt_id, WRAP_UP_TIMEOUT), actor="workspace")
            except AlreadyDispositioned:
                continue  # dispositioned meanwhile

    # --- one disposition --------------------------------------------------------------------------------

    def _post(
        self,
        agent: str,
        wanted: DispositionInput,
        *,
        actor: str,
        source: _Source = "system",
        within: frozenset[PortfolioKey] | None = None,
    ) -> SavedDisposition:
        """Save one disposition; ``source`` says who records it: an ``agent`` (the call must be theirs, the
        code's promise or callback given), the workspace (``system`` codes allowed), a ``dialer`` (a promise the
        portfolio refuses is left out rather than the whole refused)."""
        now = self.clock.now()
        try:
            with self.db.session() as session:
                done = self._save(session, agent, wanted, now, actor=actor, source=source, within=within)
        except IntegrityError:  # another node saved one for the same attempt meanwhile
            with self.db.reading() as session:
                existing = self._existing(session, wanted.attempt_id)
            if existing is None:
                raise
            raise AlreadyDispositioned(existing) from None
        event(
            log,
            "call.disposition",
            attempt=wanted.attempt_id,
            code=wanted.code,
            agent=agent,
            account=done.saved.account_ref,
        )
        for row in done.activities:
            self.hooks.activity_recorded(self.site, to_activity(row))
        if done.confirmation is not None:
            phone, text, account_id = done.confirmation
            try:
                self.texts.send_sms(
                    phone=phone, text=text, account=account_id, actor=actor, purpose=Purpose.PROMISE_CONFIRMATION
                )
            except Denied as denied:
                event(log, "sms.denied", account=done.saved.account_ref, reason=str(denied))
        return done.saved

    def _save(
        self,
        session: Session,
        agent: str,
        wanted: DispositionInput,
        now: datetime,
        *,
        actor: str,
        source: _Source,
        within: frozenset[PortfolioKey] | None,
    ) -> _Done:
        attempt = session.scalar(select(ContactAttempt).where(ContactAttempt.id == wanted.attempt_id).with_for_update())
        if attempt is None or attempt.site != self.site:
            if source == "agent":  # as for another's call: whether the id exists is not the agent's to learn
                raise _not_yours(wanted.attempt_id, agent)
            raise NotYourCall("attempt", f"no call {wanted.attempt_id} at site {self.site!r}")
        if source == "agent":
            self._check_agent(session, attempt, agent, within)
        existing = self._existing(session, attempt.id)
        if existing is not None and not self._supersedes(existing, source, now):
            raise AlreadyDispositioned(existing)
        account = attempt.account
        confirmed = source != "agent" or self.right_party_confirmed(agent, attempt.id)
        spec, plan, callback = self._checked(account, wanted, now, source, confirmed=confirmed)
        row = session.get_one(DispositionRow, existing.id) if existing is not None else None
        if row is None:
            row = DispositionRow(site=self.site, attempt_id=attempt.id, account_id=attempt.account_id)
            session.add(row)
        row.code, row.flags, row.agent, row.note, row.at = spec.code, sorted(spec.flags), agent, wanted.note, now
        attempt.disposition, attempt.right_party = spec.code, spec.right_party
        session.flush()
        saved = SavedDisposition(row.id, attempt.id, account.ref if account else None, spec.code, agent, now)
        audit(
            session,
            at=now,
            site=self.site,
            actor=actor,
            action="call.disposition",
            subject=f"{Channel.CALL}:{attempt.phone}",
            account=qualified(account) if account else None,
            attempt=attempt.id,
            code=spec.code,
            agent=agent,
            promised=[[str(i.amount), i.due.isoformat()] for i in plan],
            callback=callback.at.isoformat() if callback else None,
            **({"superseded": existing.code} if existing is not None else {}),
        )
        if account is None:
            return _Done(saved, [], None)
        activities = []
        if attempt.state == "finished" and source != "dialer":  # else CallService records it, with this code
            activities.append(self._call_activity(session, attempt, account=account, now=now, superseding=existing))
        callbacks.close_served(session, account_id=account.id, now=now)
        self._apply_flags(session, spec, attempt, account=account, agent=agent, now=now)
        if wanted.line_type is not None:
            contact_prefs.set_line_type(
                session,
                site=self.site,
                account_ref=qualified(account),
                phone=attempt.phone,
                line_type=wanted.line_type,
                source="agent",
                actor=actor,
                at=now,
            )
        confirmation = None
        if plan:
            promise = self._promise(session, row, plan, account=account, now=now)
            kind = ActivityKind.PROMISE_TO_PAY
            activities += [self._activity(session, attempt, kind, account=account, now=now, instalment=i) for i in plan]
            saved = replace(saved, promise_id=promise.id)
            confirmation = self._confirmation(account, attempt.phone, plan[0])
        if callback is not None:
            saved = replace(saved, callback_id=self._callback(session, row, callback, attempt=attempt, account=account))
        session.flush()
        return _Done(saved, activities, confirmation)

    def _supersedes(self, existing: SavedDisposition, source: _Source, now: datetime) -> bool:
        """Whether the agent's disposition replaces ``existing``: a code the workspace recorded when the agent left
        the call (its wrap-up timed out, its page gone) at most ``late_disposition_minutes`` of people's time ago."""
        late_minutes = self.config.late_disposition_minutes
        if source != "agent" or existing.code not in (WRAP_UP_TIMEOUT, BROWSER_CLOSED) or not late_minutes:
            return False
        late = late_minutes * 60 / self.clock.real_seconds(1.0)
        return now - existing.at <= timedelta(seconds=late)

    def _check_agent(
        self, session: Session, attempt: ContactAttempt, agent: str, within: frozenset[PortfolioKey] | None
    ) -> None:
        """The call is the agent's: connected to its extension, held by an enabled agent granted this site (never
        matched by its user name, which may be another agent's extension), and of a portfolio it sees; one refusal
        for every case, telling nothing."""
        owner = site_agent(session, self.site, attempt.agent) if attempt.agent is not None else None
        account = attempt.account
        if account is None:
            visible = within is None
        else:
            visible = within is None or PortfolioKey(account.portfolio.creditor.code, account.portfolio.code) in within
        if owner != agent or not visible:
            raise _not_yours(attempt.id, agent)

    def _existing(self, session: Session, attempt_id: int) -> SavedDisposition | None:
        row = session.scalar(select(DispositionRow).where(DispositionRow.attempt_id == attempt_id))
        if row is None:
            return None
        account = session.get(Account, row.account_id) if row.account_id is not None else None
        promise = session.scalar(select(PromiseRow.id).where(PromiseRow.disposition_id == row.id))
        callback = session.scalar(select(CallbackRow.id).where(CallbackRow.disposition_id == row.id))
        return SavedDisposition(
            row.id, attempt_id, account.ref if account else None, row.code, row.agent, row.at, promise, callback
        )

    def _checked(
        self, account: Account | None, wanted: DispositionInput, now: datetime, source: _Source, *, confirmed: bool
    ) -> tuple[CodeSpec, tuple[Instalment, ...], CallbackRequest | None]:
        """The code's spec, the promise and the callback to store, each checked (the callback's time against the
        gate later, once the disposition is in the session's history); a right-party code is refused first unless
        ``confirmed`` (the agent confirmed the call's right party), so no refusal names the balance before it."""
        rules = self.rules(account)
        spec = rules.code(wanted.code)
        if spec is None:
            offered = ", ".join(code.code for code in rules.codes)
            raise WorkspaceError("code", f"unknown code (this portfolio's: {offered})")
        lenient = source == "dialer"
        if spec.system and source != "system":
            raise WorkspaceError("code", f"{spec.code!r} is recorded by the workspace itself, not chosen")
        if Flag.RIGHT_PARTY in spec.flags and not confirmed:
            raise WorkspaceError("right_party", RIGHT_PARTY_FIRST.format(code=spec.code))
        if len(wanted.note) > MAX_NOTE:
            raise WorkspaceError("note", f"{len(wanted.note)} characters, at most {MAX_NOTE}")
        if has_control(wanted.note):
            raise WorkspaceError("note", "holds a control, bidi or invisible format character")
        plan = wanted.promise
        if plan and Flag.PROMISE not in spec.flags:
            raise WorkspaceError("promise", f"code {spec.code!r} takes no promise to pay")
        if Flag.PROMISE in spec.flags and (plan or not lenient):
            if account is None:
                raise WorkspaceError("promise", "the call has no account to promise a payment on")
            today = now.astimezone(self.zone).date()
            try:
                promises.check_plan(plan, balance=account.balance, today=today, rules=rules)
            except WorkspaceError as refused:
                if not lenient:
                    raise
                event(log, "workspace.promise_left_out", logging.WARNING, account=account.ref, reason=str(refused))
                plan = ()
        callback = wanted.callback
        if callback is not None and Flag.CALLBACK not in spec.flags:
            raise WorkspaceError("callback", f"code {spec.code!r} takes no callback")
        if Flag.CALLBACK in spec.flags and callback is None and not lenient:
            raise WorkspaceError("callback.at", "a callback needs the time the debtor chose")
        if callback is not None:
            if account is None:
                raise WorkspaceError("callback", "the call has no account to call back about")
            if callback.at.tzinfo is None:
                raise WorkspaceError("callback.at", "a time with a UTC offset is needed")
            if callback.at <= now:
                raise WorkspaceError("callback.at", "in the past")
            if callback.at - now > timedelta(days=rules.promise_horizon_days):  # no account parked for years
                raise WorkspaceError(
                    "callback.at",
                    f"{callback.at.isoformat()} is beyond this portfolio's {rules.promise_horizon_days}-day horizon",
                )
            callback = replace(callback, at=callback.at.astimezone(UTC))
        if wanted.line_type is not None and account is None:
            raise WorkspaceError("line_type", "the call has no account whose number it could describe")
        return spec, plan, callback

    def _apply_flags(
        self, session: Session, spec: CodeSpec, attempt: ContactAttempt, *, account: Account, agent: str, now: datetime
    ) -> None:
        """Stop contact about the account, retire the number: audited, kept whatever the creditor sends later."""
        status = spec.stop
        if status is not None and session.get(AccountStop, account.id) is None:
            session.add(AccountStop(account_id=account.id, status=status, agent=agent, attempt_id=attempt.id, at=now))
            audit(
                session,
                at=now,
                site=self.site,
                actor=agent,
                action="account.stop",
                subject=f"account:{qualified(account)}",
                status=status,
                attempt=attempt.id,
            )
        if Flag.WRONG_NUMBER in spec.flags:
            for phone in account.debtor.phones:
                if phone.e164 == attempt.phone and not phone.invalid:
                    phone.invalid = True
                    audit(
                        session,
                        at=now,
                        site=self.site,
                        actor=agent,
                        action="phone.retire",
                        subject=f"phone:{phone.e164}",
                        account=qualified(account),
                        attempt=attempt.id,
                    )

    def _activity(
        self,
        session: Session,
        attempt: ContactAttempt,
        kind: ActivityKind,
        *,
        account: Account,
        now: datetime,
        instalment: Instalment | None = None,
    ) -> ActivityRow:
        """An activity for the creditor's export, its outcome the disposition's code."""
        return add_activity(
            session,
            site=self.site,
            kind=kind,
            at=now,
            account=account,
            phone=attempt.phone,
            outcome=attempt.disposition,
            amount=instalment.amount if instalment else None,
            due_date=instalment.due if instalment else None,
            agent=attempt.agent,
            attempt_id=attempt.id,
        )

    def _call_activity(
        self,
        session: Session,
        attempt: ContactAttempt,
        *,
        account: Account,
        now: datetime,
        superseding: SavedDisposition | None,
    ) -> ActivityRow:
        """The call's ``call_attempt`` activity with the disposition's code: superseding a system code, the one the
        export has not sent yet takes it in place (one activity a call); once sent, a further one of the same call
        corrects it."""
        if superseding is not None:
            creditor = account.portfolio.creditor.code
            unsent = unexported_call_activity(session, self.site, attempt.id, creditor)
            if unsent is not None:
                unsent.outcome, unsent.agent = attempt.disposition, attempt.agent
                return unsent
        return self._activity(session, attempt, ActivityKind.CALL_ATTEMPT, account=account, now=now)

    def _promise(
        self,
        session: Session,
        disposition: DispositionRow,
        plan: tuple[Instalment, ...],
        *,
        account: Account,
        now: datetime,
    ) -> PromiseRow:
        row = PromiseRow(
            site=self.site,
            account_id=account.id,
            disposition_id=disposition.id,
            state=PromiseState.PENDING.value,
            total=sum((i.amount for i in plan), Decimal(0)),
            currency=account.currency,
            agent=disposition.agent,
            made_at=now,
            instalments=[PromiseInstalment(position=n, amount=i.amount, due=i.due) for n, i in enumerate(plan)],
        )
        session.add(row)
        session.flush()
        return row

    def _confirmation(self, account: Account, phone: str, first: Instalment) -> tuple[str, str, int] | None:
        """The portfolio's ``promise`` text for the (first) instalment, when the site texts confirmations."""
        if not self.campaign.promise_sms:
            return None
        promised = Disposition(DispositionCode.PROMISE_TO_PAY, promised_amount=first.amount, promised_date=first.due)
        text = self.texts.promise_confirmation(account, promised)
        return None if text is None else (phone, text, account.id)

    def _callback(
        self,
        session: Session,
        disposition: DispositionRow,
        callback: CallbackRequest,
        *,
        attempt: ContactAttempt,
        account: Account,
    ) -> int:
        """Store the callback once the gate allows a call at its time (the history including this call); the
        campaign picks the account then (a callback for its agent alone: once released to anyone)."""
        session.flush()
        target = self.targets.find(session, Channel.CALL, attempt.phone, account.id, at=callback.at)
        decision = self.targets.gate.evaluate(target.subject, callback.at)
        if not decision.allowed:
            local = callback.at.astimezone(self.zone).isoformat(timespec="minutes")
            raise CallbackNotAllowed(f"no call is allowed at {local}: {decision.explain()}", decision.next_allowed_at)
        row = CallbackRow(
            site=self.site,
            account_id=account.id,
            disposition_id=disposition.id,
            phone=attempt.phone,
            at=callback.at,
            agent=None if callback.for_anyone else disposition.agent,
            state=callbacks.PENDING,
        )
        session.add(row)
        release = timedelta(0 if callback.for_anyone else self.config.callback_release_minutes * 60)
        account.next_contact_at = callback.at + release
        session.flush()
        return row.id


def _not_yours(attempt_id: int, agent: str) -> NotYourCall:
    """The one refusal of an agent's disposition of a call that is not its own, unknown at the site or outside its
    grants: it tells nothing of the call."""
    return NotYourCall("attempt", f"call {attempt_id} is not one of {agent}'s calls")
