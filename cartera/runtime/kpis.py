"""What creditors review each month, per site, portfolio and local day, computed from what the store holds."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

from sqlalchemy import ColumnElement, and_, false, or_, select
from sqlalchemy.orm import InstrumentedAttribute

from cartera.core.models import ActivityKind, CallOutcome
from cartera.core.store.database import Database
from cartera.core.store.schema import Account, ActivityRow, ContactAttempt, Creditor, Portfolio
from cartera.portfolio.identity import PortfolioKey, in_portfolios
from cartera.recordings.access import Reach


@dataclass
class DayKpi:
    portfolio: str  #: ``CREDITOR/CODE``
    day: date
    attempts: int = 0
    contacts: int = 0
    right_party: int = 0  #: calls whose disposition says the agent spoke with the debtor
    abandoned: int = 0  #: calls a person answered that no agent took in time
    promises: int = 0
    kept: int = 0
    #: the payments' amounts by currency (ISO 4217 code): never one sum across currencies
    recovered: dict[str, Decimal] = field(default_factory=dict)
    site: str = ""  #: the portfolio's site

    @property
    def contact_rate(self) -> float:
        return self.contacts / self.attempts if self.attempts else 0.0

    @property
    def abandon_rate(self) -> float:
        """Abandoned over answered by a person (connected or abandoned), this day."""
        answered = self.contacts + self.abandoned
        return self.abandoned / answered if answered else 0.0


def daily_kpis(db: Database, sites: Reach, zone: ZoneInfo, *, since: date, until: date) -> list[DayKpi]:
    """KPIs per (site, portfolio, day in ``zone``) for days ``since``..``until`` inclusive, newest first, of the
    ``sites`` each within its portfolios (``None``: all of that site's)."""
    start = datetime.combine(since, time(), zone)
    end = datetime.combine(until + timedelta(days=1), time(), zone)
    rows: dict[tuple[str, date, str], DayKpi] = {}

    def cell(site: str, creditor: str, code: str, at: datetime) -> DayKpi:
        portfolio, day = str(PortfolioKey(creditor, code)), at.astimezone(zone).date()
        return rows.setdefault((portfolio, day, site), DayKpi(portfolio, day, site=site))

    with db.session() as session:
        attempts = (
            select(ContactAttempt.site, Creditor.code, Portfolio.code, ContactAttempt.requested_at)
            .add_columns(ContactAttempt.outcome, ContactAttempt.right_party)
            .join(Account, ContactAttempt.account_id == Account.id)
            .join(Portfolio, Account.portfolio_id == Portfolio.id)
            .join(Creditor, Portfolio.creditor_id == Creditor.id)
            .where(in_reach(ContactAttempt.site, sites), ContactAttempt.state == "finished")
            .where(ContactAttempt.requested_at >= start, ContactAttempt.requested_at < end)
        )
        for site, creditor, code, at, outcome, right_party in session.execute(attempts):
            kpi = cell(site, creditor, code, at)
            kpi.attempts += 1
            kpi.contacts += outcome == CallOutcome.ANSWERED
            kpi.abandoned += outcome == CallOutcome.ABANDONED
            kpi.right_party += right_party is True
        activities = (
            select(ActivityRow.site, Creditor.code, Portfolio.code, ActivityRow.kind, ActivityRow.at)
            .add_columns(ActivityRow.account_id, ActivityRow.amount, ActivityRow.due_date, Account.currency)
            .join(Account, ActivityRow.account_id == Account.id)
            .join(Portfolio, Account.portfolio_id == Portfolio.id)
            .join(Creditor, Portfolio.creditor_id == Creditor.id)
            .where(in_reach(ActivityRow.site, sites), ActivityRow.at >= start)
            .where(ActivityRow.kind.in_((ActivityKind.PROMISE_TO_PAY.value, ActivityKind.PAYMENT.value)))
        )
        found = session.execute(activities).all()
    payments: dict[int, list[datetime]] = defaultdict(list)
    for site, creditor, code, kind, at, account_id, amount, _due, currency in found:
        if kind == ActivityKind.PAYMENT:
            payments[account_id].append(at)
            if at < end:
                recovered = cell(site, creditor, code, at).recovered
                recovered[currency] = recovered.get(currency, Decimal(0)) + (amount or Decimal(0))
    for site, creditor, code, kind, at, account_id, _amount, due, _currency in found:
        if kind == ActivityKind.PROMISE_TO_PAY and at < end:
            kpi = cell(site, creditor, code, at)
            kpi.promises += 1
            deadline = datetime.combine(due + timedelta(days=1), time(), zone) if due else None
            kpi.kept += deadline is not None and any(at <= paid < deadline for paid in payments[account_id])
    return sorted(rows.values(), key=lambda k: (k.day, k.site, k.portfolio), reverse=True)


def in_reach(site: InstrumentedAttribute[str], sites: Reach) -> ColumnElement[bool]:
    """Rows of a site of ``sites`` within its portfolios there; the query joins Creditor and Portfolio."""
    return or_(false(), *(and_(site == name, in_portfolios(within)) for name, within in sites.items()))
