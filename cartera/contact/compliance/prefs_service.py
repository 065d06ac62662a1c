"""The operator's door to what a debtor asked for: an account's requested hours and its numbers' line types, read
and set in one session each, audited (see :mod:`cartera.contact.compliance.prefs`)."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy.orm import Session

from cartera.contact.compliance import prefs
from cartera.contact.compliance.model import DebtorHours, LineType
from cartera.core.clock import Clock
from cartera.core.store.database import Database
from cartera.core.store.schema import Account


@dataclass(frozen=True)
class AccountPrefs:
    """One account's contact preferences: its requested hours and each of its debtor's numbers' line type."""

    ref: str
    portfolio: str  #: CREDITOR/CODE
    country: str  #: the portfolio's, which its numbers are read in
    hours: DebtorHours | None
    lines: tuple[tuple[str, LineType], ...]  #: every number of the debtor (E.164), in stored order


class ContactPrefs:
    """One site's requested hours and line types, as an operator states them."""

    def __init__(self, site: str, db: Database, clock: Clock) -> None:
        self._site = site
        self._db = db
        self._clock = clock

    def show(self, account_ref: str) -> AccountPrefs:
        """The preferences of the account ``account_ref`` names (refused unless it names one)."""
        with self._db.session() as session:
            return _prefs(session, prefs.account(session, self._site, account_ref))

    def set_hours(
        self, account_ref: str, hours: dict[str, str] | None, *, instrument: str | None, actor: str
    ) -> DebtorHours | None:
        """Record (``hours``) or clear (``None``) the hours the debtor asked for; what is stored now."""
        with self._db.session() as session:
            return prefs.set_hours(
                session,
                site=self._site,
                account_ref=account_ref,
                hours=hours,
                instrument=instrument,
                source=prefs.OPERATOR,
                actor=actor,
                at=self._clock.now(),
            )

    def set_line_type(self, account_ref: str, phone: str, line_type: LineType, *, actor: str) -> None:
        """State what ``phone`` (E.164, a number of the account's debtor) is; ``unknown`` removes the statement."""
        with self._db.session() as session:
            prefs.set_line_type(
                session,
                site=self._site,
                account_ref=account_ref,
                phone=phone,
                line_type=line_type,
                source=prefs.OPERATOR,
                actor=actor,
                at=self._clock.now(),
            )


def _prefs(session: Session, account: Account) -> AccountPrefs:
    requested, lines = prefs.load(session, account_id=account.id, debtor_id=account.debtor_id, phone="")
    portfolio = account.portfolio
    return AccountPrefs(
        ref=account.ref,
        portfolio=f"{portfolio.creditor.code}/{portfolio.code}",
        country=portfolio.country,
        hours=requested,
        lines=tuple((phone.e164, lines.get(phone.e164, LineType.UNKNOWN)) for phone in account.debtor.phones),
    )
