"""Callbacks: a time the debtor chose, for the agent who took the call or for anyone; offered to every agent once
overdue by the site's release time; done when a call about the account is dispositioned at or after it."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import or_, select, update
from sqlalchemy.orm import Session

from cartera.core.store.schema import CallbackRow

PENDING, DONE = "pending", "done"


@dataclass(frozen=True)
class CallbackView:
    """A callback as an agent's page lists it; ``agent`` ``None``: for anyone."""

    id: int
    account_id: int
    account_ref: str
    phone: str
    at: datetime
    agent: str | None
    released: bool  #: for its agent alone, but overdue: offered to every agent


def due_for(session: Session, *, site: str, agent: str, now: datetime, release: timedelta) -> list[CallbackView]:
    """The site's pending callbacks due by ``now`` that ``agent`` may take: its own, anyone's, and others' overdue
    by ``release``; earliest first."""
    rows = session.scalars(
        select(CallbackRow)
        .where(
            CallbackRow.site == site,
            CallbackRow.state == PENDING,
            CallbackRow.at <= now,
            or_(
                CallbackRow.agent.is_(None),
                CallbackRow.agent == agent,
                CallbackRow.at <= now - release,
            ),
        )
        .order_by(CallbackRow.at, CallbackRow.id)
    ).all()
    return [
        CallbackView(
            row.id,
            row.account_id,
            row.account.ref,
            row.phone,
            row.at,
            row.agent,
            released=row.agent is not None and row.agent != agent,
        )
        for row in rows
    ]


def close_served(session: Session, *, account_id: int, now: datetime) -> None:
    """A call about the account was dispositioned at ``now``: its callbacks due by then are done."""
    session.execute(
        update(CallbackRow)
        .where(CallbackRow.account_id == account_id, CallbackRow.state == PENDING, CallbackRow.at <= now)
        .values(state=DONE)
    )
