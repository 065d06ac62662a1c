"""Loading a creditor's assignment batch into the store: one transaction, idempotent per content."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session, selectinload

from core.activities import add_activity, to_activity
from core.audit import audit
from core.clock import Clock
from core.compliance.calendar import check_region, check_zone
from core.hooks import Hooks
from core.logs import event
from core.models import ActivityKind, AssignmentAction, AssignmentBatch, AssignmentRow, RowError
from core.phones import InvalidPhone, normalize
from core.store.database import Database
from core.store.schema import (
    Account,
    ActivityRow,
    Creditor,
    Debtor,
    ImportBatch,
    Phone,
    Portfolio,
    QuarantinedRow,
)

log = logging.getLogger("cartera.assignments")


@dataclass
class ImportReport:
    source: str
    content_sha256: str
    new: int = 0
    updated: int = 0
    unchanged: int = 0
    withdrawn: int = 0
    payments: int = 0
    quarantined: list[RowError] = field(default_factory=list)
    already_imported: bool = False

    def counts(self) -> dict[str, int]:
        return {
            "new": self.new,
            "updated": self.updated,
            "unchanged": self.unchanged,
            "withdrawn": self.withdrawn,
            "payments": self.payments,
            "quarantined": len(self.quarantined),
        }

    def summary(self) -> str:
        if self.already_imported:
            return f"{self.source}: already imported (sha256 {self.content_sha256[:12]}), nothing changed"
        counts = ", ".join(f"{value} {key}" for key, value in self.counts().items())
        return f"{self.source}: {counts}"


class AssignmentImporter:
    """Applies batches: new and updated accounts, withdrawals, payments; bad rows quarantined.

    The whole batch is one transaction: a :class:`core.models.FileRejected` raised while iterating loads
    nothing. A batch whose content was imported before changes nothing.
    """

    def __init__(self, site: str, default_country: str, db: Database, clock: Clock, hooks: Hooks) -> None:
        self.site = site
        self.default_country = default_country
        self.db = db
        self.clock = clock
        self.hooks = hooks

    def import_batch(self, batch: AssignmentBatch, actor: str) -> ImportReport:
        report = ImportReport(batch.source, batch.content_sha256)
        now = self.clock.now()
        activities: list[ActivityRow] = []
        with self.db.session() as session:
            known = session.scalar(
                select(ImportBatch.id).where(
                    ImportBatch.site == self.site, ImportBatch.content_sha256 == batch.content_sha256
                )
            )
            if known is not None:
                report.already_imported = True
                return report
            batch_row = ImportBatch(
                site=self.site,
                source=batch.source,
                content_sha256=batch.content_sha256,
                imported_at=now,
                counts={},
            )
            session.add(batch_row)
            session.flush()
            portfolios = _PortfolioCache(session, self.site, self.default_country)
            for item in batch.items:
                error = (
                    item
                    if isinstance(item, RowError)
                    else self._apply(
                        session, row=item, portfolios=portfolios, now=now, report=report, add=activities.append
                    )
                )
                if error is not None:
                    report.quarantined.append(error)
                    session.add(
                        QuarantinedRow(batch_id=batch_row.id, line=error.line, field=error.field, reason=error.reason)
                    )
            batch_row.counts = report.counts()
            audit(
                session,
                at=now,
                site=self.site,
                actor=actor,
                action="assignments.import",
                subject=batch.source,
                sha256=batch.content_sha256,
                **report.counts(),
            )
            session.flush()
            done = [to_activity(row) for row in activities]
        for activity in done:
            self.hooks.activity_recorded(self.site, activity)
        event(log, "assignments.imported", source=batch.source, **report.counts())
        return report

    def _apply(
        self,
        session: Session,
        *,
        row: AssignmentRow,
        portfolios: _PortfolioCache,
        now: datetime,
        report: ImportReport,
        add: Callable[[ActivityRow], None],
    ) -> RowError | None:
        portfolio = portfolios.get(row.creditor, row.portfolio, row.country)
        account = session.scalar(
            select(Account)
            .where(Account.portfolio_id == portfolio.id, Account.ref == row.account_ref)
            .options(selectinload(Account.debtor).selectinload(Debtor.phones))
        )
        if row.action is AssignmentAction.WITHDRAW:
            if account is None:
                return RowError(row.line, "account_ref", f"withdrawal of unknown account {row.account_ref!r}")
            account.status, account.next_contact_at, account.updated_at = "withdrawn", None, now
            report.withdrawn += 1
            return None
        if row.action is AssignmentAction.PAYMENT:
            if account is None or row.payment_amount is None:
                return RowError(row.line, "account_ref", f"payment for unknown account {row.account_ref!r}")
            account.balance -= row.payment_amount
            if account.balance <= 0:
                account.status, account.next_contact_at = "paid", None
            account.updated_at = now
            add(
                add_activity(
                    session,
                    site=self.site,
                    kind=ActivityKind.PAYMENT,
                    at=now,
                    account=account,
                    amount=row.payment_amount,
                )
            )
            report.payments += 1
            return None
        phones: list[str] = []
        for position, raw in enumerate(row.phones, 1):
            try:
                phones.append(normalize(raw, row.country or portfolio.country))
            except InvalidPhone as exc:
                return RowError(row.line, f"phone{position}", str(exc))
        if not phones:
            return RowError(row.line, "phones", "no phone number")
        try:
            region = check_region(row.region)
        except ValueError as exc:
            return RowError(row.line, "region", str(exc))
        try:
            zone = check_zone(row.timezone)
        except ValueError as exc:
            return RowError(row.line, "timezone", str(exc))
        if account is None:
            debtor = Debtor(name=row.debtor_name, region=region, timezone=zone)
            debtor.phones = [Phone(e164=e164, position=i) for i, e164 in enumerate(dict.fromkeys(phones))]
            session.add(
                Account(
                    portfolio=portfolio,
                    ref=row.account_ref,
                    debtor=debtor,
                    balance=row.balance,
                    currency=row.currency,
                    status="active",
                    updated_at=now,
                )
            )
            report.new += 1
            return None
        if _changed(account, row, phones, (region, zone)):
            account.balance, account.currency, account.status, account.updated_at = (
                row.balance,
                row.currency,
                "active",
                now,
            )
            account.debtor.name, account.debtor.region, account.debtor.timezone = row.debtor_name, region, zone
            existing = {phone.e164: phone for phone in account.debtor.phones}
            for position, e164 in enumerate(dict.fromkeys(phones)):
                phone = existing.pop(e164, None) or Phone(e164=e164)
                phone.position = position
                if phone not in account.debtor.phones:
                    account.debtor.phones.append(phone)
            for stale in existing.values():
                account.debtor.phones.remove(stale)
                session.delete(stale)
            report.updated += 1
        else:
            report.unchanged += 1
        return None


def _changed(account: Account, row: AssignmentRow, phones: list[str], place: tuple[str | None, str | None]) -> bool:
    return (
        (account.debtor.region, account.debtor.timezone) != place
        or account.balance != row.balance
        or account.currency != row.currency
        or account.status != "active"
        or account.debtor.name != row.debtor_name
        or [phone.e164 for phone in account.debtor.phones] != list(dict.fromkeys(phones))
    )


class _PortfolioCache:
    """Creditors and portfolios by code, created on first sight for this site."""

    def __init__(self, session: Session, site: str, default_country: str) -> None:
        self.session, self.site, self.default_country = session, site, default_country
        self._portfolios: dict[tuple[str, str], Portfolio] = {}

    def get(self, creditor_code: str, portfolio_code: str, country: str | None) -> Portfolio:
        key = (creditor_code, portfolio_code)
        if key in self._portfolios:
            return self._portfolios[key]
        creditor = self.session.scalar(select(Creditor).where(Creditor.code == creditor_code))
        if creditor is None:
            creditor = Creditor(code=creditor_code)
            self.session.add(creditor)
            self.session.flush()
        portfolio = self.session.scalar(
            select(Portfolio).where(Portfolio.creditor_id == creditor.id, Portfolio.code == portfolio_code)
        )
        if portfolio is None:
            portfolio = Portfolio(
                creditor=creditor,
                code=portfolio_code,
                site=self.site,
                country=country or self.default_country,
            )
            self.session.add(portfolio)
            self.session.flush()
        self._portfolios[key] = portfolio
        return portfolio
