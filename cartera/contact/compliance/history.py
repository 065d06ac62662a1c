"""A debtor's contact history from the store, loaded once per decision in two queries.

Counting reads the stored attempts and texts, never counters in memory: a restart, or a second node on the
same PostgreSQL store, sees every contact already made. Contacts of the account are counted, and so are
contacts of any account to the same number (the person behind it), so a call without ``--account`` counts
too. An attempt counts from the moment it is requested (in flight, unanswered or failed alike); a text from
the moment it is queued, whatever its delivery.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import and_, case, false, func, literal, or_, select, union_all
from sqlalchemy.orm import Session

from cartera.contact.compliance.model import Contact, History
from cartera.core.models import ActivityKind, Channel, DispositionCode
from cartera.core.store.schema import ActivityRow, ContactAttempt, SmsRow

#: An answered call is a conversation with the debtor unless the agent found the wrong person.
CONVERSATION = and_(
    ContactAttempt.answered_at.is_not(None),
    or_(ContactAttempt.disposition.is_(None), ContactAttempt.disposition != DispositionCode.WRONG_PARTY.value),
)


def load(
    session: Session, *, account_id: int | None, phone: str, at: datetime, horizon: float, as_of: bool = False
) -> History:
    """Contacts of the account or to ``phone`` from ``horizon`` seconds before ``at`` on, newest first; the latest
    conversation; the date of the latest promise to pay. A live decision counts every stored contact, also one
    stamped after ``at`` by a node whose clock runs ahead; ``as_of`` reads the store as it was at ``at``."""
    since = at - timedelta(seconds=horizon)
    until = at if as_of else datetime.max.replace(tzinfo=at.tzinfo)
    call_of_account = ContactAttempt.account_id == account_id if account_id is not None else false()
    text_of_account = SmsRow.account_id == account_id if account_id is not None else false()
    calls = select(
        ContactAttempt.requested_at.label("at"),
        literal(Channel.CALL.value).label("channel"),
        ContactAttempt.phone,
        ContactAttempt.account_id,
        case((CONVERSATION, 1), else_=0).label("conversation"),
    ).where(
        ContactAttempt.requested_at >= since,
        ContactAttempt.requested_at <= until,
        or_(call_of_account, ContactAttempt.phone == phone),
    )
    texts = select(SmsRow.created_at, literal(Channel.SMS.value), SmsRow.phone, SmsRow.account_id, literal(0)).where(
        SmsRow.created_at >= since, SmsRow.created_at <= until, or_(text_of_account, SmsRow.phone == phone)
    )
    recent = union_all(calls, texts).subquery()
    rows = session.execute(select(recent).order_by(recent.c.at.desc())).all()
    contacts = tuple(
        Contact(
            row.at.timestamp(),
            Channel(row.channel),
            row.phone,
            account_id is not None and row.account_id == account_id,
            bool(row.conversation),
        )
        for row in rows
    )
    last_conversation = (
        select(func.max(ContactAttempt.answered_at))
        .where(
            CONVERSATION,
            ContactAttempt.answered_at <= until,
            call_of_account if account_id is not None else ContactAttempt.phone == phone,
        )
        .scalar_subquery()
    )
    promise = (
        select(ActivityRow.due_date)
        .where(
            ActivityRow.account_id == account_id,
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
