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
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, tzinfo

from sqlalchemy import select, text, update
from sqlalchemy.orm import Session

from cartera.core.audit import audit
from cartera.core.clock import Clock
from cartera.core.hooks import Hooks
from cartera.core.logs import event
from cartera.core.models import (
    Activity,
    AssignmentAction,
    AssignmentBatch,
    AssignmentRow,
    DeliveryScope,
    FileRejected,
    RowError,
)
from cartera.core.store.database import Database
from cartera.core.store.schema import AuditEntry, ImportBatch, QuarantinedRow
from cartera.portfolio.chunk_state import Portfolios, known_accounts
from cartera.portfolio.chunk_writes import ChunkWriter
from cartera.portfolio.row_rules import Applied, RowChecks, apply_row, identified

log = logging.getLogger("cartera.assignments")

CHUNK_ROWS = 5000
#: Why a payment row of a file delivered again is not applied: nothing tells it from the payment applied then.
RESENT_PAYMENT = (
    "a payment with neither payment reference nor day, in a file delivered again: not applied twice (it was "
    "applied when the file was first imported; give a reference or a day to report a new payment)"
)


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

    def count(self, applied: Applied) -> None:
        """One more row that did ``applied``."""
        setattr(self, applied.value, getattr(self, applied.value) + 1)

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


class AssignmentImporter:
    """Applies batches: new and updated accounts, withdrawals, payments; bad rows quarantined.

    The whole batch is one transaction: a :class:`cartera.core.models.FileRejected` raised while iterating loads
    nothing. A batch whose content was imported before changes nothing (its report lists the rows quarantined
    then); a file, whose sha256 is known only once its rows were read (it is read once), is applied and rolled
    back when its sha256 turns out to be imported already (also when it is rejected: a pass hashes the rest of a
    file it rejects). A file is an instruction, though: imported before, but a later delivery touched one of its
    portfolios since, it is applied again (the creditor withdrawing again an account it re-assigned meanwhile),
    its payment rows without reference nor day quarantined (:data:`RESENT_PAYMENT`); an API batch (its sha256
    known from the start, its id the creditor's idempotency key) never is. Rows
    are idempotent too: an account assigned again unchanged counts as ``unchanged``, a withdrawal of a withdrawn
    account changes nothing, and a payment reported again (same payment reference, or same day
    and amount) is not applied twice; without a reference, the n-th payment of one day and amount in a file is the
    n-th such payment (two installments of a day in one file are two; a later file reporting one is one).
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
        zone: tzinfo = UTC,
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
        self.zone = zone  #: the site's: a file's days past due count back from its day of import there
        self.checks = RowChecks(law_country)

    def import_batch(self, batch: AssignmentBatch, actor: str, scope: DeliveryScope | None = None) -> ImportReport:
        """Apply ``batch``; with ``scope`` (the crm_sync adapter's :meth:`cartera.core.adapters.CrmSync.delivers`), a
        row for another creditor or portfolio rejects the batch whole (:class:`FileRejected`, nothing loaded)."""
        sha256 = batch.known_sha256()
        #: a file's batch row until its sha256 is known: unique, and never a sha256 (those are 64 hex digits)
        pending = f"pending-{uuid.uuid4().hex}"
        report = ImportReport(batch.source, sha256 or pending)
        now = self.clock.now()
        recorded: list[Activity] = []
        after: str | None = None  #: the later delivery that makes a file imported before an instruction again
        try:
            with self.db.session() as session:
                if sha256 is not None and (known := self._imported(session, sha256)) is not None:
                    after = self._instruction_again(session, batch, sha256, known)
                    # the sha256 names the newest application of the content; the earlier batch keeps its rows
                    session.execute(
                        update(ImportBatch)
                        .where(ImportBatch.id == known)
                        .values(content_sha256=f"superseded-{uuid.uuid4().hex}")
                    )
                if session.get_bind().dialect.name == "postgresql":
                    # The planner's statistics do not count the rows this transaction inserts: without this, the
                    # per-chunk lookups by key would scan the tables a long import keeps growing.
                    session.execute(text("SET LOCAL enable_seqscan = off"))
                batch_row = ImportBatch(
                    site=self.site,
                    source=batch.source,
                    content_sha256=report.content_sha256,
                    imported_at=now,
                    counts={},
                )
                session.add(batch_row)
                session.flush()
                try:
                    chunk = _Chunk(self, session, batch_row.id, now, report, resent=after is not None)
                    recorded = self._apply(batch, scope, chunk)
                except FileRejected:
                    if sha256 is None and (known := self._imported(session, batch.content_sha256)) is not None:
                        raise _AlreadyImported(batch.content_sha256, known) from None
                    raise
                if sha256 is None:
                    sha256 = batch.content_sha256  # the pass that read the rows hashed the file
                    if (known := self._imported(session, sha256)) is not None:
                        self._instruction_again(session, batch, sha256, known)
                        raise _ApplyAgain  # with the sha256 now known, its unrecognisable payments set apart
                    batch_row.content_sha256 = report.content_sha256 = sha256
                report.read_as = batch.read_as
                batch_row.counts = report.counts()
                audit(
                    session,
                    at=now,
                    site=self.site,
                    actor=actor,
                    action="assignments.import",
                    subject=batch.source,
                    sha256=sha256,
                    portfolios=report.portfolio_names(),
                    **report.counts(),
                    **({"again_after": after} if after is not None else {}),
                )
        except _AlreadyImported as imported:
            event(log, "assignments.duplicate_skipped", source=batch.source, sha256=imported.sha256[:12])
            return self._already_imported(batch.source, imported)
        except _ApplyAgain:
            if batch.known_sha256() is None:  # never: the pass that raised it hashed the file
                raise RuntimeError(f"{batch.source}: sha256 unknown after a pass") from None
            return self.import_batch(batch, actor, scope)
        if after is not None:
            event(log, "assignments.redelivered", source=batch.source, sha256=report.content_sha256[:12], after=after)
        for activity in recorded:
            self.hooks.activity_recorded(self.site, activity)
        event(
            log,
            "assignments.imported",
            source=batch.source,
            read_as=report.read_as,
            portfolios=report.portfolio_names(),
            **report.counts(),
        )
        return report

    def _apply(self, batch: AssignmentBatch, scope: DeliveryScope | None, chunk: _Chunk) -> list[Activity]:
        """Apply the items of ``batch`` chunk by chunk; the activities recorded."""
        items = iter(batch.items) if scope is None else _within(batch.source, batch.items, scope)
        if self.max_rows is not None:
            items = _at_most(batch.source, items, self.max_rows)
        recorded: list[Activity] = []
        while (applied := _apply_next_chunk(chunk, items)) is not None:
            recorded.extend(applied)
        return recorded

    def _imported(self, session: Session, sha256: str) -> int | None:
        """The id of the batch of this content imported before, if any."""
        return session.scalar(
            select(ImportBatch.id).where(ImportBatch.site == self.site, ImportBatch.content_sha256 == sha256)
        )

    def _instruction_again(self, session: Session, batch: AssignmentBatch, sha256: str, known: int) -> str:
        """The source of the later delivery that makes ``batch`` (its content imported before as batch ``known``)
        an instruction again; :class:`_AlreadyImported` when it is a duplicate."""
        later = None if isinstance(batch.hashed, str) else self._later_delivery(session, sha256)
        if later is None:
            raise _AlreadyImported(sha256, known)
        return later

    def _later_delivery(self, session: Session, sha256: str) -> str | None:
        """The first delivery imported after the newest import of ``sha256`` that touched one of its portfolios
        (its source), read in the audit log (the imports' portfolios are kept there only)."""
        imports = (AuditEntry.site == self.site, AuditEntry.action == "assignments.import")
        newest = session.execute(
            select(AuditEntry.id, AuditEntry.details)
            .where(*imports, AuditEntry.details["sha256"].as_string() == sha256)
            .order_by(AuditEntry.id.desc())
            .limit(1)
        ).first()
        touched = set(newest.details.get("portfolios") or ()) if newest is not None else set()
        if newest is None or not touched:
            return None
        later = session.execute(
            select(AuditEntry.subject, AuditEntry.details)
            .where(*imports, AuditEntry.id > newest.id)
            .order_by(AuditEntry.id)
        )
        for subject, details in later.yield_per(500):
            if touched.intersection(details.get("portfolios") or ()):
                return str(subject)
        return None

    def _already_imported(self, source: str, imported: _AlreadyImported) -> ImportReport:
        """The report of a batch whose content was imported before: the rows quarantined then."""
        with self.db.reading() as session:
            quarantined = _quarantined(session, imported.batch_id)
        return ImportReport(source, imported.sha256, quarantined=quarantined, already_imported=True)

    def portfolio_country(self, creditor: str, portfolio: str) -> str:
        """The country a new portfolio gets (its law pack, how its national numbers read): the country of the law
        the site holds it to (``compliance.portfolios`` in sites.toml, else the site's), else the site's; never
        a creditor row's, so a creditor does not choose the law its debtors are contacted under."""
        law = self.law_country(f"{creditor}/{portfolio}", self.default_country) if self.law_country else None
        return law or self.default_country


class _ApplyAgain(Exception):
    """A file whose sha256, learnt at its end, was imported before but is an instruction again: its transaction rolls
    back and it is applied again knowing it (:data:`RESENT_PAYMENT`)."""


class _AlreadyImported(Exception):
    """The content of the batch being imported was imported before (as ``batch_id``): its transaction rolls back."""

    def __init__(self, sha256: str, batch_id: int) -> None:
        super().__init__(sha256)
        self.sha256, self.batch_id = sha256, batch_id


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


def _unrecognisable_payment(row: AssignmentRow) -> bool:
    """A payment row without what recognises it reported again (``reported_payments.key``): a reference or a day."""
    return row.action is AssignmentAction.PAYMENT and not row.payment_ref and row.paid_on is None


def _quarantined(session: Session, batch_id: int) -> list[RowError]:
    rows = session.execute(
        select(QuarantinedRow.line, QuarantinedRow.field, QuarantinedRow.reason)
        .where(QuarantinedRow.batch_id == batch_id)
        .order_by(QuarantinedRow.id)
    ).all()
    return [RowError(line, name, reason) for line, name, reason in rows]


class _Chunk:
    """Applies one chunk of a batch's items after another, inside the batch's transaction: the chunk's accounts
    read at once, its rows applied to them in file order, its changes written in a few statements."""

    def __init__(
        self,
        importer: AssignmentImporter,
        session: Session,
        batch_id: int,
        now: datetime,
        report: ImportReport,
        *,
        resent: bool = False,
    ) -> None:
        self.session, self.report, self.checks = session, report, importer.checks
        self.resent = resent  #: a file imported before, applied again: its unrecognisable payments are not
        self.portfolios = Portfolios(session, importer.site, importer.portfolio_country)
        self.writer = ChunkWriter(importer.site, batch_id, now)
        self.today = now.astimezone(importer.zone).date()
        self.unreferenced: dict[tuple[int, str, str], int] = {}

    def apply(self, items: Sequence[AssignmentRow | RowError]) -> list[Activity]:
        items = [identified(item) for item in items]
        rows = [item for item in items if isinstance(item, AssignmentRow)]
        state = known_accounts(self.session, self.portfolios, rows)
        state.unreferenced = self.unreferenced  # counted over the whole batch, not per chunk
        errors: list[RowError] = []
        for item in items:
            if isinstance(item, RowError):
                errors.append(item)
                continue
            if self.resent and _unrecognisable_payment(item):
                errors.append(RowError(item.line, "payment_ref", RESENT_PAYMENT))
                continue
            done = apply_row(item, self.portfolios.get(item.creditor, item.portfolio), state, self.checks, self.today)
            if isinstance(done, RowError):
                errors.append(done)
            else:
                self.report.count(done)
                self.report.portfolios.add(f"{item.creditor}/{item.portfolio}")
        connection = self.session.connection()
        self.writer.insert_accounts(connection, state.created)
        self.writer.update_accounts(connection, state.changed())
        recorded = self.writer.record_payments(connection, state.payments)
        self.report.quarantined.extend(errors)
        self.writer.quarantine(connection, errors)
        return recorded
