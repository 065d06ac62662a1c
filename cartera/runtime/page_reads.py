"""What the node's pages read of the store: the KPIs, a page of the audit log, the portfolios a viewer sees,
today's counts on the wallboard and the accounts an agent finds; the web reaches the store only through these."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime
from zoneinfo import ZoneInfo

from sqlalchemy import Select, and_, func, or_, select

from cartera.contact.abandonment import AbandonmentRate, abandonment_rate
from cartera.core.clock import Clock
from cartera.core.config import AbandonmentConfig
from cartera.core.models import ActivityKind, CallOutcome
from cartera.core.store.database import Database
from cartera.core.store.schema import Account, ActivityRow, AuditEntry, ContactAttempt, Creditor, Debtor, Portfolio
from cartera.portfolio.identity import PortfolioKey, in_portfolios
from cartera.recordings.access import Reach
from cartera.runtime.kpis import DayKpi, daily_kpis, in_reach


@dataclass(frozen=True)
class TodayCounts:
    """The site's calls and promises since ``midnight`` within some portfolios, and the campaign's abandonment."""

    placing: int  #: calls placed and not ended (ringing or talking)
    contacts: int  #: calls a person answered and an agent took
    abandoned: int  #: calls a person answered that no agent took in time
    promises: int
    abandonment: AbandonmentRate  #: over the campaign's window (not only today), within the portfolios
    talking: int = 0  #: of the calls agents are talking on (``on_call``), those within the portfolios
    ringing: int = 0  #: calls placed and not ended within the portfolios that no agent is talking on


@dataclass(frozen=True)
class FoundAccount:
    """An active account an agent found within its portfolios."""

    id: int
    ref: str
    portfolio: str  #: ``CREDITOR/CODE``
    debtor: str


class PageReads:
    """One site's reads for its pages; ``abandonment`` is the site's campaign's measure of abandoned calls."""

    def __init__(self, site: str, db: Database, clock: Clock, zone: ZoneInfo, abandonment: AbandonmentConfig) -> None:
        self._site, self._db, self._clock, self._zone, self._abandonment = site, db, clock, zone, abandonment

    def kpis(self, sites: Reach, *, since: date, until: date) -> list[DayKpi]:
        """:func:`cartera.runtime.kpis.daily_kpis` of ``sites`` by the site's local days."""
        return daily_kpis(self._db, sites, self._zone, since=since, until=until)

    def audit_page(self, prefixes: Sequence[str], *, offset: int, limit: int) -> list[AuditEntry]:
        """Up to ``limit`` of the site's audit entries whose action starts with one of ``prefixes``, newest first,
        past the first ``offset``."""
        with self._db.session() as session:
            return list(
                session.scalars(
                    select(AuditEntry)
                    .where(AuditEntry.site == self._site, or_(*(AuditEntry.action.startswith(p) for p in prefixes)))
                    .order_by(AuditEntry.id.desc())
                    .limit(limit)
                    .offset(offset)
                ).all()
            )

    def portfolios(self, reach: Reach) -> list[str]:
        """The portfolios of ``reach`` (sites, each within its portfolios) as ``CREDITOR/CODE``, sorted."""
        query = select(Creditor.code, Portfolio.code).join(Portfolio, Portfolio.creditor_id == Creditor.id)
        with self._db.session() as session:
            found = session.execute(query.where(in_reach(Portfolio.site, reach)))
            return sorted({str(PortfolioKey(creditor, code)) for creditor, code in found})

    def today(
        self, within: frozenset[PortfolioKey] | None, midnight: datetime, on_call: Sequence[int] = ()
    ) -> TodayCounts:
        """The wallboard's counts since ``midnight`` within ``within`` (``None``: every portfolio); ``on_call``: the
        attempts agents are talking on now, counted (``talking``) when within ``within`` too."""
        site = self._site
        attempts = _counted(ContactAttempt, within).where(
            ContactAttempt.site == site, ContactAttempt.requested_at >= midnight
        )
        finished = attempts.where(ContactAttempt.state == "finished")
        placing = attempts.where(ContactAttempt.state == "placing")
        talking = _counted(ContactAttempt, within).where(ContactAttempt.site == site, ContactAttempt.id.in_(on_call))
        promises = _counted(ActivityRow, within).where(
            ActivityRow.site == site, ActivityRow.at >= midnight, ActivityRow.kind == ActivityKind.PROMISE_TO_PAY.value
        )
        with self._db.reading() as session:
            placed = session.scalar(placing) or 0
            return TodayCounts(
                placing=placed,
                contacts=session.scalar(finished.where(ContactAttempt.outcome == CallOutcome.ANSWERED)) or 0,
                abandoned=session.scalar(finished.where(ContactAttempt.outcome == CallOutcome.ABANDONED)) or 0,
                promises=session.scalar(promises) or 0,
                abandonment=abandonment_rate(session, site, self._clock.now(), self._abandonment, within),
                talking=(session.scalar(talking) or 0) if on_call else 0,
                ringing=(session.scalar(placing.where(ContactAttempt.id.not_in(on_call))) or 0) if on_call else placed,
            )

    def accounts(
        self, within: frozenset[PortfolioKey] | None, *, ref_prefix: str = "", account_id: int | None = None, limit: int
    ) -> list[FoundAccount]:
        """Up to ``limit`` of the site's active accounts within ``within`` whose reference starts with
        ``ref_prefix`` (and whose id is ``account_id``, when given), by reference."""
        matching = Account.ref.startswith(ref_prefix, autoescape=True)
        if account_id is not None:
            matching = and_(matching, Account.id == account_id)
        with self._db.reading() as session:
            rows = session.execute(
                select(Account.id, Account.ref, Creditor.code, Portfolio.code, Debtor.name)
                .join(Portfolio, Account.portfolio_id == Portfolio.id)
                .join(Creditor, Portfolio.creditor_id == Creditor.id)
                .join(Debtor, Account.debtor_id == Debtor.id)
                .where(Portfolio.site == self._site, Account.status == "active", in_portfolios(within), matching)
                .order_by(Account.ref)
                .limit(limit)
            ).all()
        return [FoundAccount(id_, ref, f"{creditor}/{code}", name) for id_, ref, creditor, code, name in rows]


def _counted(rows: type[ContactAttempt] | type[ActivityRow], within: frozenset[PortfolioKey] | None) -> Select[int]:
    """``SELECT count(*)`` of ``rows`` (each about an account) within the portfolios ``within``."""
    return (
        select(func.count())
        .select_from(rows)
        .join(Account, rows.account_id == Account.id)
        .join(Portfolio, Account.portfolio_id == Portfolio.id)
        .join(Creditor, Portfolio.creditor_id == Creditor.id)
        .where(in_portfolios(within))
    )
