"""A chunk's picture of its accounts: the portfolios its rows name, what the store holds of the accounts they
name (one read per chunk), and what the rows change, as plain values (no ORM attribute access per row)."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal

from sqlalchemy import select
from sqlalchemy.orm import Session

from cartera.core.models import AssignmentRow
from cartera.core.store.schema import Account, Creditor, Debtor, Phone, Portfolio, ReportedPayment
from cartera.portfolio.bulk_sql import accounts_by_ref, result_processor


@dataclass(frozen=True, slots=True)
class PortfolioInfo:
    """What rows need of a portfolio."""

    id: int
    creditor: str
    code: str
    country: str


@dataclass(slots=True)
class AccountState:
    """One account as the chunk being applied sees it; ``id is None`` until a new one is inserted."""

    id: int | None
    portfolio: PortfolioInfo
    ref: str
    debtor_id: int | None
    name: str
    region: str | None
    timezone: str | None
    balance: Decimal
    currency: str
    status: str
    phones: list[str]
    due_on: date | None = None
    risk_score: float | None = None
    phone_ids: dict[str, int] = field(default_factory=dict)
    payment_keys: set[str] = field(default_factory=set)
    dirty: bool = False
    phones_changed: bool = False


@dataclass(slots=True)
class Payment:
    account: AccountState
    row: AssignmentRow
    amount: Decimal
    key: str | None


@dataclass
class ChunkState:
    """The chunk's accounts by (portfolio id, ref) as its rows leave them, those it creates, its payments."""

    accounts: dict[tuple[int, str], AccountState]
    created: list[AccountState] = field(default_factory=list)
    payments: list[Payment] = field(default_factory=list)
    #: payments without a reference met so far in the batch (every chunk's), by (portfolio id, ref, day and amount)
    unreferenced: dict[tuple[int, str, str], int] = field(default_factory=dict)

    def changed(self) -> list[AccountState]:
        """The accounts the store held that the rows changed."""
        return [account for account in self.accounts.values() if account.dirty and account.id is not None]


class Portfolios:
    """Creditors by code, and this site's portfolios by (creditor, code), created on first sight with the
    country ``country_of`` gives (see :meth:`AssignmentImporter.portfolio_country`), never a row's. A portfolio
    another site holds in the same store is that site's, not this one's."""

    def __init__(self, session: Session, site: str, country_of: Callable[[str, str], str]) -> None:
        self.session, self.site, self.country_of = session, site, country_of
        self._portfolios: dict[tuple[str, str], PortfolioInfo] = {}

    def get(self, creditor_code: str, portfolio_code: str) -> PortfolioInfo:
        known = self._portfolios.get((creditor_code, portfolio_code))
        if known is not None:
            return known
        creditor = self.session.scalar(select(Creditor).where(Creditor.code == creditor_code))
        if creditor is None:
            creditor = Creditor(code=creditor_code)
            self.session.add(creditor)
            self.session.flush()
        portfolio = self.session.scalar(
            select(Portfolio).where(
                Portfolio.site == self.site, Portfolio.creditor_id == creditor.id, Portfolio.code == portfolio_code
            )
        )
        if portfolio is None:
            portfolio = Portfolio(
                creditor=creditor,
                code=portfolio_code,
                site=self.site,
                country=self.country_of(creditor_code, portfolio_code),
            )
            self.session.add(portfolio)
            self.session.flush()
        found = self._portfolios[(creditor_code, portfolio_code)] = PortfolioInfo(
            portfolio.id, creditor_code, portfolio_code, portfolio.country
        )
        return found


def known_accounts(session: Session, portfolios: Portfolios, rows: Iterable[AssignmentRow]) -> ChunkState:
    """The chunk's accounts already in the store, with their phones and payment keys."""
    wanted: dict[int, set[str]] = {}
    by_portfolio: dict[int, PortfolioInfo] = {}
    for row in rows:
        portfolio = portfolios.get(row.creditor, row.portfolio)
        by_portfolio[portfolio.id] = portfolio
        wanted.setdefault(portfolio.id, set()).add(row.account_ref)
    accounts: dict[tuple[int, str], AccountState] = {}
    refs = {ref for wanted_refs in wanted.values() for ref in wanted_refs}
    # By ref alone, filtered here: one index fits, whatever the planner believes (see import_batch).
    connection = session.connection()
    money, day = result_processor(connection, Account.balance), result_processor(connection, Account.due_on)
    for account_id, portfolio_id, ref, debtor_id, balance, currency, status, due_on, score in accounts_by_ref(
        connection, refs
    ):
        if ref in wanted.get(portfolio_id, ()):
            accounts[(portfolio_id, ref)] = AccountState(
                account_id,
                by_portfolio[portfolio_id],
                ref,
                debtor_id,
                "",
                None,
                None,
                money(balance),
                currency,
                status,
                [],
                day(due_on),
                score,
            )
    if accounts:
        _complete(session, accounts)
    return ChunkState(accounts)


def _complete(session: Session, accounts: dict[tuple[int, str], AccountState]) -> None:
    """The known accounts' debtors (name, region, zone), phones in order, and reported payments' keys."""
    by_debtor = {account.debtor_id: account for account in accounts.values()}
    by_id = {account.id: account for account in accounts.values()}
    for debtor_id, name, region, zone in session.execute(
        select(Debtor.id, Debtor.name, Debtor.region, Debtor.timezone).where(Debtor.id.in_(by_debtor))
    ):
        by_debtor[debtor_id].name, by_debtor[debtor_id].region, by_debtor[debtor_id].timezone = name, region, zone
    for phone_id, debtor_id, e164 in session.execute(
        select(Phone.id, Phone.debtor_id, Phone.e164)
        .where(Phone.debtor_id.in_(by_debtor))
        .order_by(Phone.debtor_id, Phone.position, Phone.id)
    ):
        by_debtor[debtor_id].phones.append(e164)
        by_debtor[debtor_id].phone_ids[e164] = phone_id
    for account_id, key in session.execute(
        select(ReportedPayment.account_id, ReportedPayment.key).where(ReportedPayment.account_id.in_(by_id))
    ):
        if key is not None:
            by_id[account_id].payment_keys.add(key)
