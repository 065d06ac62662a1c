"""Finding and fetching recordings for supervisors: site-scoped, checksum-verified, every access audited."""

from __future__ import annotations

import os
import tempfile
from dataclasses import asdict, dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from core.adapters import RecordingStore
from core.audit import audit
from core.checksums import file_checksums
from core.clock import Clock
from core.errors import IntegrityError, NotFound, UsageError
from core.store.database import Database
from core.store.schema import Account, ContactAttempt, RecordingRow


@dataclass(frozen=True)
class RecordingView:
    id: int
    site: str
    account: str | None
    phone: str | None
    agent: str | None
    outcome: str | None
    started_at: str
    duration_s: float
    size: int | None
    sha256: str | None
    location: str | None
    state: str

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class SearchFilters:
    account: str | None = None
    phone: str | None = None
    agent: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    limit: int = 500


class RecordingLibrary:
    def __init__(self, site: str, db: Database, clock: Clock) -> None:
        self.site, self.db, self.clock = site, db, clock

    def search(self, filters: SearchFilters, actor: str) -> list[RecordingView]:
        query = (
            select(RecordingRow, ContactAttempt, Account)
            .outerjoin(ContactAttempt, RecordingRow.attempt_id == ContactAttempt.id)
            .outerjoin(Account, ContactAttempt.account_id == Account.id)
            .where(RecordingRow.site == self.site)
            .order_by(RecordingRow.started_at.desc(), RecordingRow.id.desc())
            .limit(filters.limit)
        )
        if filters.account:
            query = query.where(Account.ref == filters.account)
        if filters.phone:
            query = query.where(ContactAttempt.phone == filters.phone)
        if filters.agent:
            query = query.where(RecordingRow.agent == filters.agent)
        if filters.since:
            query = query.where(RecordingRow.started_at >= filters.since)
        if filters.until:
            query = query.where(RecordingRow.started_at < filters.until)
        with self.db.session() as session:
            views = [_view(rec, attempt, account) for rec, attempt, account in session.execute(query)]
            audit(
                session,
                at=self.clock.now(),
                site=self.site,
                actor=actor,
                action="recordings.search",
                subject="recordings",
                filters={k: str(v) for k, v in asdict(filters).items() if v is not None and k != "limit"},
                results=len(views),
            )
        return views

    def get(self, recording_id: int, store: RecordingStore[Any], destination: Path, actor: str) -> RecordingView:
        """Write the recording to ``destination`` after checking its sha256 against the catalog."""
        with self.db.session() as session:
            found = self._find(session, recording_id)
            if found is None:
                audit(
                    session,
                    at=self.clock.now(),
                    site=self.site,
                    actor=actor,
                    action="recordings.get_denied",
                    subject=f"recording:{recording_id}",
                    reason="not found at this site",
                )
        if found is None:
            raise NotFound(f"no recording {recording_id} at site {self.site!r}")
        view = found
        if view.state != "verified" or view.sha256 is None:
            raise UsageError(f"recording {recording_id} is {view.state}, not yet archived and verified")
        key = self._key(recording_id)
        destination = destination.resolve()
        fd, tmp_name = tempfile.mkstemp(prefix=".cartera-", dir=destination.parent)
        tmp = Path(tmp_name)
        try:
            with os.fdopen(fd, "wb") as sink:
                store.read(key, sink)
            digest = file_checksums(tmp).sha256_hex
            if digest != view.sha256:
                raise IntegrityError(f"recording {recording_id}: sha256 of the stored copy does not match the catalog")
            tmp.replace(destination)
        finally:
            tmp.unlink(missing_ok=True)
        with self.db.session() as session:
            audit(
                session,
                at=self.clock.now(),
                site=self.site,
                actor=actor,
                action="recordings.get",
                subject=f"recording:{recording_id}",
                sha256=view.sha256,
                destination=str(destination),
            )
        return view

    def _find(self, session: Session, recording_id: int) -> RecordingView | None:
        row = session.execute(
            select(RecordingRow, ContactAttempt, Account)
            .outerjoin(ContactAttempt, RecordingRow.attempt_id == ContactAttempt.id)
            .outerjoin(Account, ContactAttempt.account_id == Account.id)
            .where(RecordingRow.id == recording_id, RecordingRow.site == self.site)
        ).first()
        return _view(*row) if row else None

    def _key(self, recording_id: int) -> str:
        with self.db.session() as session:
            key = session.get_one(RecordingRow, recording_id).store_key
        if key is None:
            raise IntegrityError(f"recording {recording_id} is verified but has no store key")
        return key


def _view(row: RecordingRow, attempt: ContactAttempt | None, account: Account | None) -> RecordingView:
    return RecordingView(
        id=row.id,
        site=row.site,
        account=account.ref if account else None,
        phone=attempt.phone if attempt else None,
        agent=row.agent,
        outcome=attempt.outcome if attempt else None,
        started_at=row.started_at.isoformat(),
        duration_s=round(row.duration_s, 1),
        size=row.size,
        sha256=row.sha256,
        location=row.location,
        state=row.state,
    )
