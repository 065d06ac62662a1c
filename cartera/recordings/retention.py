"""How long recordings are kept: in the store until their portfolio's retention (never while on legal hold),
on local disk until ``local_retention_hours`` after they were verified."""

from __future__ import annotations

import logging
import stat
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import select

from cartera.core.adapters import RecordingStore
from cartera.core.audit import SYSTEM, audit
from cartera.core.clock import Clock
from cartera.core.config import ArchivalConfig
from cartera.core.errors import ObjectLocked, StoreUnavailable
from cartera.core.logs import event
from cartera.core.store.database import Database
from cartera.core.store.schema import RecordingRow

log = logging.getLogger("cartera.archival")


def retain_until(
    config: ArchivalConfig, started_at: datetime, creditor: str | None, portfolio: str | None
) -> datetime | None:
    """Until when the store keeps a recording: its portfolio's retention ("CREDITOR/PORTFOLIO", then
    "PORTFOLIO"), else the default; ``None``: no retention."""
    retention = config.retention
    days = (
        retention.portfolios.get(f"{creditor}/{portfolio}")
        or retention.portfolios.get(portfolio or "")
        or retention.default_days
    )
    return None if days is None else started_at + timedelta(days=days)


class Retention:
    """Applies a site's retention to its archived recordings."""

    def __init__(
        self, *, site: str, db: Database, store: Callable[[], RecordingStore[Any]], clock: Clock, config: ArchivalConfig
    ) -> None:
        self.site, self.db, self.store, self.clock, self.config = site, db, store, clock, config
        self._left_alone: set[int] = set()  #: recordings whose local copy was replaced after archival, logged

    def purge_expired(self) -> int:
        """Delete recordings past their retention from the store, except those on legal hold."""
        with self.db.session() as session:
            due = session.execute(
                select(RecordingRow.id, RecordingRow.store_key).where(
                    RecordingRow.site == self.site,
                    RecordingRow.state == "verified",
                    RecordingRow.legal_hold.is_(False),
                    RecordingRow.retain_until <= self.clock.now(),
                )
            ).all()
        purged = 0
        for recording_id, key in due:
            if key is None:
                continue
            with self.db.session() as session:
                self.db.fence(session)  # a node whose site was taken over deletes nothing
            try:
                self.store().delete(key)
            except (ObjectLocked, StoreUnavailable) as exc:
                event(log, "recording.purge_refused", logging.WARNING, recording=recording_id, error=str(exc))
                continue
            except Exception as exc:  # a store's unexpected answer about one object must not stop the others
                event(log, "recording.purge_failed", logging.ERROR, recording=recording_id, error=repr(exc)[:500])
                continue
            with self.db.session() as session:
                row = session.get_one(RecordingRow, recording_id)
                if row.legal_hold:  # held while the delete was under way: the store's copy is gone, say so
                    event(log, "recording.purged_while_held", logging.ERROR, recording=recording_id)
                row.state, row.purged_at = "purged", self.clock.now()
                audit(
                    session,
                    at=self.clock.now(),
                    site=self.site,
                    actor=SYSTEM,
                    action="recordings.purge",
                    subject=f"recording:{recording_id}",
                    key=key,
                    retain_until=row.retain_until.isoformat() if row.retain_until else None,
                )
            purged += 1
        return purged

    def free_local_disk(self) -> int:
        """Delete the local copies archived long enough ago, each only while it is still the regular file that
        was archived (same size, not a symlink); a replaced one is left, and logged once."""
        cutoff = self.clock.now() - timedelta(hours=self.config.local_retention_hours)
        deleted = 0
        with self.db.session() as session:
            rows = session.scalars(
                select(RecordingRow).where(
                    RecordingRow.site == self.site,
                    RecordingRow.state.in_(("verified", "purged")),
                    RecordingRow.local_deleted_at.is_(None),
                    RecordingRow.verified_at <= cutoff,
                )
            ).all()
            for row in rows:
                if _replaced(Path(row.local_path), row.size):
                    if row.id not in self._left_alone:
                        self._left_alone.add(row.id)
                        event(
                            log, "recording.local_copy_replaced", logging.WARNING, recording=row.id, path=row.local_path
                        )
                    continue
                try:
                    Path(row.local_path).unlink(missing_ok=True)
                except OSError as exc:
                    event(log, "recording.local_delete_failed", logging.WARNING, recording=row.id, error=str(exc))
                    continue
                row.local_deleted_at = self.clock.now()
                deleted += 1
        return deleted


def _replaced(path: Path, size: int | None) -> bool:
    """Whether ``path`` exists but is no longer the regular file of ``size`` bytes that was archived."""
    try:
        info = path.lstat()
    except FileNotFoundError:
        return False
    return not stat.S_ISREG(info.st_mode) or (size is not None and info.st_size != size)
