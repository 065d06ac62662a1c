"""What the debtor asked for and what each number is: the hours the debtor asked to be contacted in (per account)
and the line type of each phone (personal / work), as an operator or the creditor states them. Every change is
audited; the engine reads them into each :class:`~cartera.contact.compliance.model.Subject`.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from cartera.contact.compliance import packs
from cartera.contact.compliance.model import DebtorHours, LineType
from cartera.core.audit import audit
from cartera.core.control_characters import control_problem
from cartera.core.errors import UsageError
from cartera.core.store.schema import Account, ContactHours, Phone, PhoneLineType
from cartera.portfolio.identity import qualified, resolve_account

OPERATOR = "operator"
CREDITOR = "creditor"


def debtor_hours(row: ContactHours) -> DebtorHours:
    hours = tuple(row.hours.items())
    return DebtorHours(hours, packs.week_hours(row.hours), row.instrument or None)


def load(
    session: Session, *, account_id: int | None, debtor_id: int | None, phone: str
) -> tuple[DebtorHours | None, dict[str, LineType]]:
    """The account's requested hours, and the line type of the debtor's numbers (of every stored number ``phone``
    when there is no account; a number stated differently for two debtors is ``unknown``)."""
    row = session.get(ContactHours, account_id) if account_id is not None else None
    whose = Phone.debtor_id == debtor_id if debtor_id is not None else Phone.e164 == phone
    stated: dict[str, set[str]] = {}
    for e164, line in session.execute(select(Phone.e164, PhoneLineType.line_type).join(PhoneLineType).where(whose)):
        stated.setdefault(e164, set()).add(line)
    lines = {e164: LineType(kinds.pop()) if len(kinds) == 1 else LineType.UNKNOWN for e164, kinds in stated.items()}
    return (debtor_hours(row) if row is not None else None), lines


def account(session: Session, site: str, reference: str) -> Account:
    """The one account of ``site`` that ``reference`` names (see :func:`cartera.portfolio.identity.resolve_account`)."""
    return session.get_one(Account, resolve_account(session, site, reference))


INSTRUMENT_MAX = 512  #: characters of the instrument recording a debtor's request (ContactHours.instrument)


def instrument_problem(instrument: str) -> str | None:
    """Why ``instrument`` cannot be stored: over :data:`INSTRUMENT_MAX` characters (every store refuses or keeps the
    same), or holding a control, bidi or format character (printed back to whoever shows the account later)."""
    if len(instrument) > INSTRUMENT_MAX:
        return f"{len(instrument)} characters, more than {INSTRUMENT_MAX}"
    return control_problem(instrument)


def set_hours(
    session: Session,
    *,
    site: str,
    account_ref: str,
    hours: dict[str, str] | None,
    instrument: str | None,
    source: str,
    actor: str,
    at: datetime,
) -> DebtorHours | None:
    """Store (``hours``) or clear (``None``) the hours the debtor asked for on the account; audited as
    ``compliance.contact_hours`` with the previous value."""
    target = account(session, site, account_ref)
    if hours is not None:
        packs.week_hours(hours)
    row = session.get(ContactHours, target.id)
    before = debtor_hours(row).describe() if row is not None else None
    instrument = (instrument or "").strip() or None
    if instrument is not None and (problem := instrument_problem(instrument)) is not None:
        raise UsageError(f"instrument: {problem}")
    if hours is None:
        if row is not None:
            session.delete(row)
        after = None
    else:
        if row is None:
            row = ContactHours(account_id=target.id)
            session.add(row)
        row.hours, row.instrument, row.source, row.set_by, row.set_at = hours, instrument, source, actor, at
        after = debtor_hours(row)
    audit(
        session,
        at=at,
        site=site,
        actor=actor,
        action="compliance.contact_hours",
        subject=f"account:{qualified(target)}",
        account=qualified(target),
        source=source,
        before=before,
        after=after.describe() if after else None,
    )
    return after


def set_line_type(
    session: Session,
    *,
    site: str,
    account_ref: str,
    phone: str,
    line_type: LineType,
    source: str,
    actor: str,
    at: datetime,
) -> None:
    """State what ``phone`` (E.164, a number of the account's debtor) is; ``unknown`` removes the statement.
    Audited as ``compliance.line_type`` with the previous value."""
    target = account(session, site, account_ref)
    number = session.scalar(select(Phone).where(Phone.debtor_id == target.debtor_id, Phone.e164 == phone))
    if number is None:
        raise UsageError(f"{phone} is not a number of the debtor of account {account_ref!r}")
    row = session.get(PhoneLineType, number.id)
    before = row.line_type if row is not None else LineType.UNKNOWN.value
    if line_type is LineType.UNKNOWN:
        if row is not None:
            session.delete(row)
    else:
        if row is None:
            row = PhoneLineType(phone_id=number.id)
            session.add(row)
        row.line_type, row.source, row.set_by, row.set_at = line_type.value, source, actor, at
    audit(
        session,
        at=at,
        site=site,
        actor=actor,
        action="compliance.line_type",
        subject=f"phone:{phone}",
        account=qualified(target),
        source=source,
        before=before,
        after=line_type.value,
    )
