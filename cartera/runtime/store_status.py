"""What ``/healthz`` and ``/metrics`` read of the store: whether it answers, the site's lease, and what it holds
for the site, counted."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, select, text
from sqlalchemy.exc import SQLAlchemyError

from cartera.contact.abandonment import AbandonmentRate, abandonment_rate
from cartera.core.clock import Clock
from cartera.core.config import AbandonmentConfig
from cartera.core.store.database import Database
from cartera.core.store.schema import ContactAttempt, ExportCursor, ImportBatch, RecordingRow, SmsRow
from cartera.core.store.site_lease import LeaseHolder, lease_holder
from cartera.recordings.catalog import PENDING


@dataclass(frozen=True)
class StoreCounts:
    """What the store holds for the site, read in one session."""

    calls: list[tuple[str | None, int]]  #: finished calls by outcome
    recordings: list[tuple[str, int]]  #: by archival state
    oldest_pending: datetime | None  #: when the oldest recording not archived yet was found
    sms: list[tuple[str, int]]  #: by state
    abandonment: AbandonmentRate
    batches: list[dict[str, int]]  #: each import's counts by result
    cursors: list[tuple[str, int]]  #: each creditor's last exported seq


class StoreStatus:
    """One site's store as its health and metrics see it; ``abandonment`` is the campaign's measure."""

    def __init__(self, site: str, db: Database, clock: Clock, abandonment: AbandonmentConfig) -> None:
        self._site, self._db, self._clock, self._abandonment = site, db, clock, abandonment

    def reachable(self) -> tuple[bool, str]:
        """Whether the store answers, with its URL without password, or the error's type."""
        try:
            with self._db.reading() as session:  # never waits for a writer (a long import on SQLite)
                session.execute(text("SELECT 1"))
        except SQLAlchemyError as exc:
            return False, type(exc).__name__
        return True, self._db.display_url

    def lease(self) -> LeaseHolder | None:
        """Which node works the site, on PostgreSQL (``None`` elsewhere)."""
        return lease_holder(self._db, self._site)

    def counts(self) -> StoreCounts:
        """What the store holds for the site, counted in one session."""
        site = self._site
        with self._db.reading() as session:
            calls = session.execute(
                select(ContactAttempt.outcome, func.count())
                .where(ContactAttempt.site == site, ContactAttempt.state == "finished")
                .group_by(ContactAttempt.outcome)
            ).all()
            recordings = session.execute(
                select(RecordingRow.state, func.count()).where(RecordingRow.site == site).group_by(RecordingRow.state)
            ).all()
            oldest: datetime | None = session.scalar(
                select(func.min(RecordingRow.found_at)).where(
                    RecordingRow.site == site, RecordingRow.state.in_(PENDING)
                )
            )
            sms = session.execute(
                select(SmsRow.state, func.count()).where(SmsRow.site == site).group_by(SmsRow.state)
            ).all()
            abandonment = abandonment_rate(session, site, self._clock.now(), self._abandonment)
            batches = session.scalars(select(ImportBatch.counts).where(ImportBatch.site == site)).all()
            cursors = session.execute(
                select(ExportCursor.creditor, ExportCursor.last_seq).where(ExportCursor.site == site)
            ).all()
        return StoreCounts(
            calls=[(outcome, count) for outcome, count in calls],
            recordings=[(state, count) for state, count in recordings],
            oldest_pending=oldest,
            sms=[(state, count) for state, count in sms],
            abandonment=abandonment,
            batches=list(batches),
            cursors=[(creditor, seq) for creditor, seq in cursors],
        )
