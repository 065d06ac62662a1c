"""Callbacks: a time the debtor chose, for the agent who took the call or for anyone; offered to every agent once
overdue by the site's release time; done when a call about the account is dispositioned at or after it."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import exists, select, update
from sqlalchemy.orm import Session

from cartera.core.store.schema import Account, AccountStop, CallbackRow, ContactAttempt, Creditor, Portfolio
from cartera.portfolio.identity import PortfolioKey, in_portfolios

PENDING, DONE = "pending", "done"


@dataclass(frozen=True)
class DueCallback:
    """A pending callback due now; ``agent`` ``None``: for anyone."""

    id: int
    account_id: int
    account_ref: str
    phone: str
    at: datetime
    agent: str | None

    def for_anyone(self, now: datetime, release: timedelta) -> bool:
        """Whether any agent may take it at ``now``: asked for anyone, or its agent's but overdue by ``release``."""
        return self.agent is None or self.at <= now - release


def due_callbacks(
    session: Session, *, site: str, now: datetime, within: frozenset[PortfolioKey] | None = None
) -> list[DueCallback]:
    """The site's pending callbacks due by ``now`` on active, not stopped accounts not called since their time
    (of the portfolios ``within``, ``None``: all), earliest first."""
    called_since = exists().where(
        ContactAttempt.account_id == CallbackRow.account_id, ContactAttempt.requested_at >= CallbackRow.at
    )
    rows = session.execute(
        select(
            CallbackRow.id, CallbackRow.account_id, Account.ref, CallbackRow.phone, CallbackRow.at, CallbackRow.agent
        )
        .join(Account, CallbackRow.account_id == Account.id)
        .join(Portfolio, Account.portfolio_id == Portfolio.id)
        .join(Creditor, Portfolio.creditor_id == Creditor.id)
        .where(
            in_portfolios(within),
            CallbackRow.site == site,
            CallbackRow.state == PENDING,
            CallbackRow.at <= now,
            Account.status == "active",
            ~exists().where(AccountStop.account_id == Account.id),
            ~called_since,
        )
        .order_by(CallbackRow.at, CallbackRow.id)
    ).all()
    return [DueCallback(*row) for row in rows]


def close_served(session: Session, *, account_id: int, now: datetime) -> None:
    """A call about the account was dispositioned at ``now``: its callbacks due by then are done."""
    session.execute(
        update(CallbackRow)
        .where(CallbackRow.account_id == account_id, CallbackRow.state == PENDING, CallbackRow.at <= now)
        .values(state=DONE)
    )
