"""The campaign's abandonment rate from the store: abandoned calls over calls answered by a person (connected to an
agent or abandoned) over the configured window, as the summary, the KPIs, the wallboard and ``/metrics`` show it."""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import ColumnElement, func, select
from sqlalchemy.orm import Session

from cartera.core.config import AbandonmentConfig
from cartera.core.models import CallOutcome
from cartera.core.store.schema import Account, ContactAttempt, Creditor, Portfolio
from cartera.portfolio.identity import PortfolioKey, in_portfolios

#: The outcomes of a call a person answered.
ANSWERED_BY_A_PERSON = (CallOutcome.ANSWERED.value, CallOutcome.ABANDONED.value)


@dataclass(frozen=True, slots=True)
class AbandonmentRate:
    abandoned: int
    answered: int  #: answered by a person: connected to an agent or abandoned
    limit: float
    window_days: float

    @property
    def rate(self) -> float:
        return self.abandoned / self.answered if self.answered else 0.0

    @property
    def over_limit(self) -> bool:
        return self.rate > self.limit

    def describe(self) -> str:
        state = "OVER the limit" if self.over_limit else "within the limit"
        return (
            f"{self.rate:.1%} ({self.abandoned} of {self.answered} answered by a person) over {self.window_days:g} "
            f"days: {state} of {self.limit:.0%}"
        )


def _in_window(site: str, now: datetime, config: AbandonmentConfig) -> tuple[ColumnElement[bool], ...]:
    """The site's calls answered by a person over the ``config.window_days`` before ``now``."""
    return (
        ContactAttempt.site == site,
        ContactAttempt.state == "finished",
        ContactAttempt.outcome.in_(ANSWERED_BY_A_PERSON),
        ContactAttempt.requested_at >= now - timedelta(days=config.window_days),
    )


def answered_calls(
    session: Session, site: str, now: datetime, config: AbandonmentConfig
) -> list[tuple[datetime, bool]]:
    """The calls :func:`abandonment_rate` counts, oldest first: when each was requested, and whether it was
    abandoned (the predictive pacer's budget starts from them)."""
    query = select(ContactAttempt.requested_at, ContactAttempt.outcome).where(*_in_window(site, now, config))
    rows = session.execute(query.order_by(ContactAttempt.requested_at))
    return [(requested, outcome == CallOutcome.ABANDONED.value) for requested, outcome in rows]


def latest_calls(session: Session, site: str, before: datetime, count: int) -> list[tuple[datetime, CallOutcome]]:
    """The site's latest ``count`` finished calls requested before ``before``, oldest first: when each was requested
    and its outcome (the predictive pacer's answer rate starts from them)."""
    query = select(ContactAttempt.requested_at, ContactAttempt.outcome).where(
        ContactAttempt.site == site,
        ContactAttempt.state == "finished",
        ContactAttempt.outcome.is_not(None),
        ContactAttempt.requested_at < before,
    )
    rows = session.execute(query.order_by(ContactAttempt.requested_at.desc(), ContactAttempt.id.desc()).limit(count))
    return [(requested, CallOutcome(outcome or "")) for requested, outcome in reversed(rows.all())]


def abandonment_rate(
    session: Session,
    site: str,
    now: datetime,
    config: AbandonmentConfig,
    within: Collection[PortfolioKey] | None = None,
) -> AbandonmentRate:
    """The site's campaign's rate over the ``config.window_days`` before ``now``; ``within`` limits it to these
    portfolios' calls (``None``: every call of the site, also those made without an account)."""
    query = (
        select(ContactAttempt.outcome, func.count())
        .where(*_in_window(site, now, config))
        .group_by(ContactAttempt.outcome)
    )
    if within is not None:
        query = (
            query.join(Account, ContactAttempt.account_id == Account.id)
            .join(Portfolio, Account.portfolio_id == Portfolio.id)
            .join(Creditor, Portfolio.creditor_id == Creditor.id)
            .where(in_portfolios(within))
        )
    counts = {str(outcome): count for outcome, count in session.execute(query)}
    return AbandonmentRate(
        abandoned=counts.get(CallOutcome.ABANDONED.value, 0),
        answered=sum(counts.values()),
        limit=config.limit,
        window_days=config.window_days,
    )
