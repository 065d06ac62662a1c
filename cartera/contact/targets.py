"""Who a call or text reaches, as the compliance gate sees it: the site's account (by id or reference), the number
to use, and what the rules read of the store. Shared by the calls, texts and explanations."""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session, joinedload

from cartera.contact.compliance import ComplianceGate, Decision, Purpose, Subject, debtor
from cartera.contact.compliance import history as contact_history
from cartera.contact.compliance import prefs as contact_prefs
from cartera.contact.phones import InvalidPhone, normalize
from cartera.core.errors import CarteraError, NotFound, UsageError
from cartera.core.models import Channel
from cartera.core.store.schema import Account, AccountStop, ContactAttempt, Phone, Portfolio, SmsOptOut
from cartera.portfolio.identity import resolve_account


class Denied(CarteraError):
    """The compliance gate refused the contact; the decision is audited."""

    def __init__(self, decision: Decision) -> None:
        super().__init__(decision.explain())
        self.decision = decision


@dataclass(frozen=True)
class Target:
    """The contact asked for: the number, the account (its row valid in the session that found it) and the
    gate's subject."""

    phone: str
    account: Account | None
    account_id: int | None
    account_ref: str | None
    subject: Subject
    balance: str | None


class Targets:
    """Finds the targets of one site's contacts; the services call it inside their own transactions."""

    def __init__(self, site: str, country: str, gate: ComplianceGate) -> None:
        self.site, self.country, self.gate = site, country, gate

    def find(
        self,
        session: Session,
        channel: Channel,
        phone: str | None,
        account: int | str | None,
        *,
        at: datetime,
        text: str | None = None,
        purpose: Purpose = Purpose.COLLECTION,
        lock: bool = False,
        as_of: bool = False,
    ) -> Target:
        """The contact asked for (``account``: the account's id or reference), as the gate sees it, the account
        read once. ``lock`` holds the account's row and the debtor's advisory locks until the transaction ends
        (PostgreSQL, :func:`cartera.contact.compliance.debtor.serialize`), so two nodes or sites deciding about
        one debtor cannot both pass a limit with the same history."""
        found = None if account is None else self.account(session, account, lock=lock)
        if phone is not None:
            try:
                e164 = normalize(phone, found.portfolio.country if found else self.country)
            except InvalidPhone as exc:
                raise UsageError(str(exc)) from None
        elif found is None:
            raise UsageError("give a phone number or an account")
        if lock:
            debtor.serialize(session, debtor.key_of(found, e164 if phone is not None else None))
        if phone is not None or found is None:
            subject = self._subject(session, channel, e164, found, at=at, text=text, purpose=purpose, as_of=as_of)
        else:
            e164, subject = self.pick_phone(session, found, channel, at=at, text=text, purpose=purpose, as_of=as_of)
        return Target(
            phone=e164,
            account=found,
            account_id=found.id if found else None,
            account_ref=found.ref if found else None,
            subject=subject,
            balance=str(found.balance) if found else None,
        )

    def account(self, session: Session, wanted: int | str, *, lock: bool) -> Account:
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

    def pick_phone(
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
            account_status=_status(session, account),
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
        found = contact_history.load(session, account=account, phone=e164, at=at, horizon=policy.horizon, as_of=as_of)
        return replace(subject, history=found)


def _status(session: Session, account: Account | None) -> str | None:
    """The account's status as the gate reads it: an agent's stop (cease contact, dispute, deceased) first."""
    if account is None:
        return None
    stop = session.get(AccountStop, account.id)
    return stop.status if stop is not None else account.status
