"""Recording archival: catalog what dialers report, move it to the site's store, verify, then free disk.

Catalog states: ``found`` (on local disk) → ``archived`` (the store accepted and verified the upload) →
``verified`` (an independent ``head`` matches size and sha256). A failure records the error and leaves the
row for the next run; the local file is deleted only once ``verified`` and past local retention. Every
step is idempotent, so a run killed at any instant is completed by the next one.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path, PurePosixPath
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import select

from core.adapters import RecordingStore
from core.checksums import file_checksums
from core.clock import Clock
from core.config import ArchivalConfig
from core.errors import IntegrityError
from core.hooks import Hooks
from core.logs import event
from core.models import Recording, StoredObject
from core.store.database import Database
from core.store.schema import RecordingRow

log = logging.getLogger("cartera.archival")

KEY_TEMPLATE = "{site}/{yyyy}/{mm}/{dd}/{call_id}.{ext}"


@dataclass
class ArchiveRun:
    archived: int = 0
    failed: int = 0
    deleted_local: int = 0

    def __str__(self) -> str:
        return f"{self.archived} archived and verified, {self.failed} failed, {self.deleted_local} local copies removed"


class Archiver:
    """Archives a site's recordings; ``store`` gives the site's store, started on first use."""

    def __init__(
        self,
        *,
        site: str,
        zone: ZoneInfo,
        db: Database,
        store: Callable[[], RecordingStore[Any]],
        hooks: Hooks,
        clock: Clock,
        config: ArchivalConfig,
    ) -> None:
        self.site, self.zone, self.db, self.store = site, zone, db, store
        self.hooks, self.clock, self.config = hooks, clock, config

    def catalog(self, recording: Recording) -> int:
        """Record a finished recording as ``found`` (idempotent on its path); returns its catalog id."""
        path = str(recording.path.resolve())
        with self.db.session() as session:
            existing = session.scalar(select(RecordingRow.id).where(RecordingRow.local_path == path))
            if existing is not None:
                return existing
            row = RecordingRow(
                site=self.site,
                attempt_id=recording.attempt_id,
                local_path=path,
                state="found",
                started_at=recording.started_at,
                duration_s=recording.duration_s,
                agent=recording.agent,
                found_at=self.clock.now(),
            )
            session.add(row)
            session.flush()
            return row.id

    def run_once(self) -> ArchiveRun:
        run = ArchiveRun()
        with self.db.session() as session:
            ids = session.scalars(
                select(RecordingRow.id)
                .where(RecordingRow.site == self.site, RecordingRow.state.in_(("found", "archived", "failed")))
                .order_by(RecordingRow.id)
            ).all()
        if ids:
            with ThreadPoolExecutor(self.config.workers, thread_name_prefix="archive") as pool:
                for ok in pool.map(self._archive_one, ids):
                    run.archived += ok
                    run.failed += not ok
        run.deleted_local = self._apply_local_retention()
        if ids or run.deleted_local:
            event(log, "archive.run", archived=run.archived, failed=run.failed, deleted_local=run.deleted_local)
        return run

    def _archive_one(self, recording_id: int) -> bool:
        with self.db.session() as session:
            row = session.get_one(RecordingRow, recording_id)
            path, key, state = Path(row.local_path), row.store_key or self._key(row), row.state
            expected = (row.size, row.sha256)
        try:
            if state != "archived":
                checksums = file_checksums(path)
                stored = self.store().put(key, path, checksums)
                self._update(
                    recording_id,
                    state="archived",
                    size=checksums.size,
                    md5=checksums.md5_hex,
                    sha256=checksums.sha256_hex,
                    store_key=key,
                    location=stored.location,
                    error=None,
                )
                expected = (checksums.size, checksums.sha256_hex)
            stored = self._verify(key, *expected)
        except (OSError, IntegrityError) as exc:
            self._fail(recording_id, f"{type(exc).__name__}: {exc}")
            return False
        except Exception as exc:  # a store outage must not stop the other files
            self._fail(recording_id, f"store error: {exc!r}")
            return False
        self._update(recording_id, state="verified", verified_at=self.clock.now(), location=stored.location)
        event(log, "recording.archived", recording=recording_id, key=key, size=stored.size)
        self.hooks.recording_archived(self.site, recording_id, stored)
        return True

    def _verify(self, key: str, size: int | None, sha256: str | None) -> StoredObject:
        stored = self.store().head(key)
        if stored is None:
            raise IntegrityError(f"{key}: not found in the store after upload")
        if stored.size != size:
            raise IntegrityError(f"{key}: store holds {stored.size} bytes, expected {size}")
        if stored.sha256_hex is not None and stored.sha256_hex != sha256:
            raise IntegrityError(f"{key}: store's sha256 differs from the catalog's")
        return stored

    def _key(self, row: RecordingRow) -> str:
        local = row.started_at.astimezone(self.zone)
        call_id = row.attempt_id if row.attempt_id is not None else f"rec-{row.id}"
        return KEY_TEMPLATE.format(
            site=self.site,
            yyyy=f"{local:%Y}",
            mm=f"{local:%m}",
            dd=f"{local:%d}",
            call_id=call_id,
            ext=PurePosixPath(row.local_path).suffix.lstrip(".") or "bin",
        )

    def _update(self, recording_id: int, **values: Any) -> None:
        with self.db.session() as session:
            row = session.get_one(RecordingRow, recording_id)
            for name, value in values.items():
                setattr(row, name, value)

    def _fail(self, recording_id: int, error: str) -> None:
        with self.db.session() as session:
            row = session.get_one(RecordingRow, recording_id)
            row.failures += 1
            row.error = error
            if row.state == "found":
                row.state = "failed"
        event(log, "recording.archive_failed", logging.WARNING, recording=recording_id, error=error)

    def _apply_local_retention(self) -> int:
        cutoff = self.clock.now() - timedelta(hours=self.config.local_retention_hours)
        deleted = 0
        with self.db.session() as session:
            rows = session.scalars(
                select(RecordingRow).where(
                    RecordingRow.site == self.site,
                    RecordingRow.state == "verified",
                    RecordingRow.local_deleted_at.is_(None),
                    RecordingRow.verified_at <= cutoff,
                )
            ).all()
            for row in rows:
                Path(row.local_path).unlink(missing_ok=True)
                row.local_deleted_at = self.clock.now()
                deleted += 1
        return deleted
