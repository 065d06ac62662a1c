"""A debtor's contact history from the store, loaded once per decision in three queries.

Counting reads the stored attempts and texts, never counters in memory: a restart, or a second node on the
same PostgreSQL store, sees every contact already made. The contacts of the debtor are loaded, at every site
of the store (:mod:`.debtor`): those of the same debt, of any account of the debtor, and to any of the debtor's
numbers, so a call without ``--account`` counts too; each rule counts those of its key. An attempt counts from
the moment it is requested (in flight, unanswered or failed alike); a text from the moment it is queued,
whatever its delivery.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import and_, case, func, literal, or_, select, union_all
from sqlalchemy.orm import Session

from cartera.contact.compliance import debtor
from cartera.contact.compliance.model import Contact, History
from cartera.core.models import ActivityKind, CallOutcome, Channel
from cartera.core.store.schema import Account, ActivityRow, ContactAttempt, SmsRow

#: An answered call is a conversation with the debtor unless its disposition says someone else answered (a third
#: party, a wrong number, a machine: see :attr:`cartera.workspace.dispositions.CodeSpec.right_party`).
CONVERSATION = and_(
    ContactAttempt.answered_at.is_not(None),
    or_(ContactAttempt.right_party.is_(None), ContactAttempt.right_party.is_(True)),
)


def load(
    session: Session, *, account: Account | None, phone: str, at: datetime, horizon: float, as_of: bool = False
) -> History:
    """The debtor's contacts (of the account's debt, of any account of the debtor, to any of the debtor's numbers
    or to ``phone``, at every site) from ``horizon`` seconds before ``at`` on, newest first; the debtor's latest
    conversation; the date of the account's latest promise to pay. A live decision counts every stored contact,
    also one stamped after ``at`` by a node whose clock runs ahead; ``as_of`` reads the store as it was at ``at``."""
    since = at - timedelta(seconds=horizon)
    until = at if as_of else datetime.max.replace(tzinfo=at.tzinfo)
    key = debtor.key_of(account, phone)
    related = debtor.accounts(session, key)
    call_of_debtor = or_(ContactAttempt.account_id.in_(related.all), ContactAttempt.phone.in_(key.numbers))
    calls = select(
        ContactAttempt.requested_at.label("at"),
        literal(Channel.CALL.value).label("channel"),
        ContactAttempt.phone,
        ContactAttempt.account_id,
        case((CONVERSATION, 1), else_=0).label("conversation"),
        ContactAttempt.site,
        case((ContactAttempt.outcome == CallOutcome.ABANDONED.value, 1), else_=0).label("abandoned"),
    ).where(ContactAttempt.requested_at >= since, ContactAttempt.requested_at <= until, call_of_debtor)
    texts = select(
        SmsRow.created_at,
        literal(Channel.SMS.value),
        SmsRow.phone,
        SmsRow.account_id,
        literal(0),
        SmsRow.site,
        literal(0),
    ).where(
        SmsRow.created_at >= since,
        SmsRow.created_at <= until,
        or_(SmsRow.account_id.in_(related.all), SmsRow.phone.in_(key.numbers)),
    )
    recent = union_all(calls, texts).subquery()
    rows = session.execute(select(recent).order_by(recent.c.at.desc())).all()
    contacts = tuple(
        Contact(
            row.at.timestamp(),
            Channel(row.channel),
            row.phone,
            row.account_id in related.debt,
            bool(row.conversation),
            row.site,
            bool(row.abandoned),
        )
        for row in rows
    )
    last_conversation = (
        select(func.max(ContactAttempt.answered_at))
        .where(CONVERSATION, ContactAttempt.answered_at <= until, call_of_debtor)
        .scalar_subquery()
    )
    promise = (
        select(ActivityRow.due_date)
        .where(
            ActivityRow.account_id == (account.id if account is not None else None),
            ActivityRow.kind == ActivityKind.PROMISE_TO_PAY.value,
            ActivityRow.due_date.is_not(None),
            ActivityRow.at <= until,
        )
        .order_by(ActivityRow.at.desc(), ActivityRow.seq.desc())
        .limit(1)
        .scalar_subquery()
    )
    conversation_at, promise_due = session.execute(select(last_conversation, promise)).one()
    return History(
        contacts,
        conversation_at.timestamp() if conversation_at is not None else None,
        promise_due,
    )
