"""Loading a creditor's assignment batch into the store: one transaction, idempotent per content.

Rows are applied in chunks: one query finds the chunk's known accounts (with their phones and reported
payments), the rows are applied in file order to that picture, then the chunk's inserts and updates go out
as a few ``executemany`` statements. Nothing of a batch is kept beyond the chunk being applied (except the
quarantined rows for the report), so memory stays flat however long the file is.
"""

from __future__ import annotations

import gc
import itertools
import logging
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any

import phonenumbers
from sqlalchemy import Connection, bindparam, delete, insert, select, text, update
from sqlalchemy.orm import InstrumentedAttribute, Session

from cartera.contact.compliance.calendar import check_address_zone, check_region, check_zone
from cartera.contact.phones import InvalidPhone
from cartera.core.audit import audit
from cartera.core.clock import Clock
from cartera.core.hooks import Hooks
from cartera.core.logs import event
from cartera.core.models import (
    Activity,
    ActivityKind,
    AssignmentAction,
    AssignmentBatch,
    AssignmentRow,
    DeliveryScope,
    FileRejected,
    RowError,
)
from cartera.core.store.database import Database
from cartera.core.store.schema import (
    Account,
    ActivityRow,
    Base,
    Creditor,
    Debtor,
    ImportBatch,
    Phone,
    Portfolio,
    QuarantinedRow,
    ReportedPayment,
)
from cartera.portfolio.files.phones import PhoneNormalizer
from cartera.portfolio.files.values import control_problem
from cartera.portfolio.identity import code_problem

log = logging.getLogger("cartera.assignments")

CHUNK_ROWS = 5000
CENT = Decimal("0.01")


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
    read_as: str | None = None  #: the file's encoding and delimiter, when it is a file
    portfolios: set[str] = field(default_factory=set)  #: ``CREDITOR/PORTFOLIO`` of the rows applied

    def portfolio_names(self) -> list[str]:
        return sorted(self.portfolios)

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
        names = self.portfolio_names()
        into = f"; portfolio{'s' if len(names) > 1 else ''} {', '.join(names)}" if names else ""
        return f"{self.source}: {counts}{into}" + (f" (read as {self.read_as})" if self.read_as else "")


@dataclass(slots=True)
class _Account:
    """One account as the chunk being applied sees it; ``id is None`` until a new one is inserted."""

    id: int | None
    portfolio: _PortfolioKey
    ref: str
    debtor_id: int | None
    name: str
    region: str | None
    timezone: str | None
    balance: Decimal
    currency: str
    status: str
    phones: list[str]
    phone_ids: dict[str, int] = field(default_factory=dict)
    payment_keys: set[str] = field(default_factory=set)
    dirty: bool = False
    phones_changed: bool = False


@dataclass(slots=True)
class _Payment:
    account: _Account
    row: AssignmentRow
    amount: Decimal
    key: str | None


class AssignmentImporter:
    """Applies batches: new and updated accounts, withdrawals, payments; bad rows quarantined.

    The whole batch is one transaction: a :class:`cartera.core.models.FileRejected` raised while iterating loads
    nothing. A batch whose content was imported before changes nothing (its report lists the rows quarantined
    then). Rows are idempotent too: an account assigned again unchanged counts as ``unchanged``, a withdrawal
    of a withdrawn account changes nothing, and a payment reported again (same payment reference, or same day
    and amount) is not applied twice.
    """

    def __init__(
        self,
        site: str,
        default_country: str,
        db: Database,
        clock: Clock,
        hooks: Hooks,
        *,
        law_country: Callable[[str, str], str | None] | None = None,
        max_rows: int | None = None,
    ) -> None:
        self.site = site
        self.default_country = default_country
        self.db = db
        self.clock = clock
        self.hooks = hooks
        #: the country of the law pack a portfolio (``CREDITOR/PORTFOLIO``, its country) is held to: a debtor's
        #: address zone must be one of the portfolio's country or of this one's
        self.law_country = law_country
        #: a batch of more rows is refused whole (:class:`FileRejected`), so one delivery cannot hold the store
        self.max_rows = max_rows
        self._phones: dict[str, PhoneNormalizer] = {}
        self._places: dict[
            tuple[str | None, str | None, tuple[str, ...]], tuple[str | None, str | None] | RowError
        ] = {}
        self._countries: dict[int, tuple[str, ...]] = {}

    def import_batch(self, batch: AssignmentBatch, actor: str, scope: DeliveryScope | None = None) -> ImportReport:
        """Apply ``batch``; with ``scope`` (the crm_sync adapter's :meth:`cartera.core.adapters.CrmSync.delivers`), a
        row for another creditor or portfolio rejects the batch whole (:class:`FileRejected`, nothing loaded)."""
        report = ImportReport(batch.source, batch.content_sha256, read_as=batch.read_as)
        now = self.clock.now()
        recorded: list[Activity] = []
        with self.db.session() as session:
            known = session.scalar(
                select(ImportBatch.id).where(
                    ImportBatch.site == self.site, ImportBatch.content_sha256 == batch.content_sha256
                )
            )
            if known is not None:
                report.already_imported = True
                report.quarantined = _quarantined(session, known)
                return report
            if session.get_bind().dialect.name == "postgresql":
                # The planner's statistics do not count the rows this transaction inserts: without this, the
                # per-chunk lookups by key would scan the tables a long import keeps growing.
                session.execute(text("SET LOCAL enable_seqscan = off"))
            batch_row = ImportBatch(
                site=self.site, source=batch.source, content_sha256=batch.content_sha256, imported_at=now, counts={}
            )
            session.add(batch_row)
            session.flush()
            chunk = _Chunk(self, session, batch_row.id, now, report)
            items = iter(batch.items) if scope is None else _within(batch.source, batch.items, scope)
            if self.max_rows is not None:
                items = _at_most(batch.source, items, self.max_rows)
            while (applied := _apply_next_chunk(chunk, items)) is not None:
                recorded.extend(applied)
            batch_row.counts = report.counts()
            audit(
                session,
                at=now,
                site=self.site,
                actor=actor,
                action="assignments.import",
                subject=batch.source,
                sha256=batch.content_sha256,
                portfolios=report.portfolio_names(),
                **report.counts(),
            )
        for activity in recorded:
            self.hooks.activity_recorded(self.site, activity)
        event(
            log,
            "assignments.imported",
            source=batch.source,
            read_as=batch.read_as,
            portfolios=report.portfolio_names(),
            **report.counts(),
        )
        return report

    def portfolio_country(self, creditor: str, portfolio: str) -> str:
        """The country a new portfolio gets (its law pack, how its national numbers read): the country of the law
        the site holds it to (``compliance.portfolios`` in sites.toml, else the site's), else the site's; never
        a creditor row's, so a creditor does not choose the law its debtors are contacted under."""
        law = self.law_country(f"{creditor}/{portfolio}", self.default_country) if self.law_country else None
        return law or self.default_country

    def phones(self, country: str) -> PhoneNormalizer:
        normalizer = self._phones.get(country)
        if normalizer is None:
            normalizer = self._phones[country] = PhoneNormalizer(country)
        return normalizer

    def countries(self, portfolio: _PortfolioKey) -> tuple[str, ...]:
        """The countries whose zones a debtor of ``portfolio`` may be in: its own, and its law pack's."""
        found = self._countries.get(portfolio.id)
        if found is None:
            law = (
                self.law_country(f"{portfolio.creditor}/{portfolio.code}", portfolio.country)
                if self.law_country
                else None
            )
            found = self._countries[portfolio.id] = tuple(sorted({portfolio.country, law or portfolio.country}))
        return found

    def place(self, row: AssignmentRow, countries: tuple[str, ...]) -> tuple[str | None, str | None] | RowError:
        """The row's checked (region, time zone), or the error of the first bad one (cached per value pair): the
        zone must be a real one of ``countries`` (and of the region's country), never ``posixrules``..."""
        key = (row.region, row.timezone, countries)
        found = self._places.get(key)
        if found is None:
            try:
                region = check_region(row.region)
            except ValueError as exc:
                found = RowError(0, "region", str(exc))
            else:
                try:
                    found = (region, check_address_zone(check_zone(row.timezone), countries, region))
                except ValueError as exc:
                    found = RowError(0, "timezone", str(exc))
            self._places[key] = found
        return found


def _within(
    source: str, items: Iterable[AssignmentRow | RowError], scope: DeliveryScope
) -> Iterator[AssignmentRow | RowError]:
    """``items``, raising :class:`FileRejected` at the first row outside ``scope`` (its line and field named)."""
    for item in items:
        if isinstance(item, AssignmentRow):
            refusal = scope.refusal(item.creditor, item.portfolio)
            if refusal is not None:
                raise FileRejected(source, f"line {item.line}: {refusal[0]}: {refusal[1]}")
        yield item


def _at_most(source: str, items: Iterator[AssignmentRow | RowError], limit: int) -> Iterator[AssignmentRow | RowError]:
    """``items``, raising :class:`FileRejected` at the first past ``limit`` (the batch's transaction rolls back)."""
    for count, item in enumerate(items, 1):
        if count > limit:
            raise FileRejected(source, f"more than {limit} rows ([sync] max_delivery_rows): split the delivery")
        yield item


def _apply_next_chunk(chunk: _Chunk, items: Iterator[AssignmentRow | RowError]) -> list[Activity] | None:
    """Read and apply the next :data:`CHUNK_ROWS` items (``None`` at the end), the cyclic collector paused."""
    with _collector_paused():
        rows = tuple(itertools.islice(items, CHUNK_ROWS))
        return chunk.apply(rows) if rows else None


@contextmanager
def _collector_paused() -> Iterator[None]:
    """Pause CPython's cyclic garbage collector for one chunk.

    A chunk allocates tens of thousands of objects that live until it is applied and form no cycles: the
    collector would scan them, and the process's whole heap, again and again (over a quarter of the import's time).
    Reference counting still frees them; the collector resumes between chunks, when they are gone.
    """
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def _quarantined(session: Session, batch_id: int) -> list[RowError]:
    rows = session.execute(
        select(QuarantinedRow.line, QuarantinedRow.field, QuarantinedRow.reason)
        .where(QuarantinedRow.batch_id == batch_id)
        .order_by(QuarantinedRow.id)
    ).all()
    return [RowError(line, name, reason) for line, name, reason in rows]


def _identified(item: AssignmentRow | RowError) -> AssignmentRow | RowError:
    """The row, or its error when its creditor, portfolio or account ref breaks
    :data:`cartera.portfolio.identity.CODE_PATTERN`
    (what searches and references accept), or its free text (name, currency, payment ref) holds a control
    character, bidi override or invisible format character (:func:`cartera.portfolio.files.values.control_problem`),
    or its ``country`` (how its phones read) is no country phonenumbers knows: every import path gets all three."""
    if isinstance(item, RowError):
        return item
    for name, value in (("creditor", item.creditor), ("portfolio", item.portfolio), ("account_ref", item.account_ref)):
        problem = code_problem(value)
        if problem is not None:
            return RowError(item.line, name, problem)
    free_text = (("debtor_name", item.debtor_name), ("currency", item.currency), ("payment_ref", item.payment_ref))
    for name, text_value in free_text:
        problem = control_problem(text_value) if text_value else None
        if problem is not None:
            return RowError(item.line, name, problem)
    if item.country is not None and item.country not in phonenumbers.SUPPORTED_REGIONS:
        return RowError(item.line, "country", f"unknown country {item.country!r} (use an ISO 3166 code like CO)")
    return item


def _payment_key(row: AssignmentRow, amount: Decimal) -> str | None:
    if row.payment_ref:
        return f"ref:{row.payment_ref}"[:128]
    if row.paid_on is not None:
        return f"day:{row.paid_on.isoformat()}:{amount}"
    return None


class _Chunk:
    """Applies one chunk of a batch's items after another, inside the batch's transaction."""

    def __init__(
        self, importer: AssignmentImporter, session: Session, batch_id: int, now: datetime, report: ImportReport
    ) -> None:
        self.importer, self.session, self.batch_id, self.now, self.report = importer, session, batch_id, now, report
        self.portfolios = _PortfolioCache(session, importer.site, importer.portfolio_country)

    def apply(self, items: Sequence[AssignmentRow | RowError]) -> list[Activity]:
        items = [_identified(item) for item in items]
        rows = [item for item in items if isinstance(item, AssignmentRow)]
        accounts = self._known(rows)
        errors: list[RowError] = []
        created: list[_Account] = []
        payments: list[_Payment] = []
        for item in items:
            error = item if isinstance(item, RowError) else self._apply(item, accounts, created, payments)
            if error is not None:
                errors.append(error)
            elif isinstance(item, AssignmentRow):
                self.report.portfolios.add(f"{item.creditor}/{item.portfolio}")
        connection = self.session.connection()
        self._insert_accounts(connection, created)
        self._update_accounts(connection, [a for a in accounts.values() if a.dirty and a.id is not None])
        recorded = self._record_payments(connection, payments)
        if errors:
            self.report.quarantined.extend(errors)
            connection.execute(
                insert(QuarantinedRow),
                [{"batch_id": self.batch_id, "line": e.line, "field": e.field, "reason": e.reason} for e in errors],
            )
        return recorded

    def _known(self, rows: Iterable[AssignmentRow]) -> dict[tuple[int, str], _Account]:
        """The chunk's accounts already in the store, with their phones and payment keys."""
        wanted: dict[int, set[str]] = {}
        portfolios: dict[int, _PortfolioKey] = {}
        for row in rows:
            portfolio = self.portfolios.get(row.creditor, row.portfolio)
            portfolios[portfolio.id] = portfolio
            wanted.setdefault(portfolio.id, set()).add(row.account_ref)
        accounts: dict[tuple[int, str], _Account] = {}
        refs = {ref for wanted_refs in wanted.values() for ref in wanted_refs}
        # By ref alone, filtered here: one index fits, whatever the planner believes (see import_batch).
        connection = self.session.connection()
        money = _result_processor(connection, Account.balance)
        for account_id, portfolio_id, ref, debtor_id, balance, currency, status in _accounts_by_ref(connection, refs):
            if ref in wanted.get(portfolio_id, ()):
                accounts[(portfolio_id, ref)] = _Account(
                    account_id,
                    portfolios[portfolio_id],
                    ref,
                    debtor_id,
                    "",
                    None,
                    None,
                    money(balance),
                    currency,
                    status,
                    [],
                )
        if accounts:
            by_debtor = {account.debtor_id: account for account in accounts.values()}
            by_id = {account.id: account for account in accounts.values()}
            for debtor_id, name, region, zone in self.session.execute(
                select(Debtor.id, Debtor.name, Debtor.region, Debtor.timezone).where(Debtor.id.in_(by_debtor))
            ):
                by_debtor[debtor_id].name, by_debtor[debtor_id].region, by_debtor[debtor_id].timezone = (
                    name,
                    region,
                    zone,
                )
            for phone_id, debtor_id, e164 in self.session.execute(
                select(Phone.id, Phone.debtor_id, Phone.e164)
                .where(Phone.debtor_id.in_(by_debtor))
                .order_by(Phone.debtor_id, Phone.position, Phone.id)
            ):
                by_debtor[debtor_id].phones.append(e164)
                by_debtor[debtor_id].phone_ids[e164] = phone_id
            for account_id, key in self.session.execute(
                select(ReportedPayment.account_id, ReportedPayment.key).where(ReportedPayment.account_id.in_(by_id))
            ):
                if key is not None:
                    by_id[account_id].payment_keys.add(key)
        return accounts

    def _apply(
        self,
        row: AssignmentRow,
        accounts: dict[tuple[int, str], _Account],
        created: list[_Account],
        payments: list[_Payment],
    ) -> RowError | None:
        portfolio = self.portfolios.get(row.creditor, row.portfolio)
        account = accounts.get((portfolio.id, row.account_ref))
        report = self.report
        if row.action is AssignmentAction.WITHDRAW:
            if account is None:
                return RowError(row.line, "account_ref", f"withdrawal of unknown account {row.account_ref!r}")
            if account.status == "withdrawn":
                report.unchanged += 1
            else:
                account.status, account.dirty = "withdrawn", True
                report.withdrawn += 1
            return None
        if row.action is AssignmentAction.PAYMENT:
            if account is None or row.payment_amount is None:
                return RowError(row.line, "account_ref", f"payment for unknown account {row.account_ref!r}")
            amount = row.payment_amount.quantize(CENT)
            key = _payment_key(row, amount)
            if key is not None and key in account.payment_keys:
                report.unchanged += 1
                return None
            if key is not None:
                account.payment_keys.add(key)
            account.balance -= amount
            if account.balance <= 0:
                account.status = "paid"
            account.dirty = True
            payments.append(_Payment(account, row, amount, key))
            report.payments += 1
            return None
        if account is None and row.action is AssignmentAction.UPDATE:
            return RowError(row.line, "account_ref", f"update of unknown account {row.account_ref!r}")
        normalize = self.importer.phones(row.country or portfolio.country)
        phones: list[str] = []
        for position, raw in enumerate(row.phones, 1):
            try:
                e164 = normalize(raw)
            except InvalidPhone as exc:
                return RowError(row.line, f"phone{position}", str(exc))
            if e164 not in phones:
                phones.append(e164)
        if not phones:
            return RowError(row.line, "phones", "no phone number")
        place = self.importer.place(row, self.importer.countries(portfolio))
        if isinstance(place, RowError):
            return RowError(row.line, place.field, place.reason)
        region, zone = place
        balance = row.balance.quantize(CENT)
        if account is None:
            account = _Account(
                None,
                portfolio,
                row.account_ref,
                None,
                row.debtor_name,
                region,
                zone,
                balance,
                row.currency,
                "active",
                phones,
            )
            accounts[(portfolio.id, row.account_ref)] = account
            created.append(account)
            report.new += 1
            return None
        wanted = (row.debtor_name, region, zone, balance, row.currency, "active", phones)
        if (
            account.name,
            account.region,
            account.timezone,
            account.balance,
            account.currency,
            account.status,
            account.phones,
        ) == wanted:
            report.unchanged += 1
            return None
        account.phones_changed = account.phones_changed or account.phones != phones
        account.name, account.region, account.timezone, account.balance, account.currency, account.status = wanted[:6]
        account.phones = phones
        account.dirty = True
        report.updated += 1
        return None

    def _insert_accounts(self, connection: Connection, created: list[_Account]) -> None:
        if not created:
            return
        debtor_ids = _allocate_ids(connection, Debtor.__tablename__, len(created))
        account_ids = _allocate_ids(connection, Account.__tablename__, len(created))
        for account, debtor_id, account_id in zip(created, debtor_ids, account_ids, strict=True):
            account.id, account.debtor_id = account_id, debtor_id
            account.dirty = account.phones_changed = False  # inserted as it is now
        stamp, money = _processor(connection, Account.updated_at)(self.now), _processor(connection, Account.balance)
        _insert_rows(
            connection,
            Debtor,
            ("id", "name", "region", "timezone"),
            [(a.debtor_id, a.name, a.region, a.timezone) for a in created],
        )
        _insert_rows(
            connection,
            Account,
            ("id", "portfolio_id", "ref", "debtor_id", "balance", "currency", "status", "updated_at"),
            [
                (
                    a.id,
                    a.portfolio.id,
                    a.ref,
                    a.debtor_id,
                    money(a.balance),
                    a.currency,
                    a.status,
                    stamp,
                )
                for a in created
            ],
        )
        _insert_rows(
            connection,
            Phone,
            ("debtor_id", "e164", "position", "do_not_call", "do_not_text", "invalid"),
            [
                (a.debtor_id, e164, position, False, False, False)
                for a in created
                for position, e164 in enumerate(a.phones)
            ],
        )

    def _update_accounts(self, connection: Connection, changed: list[_Account]) -> None:
        """Write the changed accounts back; an account no longer active is not due for contact any more."""
        if not changed:
            return
        connection.execute(
            update(Account)
            .where(Account.id == bindparam("account_id"))
            .values(
                balance=bindparam("balance"),
                currency=bindparam("currency"),
                status=bindparam("status"),
                updated_at=bindparam("updated_at"),
            ),
            [
                {
                    "account_id": a.id,
                    "balance": a.balance,
                    "currency": a.currency,
                    "status": a.status,
                    "updated_at": self.now,
                }
                for a in changed
            ],
        )
        closed = [{"account_id": a.id} for a in changed if a.status != "active"]
        if closed:
            connection.execute(
                update(Account).where(Account.id == bindparam("account_id")).values(next_contact_at=None), closed
            )
        connection.execute(
            update(Debtor)
            .where(Debtor.id == bindparam("debtor_id"))
            .values(name=bindparam("name"), region=bindparam("region"), timezone=bindparam("timezone")),
            [{"debtor_id": a.debtor_id, "name": a.name, "region": a.region, "timezone": a.timezone} for a in changed],
        )
        self._replace_phones(connection, [a for a in changed if a.phones_changed])

    def _replace_phones(self, connection: Connection, changed: list[_Account]) -> None:
        """New phone lists: kept numbers keep their row (and do-not-contact flags), in the new order."""
        stale = [{"phone_id": i} for a in changed for e164, i in a.phone_ids.items() if e164 not in a.phones]
        kept = [
            {"phone_id": a.phone_ids[e164], "position": position}
            for a in changed
            for position, e164 in enumerate(a.phones)
            if e164 in a.phone_ids
        ]
        added = [
            {"debtor_id": a.debtor_id, "e164": e164, "position": position, **_PHONE_FLAGS}
            for a in changed
            for position, e164 in enumerate(a.phones)
            if e164 not in a.phone_ids
        ]
        if stale:
            connection.execute(delete(Phone).where(Phone.id == bindparam("phone_id")), stale)
        if kept:
            connection.execute(
                update(Phone).where(Phone.id == bindparam("phone_id")).values(position=bindparam("position")), kept
            )
        if added:
            connection.execute(insert(Phone), added)

    def _record_payments(self, connection: Connection, payments: list[_Payment]) -> list[Activity]:
        """A ``payment`` activity for the creditor's export (and the KPIs) and the payment's key, per payment."""
        if not payments:
            return []
        connection.execute(
            insert(ReportedPayment),
            [
                {
                    "account_id": p.account.id,
                    "key": p.key,
                    "batch_id": self.batch_id,
                    "amount": p.amount,
                    "paid_on": p.row.paid_on,
                }
                for p in payments
            ],
        )
        seqs = connection.scalars(
            insert(ActivityRow).returning(ActivityRow.seq, sort_by_parameter_order=True),
            [
                {
                    "site": self.importer.site,
                    "kind": ActivityKind.PAYMENT.value,
                    "at": self.now,
                    "account_id": p.account.id,
                    "phone": None,
                    "outcome": p.row.payment_ref,
                    "amount": p.amount,
                    "due_date": None,
                    "agent": None,
                }
                for p in payments
            ],
        ).all()
        return [
            Activity(
                seq=seq,
                kind=ActivityKind.PAYMENT,
                at=self.now,
                creditor=p.account.portfolio.creditor,
                portfolio=p.account.portfolio.code,
                account_ref=p.account.ref,
                outcome=p.row.payment_ref,
                amount=p.amount,
            )
            for p, seq in zip(payments, seqs, strict=True)
        ]


_PHONE_FLAGS = {"do_not_call": False, "do_not_text": False, "invalid": False}


def _insert_rows(
    connection: Connection, entity: type[Base], columns: tuple[str, ...], rows: list[tuple[Any, ...]]
) -> None:
    """``rows`` (values already as the driver takes them) inserted the fastest way the database has, inside
    the batch's transaction: ``COPY`` on PostgreSQL, one ``executemany`` elsewhere. The import's hot path."""
    table, names = entity.__tablename__, ", ".join(columns)
    if connection.dialect.name == "postgresql":
        driver = connection.connection.driver_connection  # psycopg 3
        assert driver is not None, "an open connection has a driver connection"
        with driver.cursor() as cursor, cursor.copy(f"COPY {table} ({names}) FROM STDIN") as copy:
            for row in rows:
                copy.write_row(row)
        return
    marks = ", ".join([_mark(connection)] * len(columns))
    connection.exec_driver_sql(f"INSERT INTO {table} ({names}) VALUES ({marks})", rows)


def _accounts_by_ref(connection: Connection, refs: set[str]) -> Sequence[Any]:
    """id, portfolio_id, ref, debtor_id, balance (as stored), currency and status of the accounts with these refs.

    One driver-level statement: SQLAlchemy's expansion of a chunk's thousands of ``IN`` parameters costs more
    than the lookup itself. PostgreSQL takes the refs as one array.
    """
    if not refs:
        return []
    columns = "id, portfolio_id, ref, debtor_id, balance, currency, status"
    if connection.dialect.name == "postgresql":
        return connection.exec_driver_sql(f"SELECT {columns} FROM accounts WHERE ref = ANY(%s)", (list(refs),)).all()
    marks = ", ".join([_mark(connection)] * len(refs))
    return connection.exec_driver_sql(f"SELECT {columns} FROM accounts WHERE ref IN ({marks})", tuple(refs)).all()


def _mark(connection: Connection) -> str:
    return "?" if connection.dialect.paramstyle == "qmark" else "%s"


def _result_processor(connection: Connection, column: InstrumentedAttribute[Any]) -> Callable[[Any], Any]:
    """How the column's type reads a value the driver returns (money from cents...)."""
    dialect = connection.dialect
    process = column.type.dialect_impl(dialect).result_processor(dialect, None)
    return process if process is not None else _same


def _processor(connection: Connection, column: InstrumentedAttribute[Any]) -> Callable[[Any], Any]:
    """How the column's type hands a value to the driver (money in cents, UTC datetimes...)."""
    dialect = connection.dialect
    process = column.type.dialect_impl(dialect).bind_processor(dialect)
    return process if process is not None else _same


def _same(value: Any) -> Any:
    return value


def _allocate_ids(connection: Connection, table: str, count: int) -> Sequence[int]:
    """``count`` fresh primary keys of ``table``, so rows go out as one plain ``executemany`` (no RETURNING).

    PostgreSQL: taken from the table's sequence (safe with concurrent writers). SQLite: after the largest
    id, which is safe because the store's transactions begin IMMEDIATE: this one holds the write lock.
    """
    if connection.dialect.name == "postgresql":
        return connection.scalars(
            text("SELECT nextval(pg_get_serial_sequence(:table, 'id')) FROM generate_series(1, :count)"),
            {"table": table, "count": count},
        ).all()
    largest = connection.scalar(text(f"SELECT max(id) FROM {table}")) or 0
    return range(largest + 1, largest + 1 + count)


@dataclass(frozen=True, slots=True)
class _PortfolioKey:
    """What rows need of a portfolio, as plain values (no ORM attribute access per row)."""

    id: int
    creditor: str
    code: str
    country: str


class _PortfolioCache:
    """Creditors by code, and this site's portfolios by (creditor, code), created on first sight with the
    country ``country_of`` gives (see :meth:`AssignmentImporter.portfolio_country`), never a row's. A portfolio
    another site holds in the same store is that site's, not this one's."""

    def __init__(self, session: Session, site: str, country_of: Callable[[str, str], str]) -> None:
        self.session, self.site, self.country_of = session, site, country_of
        self._portfolios: dict[tuple[str, str], _PortfolioKey] = {}

    def get(self, creditor_code: str, portfolio_code: str) -> _PortfolioKey:
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
        found = self._portfolios[(creditor_code, portfolio_code)] = _PortfolioKey(
            portfolio.id, creditor_code, portfolio_code, portfolio.country
        )
        return found
