"""Recording archival: upload the catalog's pending recordings verified, free local disk, apply retention.

Recordings enter by one door: a dialer's report (``PluginContext.report_recording`` → :meth:`Archiver.catalog`),
idempotent on the file's path. Finding finished files in a PBX's spool folder is the dialer's job. The parts:
:mod:`~cartera.recordings.catalog` (the door, what is pending, the backlog), :mod:`~cartera.recordings.upload`
(one worker's upload), :mod:`~cartera.recordings.retention` (store and local disk); this module runs them.

Crash safety: a row's store key is committed before its first upload and never changes, a store's ``put``
is idempotent for identical content, and ``verified`` is committed only after the store confirmed the
object. Uploads run on a pool of workers that never touch the catalog; the run's own thread writes the
outcomes, verified ones a batch per transaction, so the workers do not queue for the database's write lock
(a batch lost to a crash is only uploaded again, and the store recognises its own objects). A run killed at
any instant (kill -9) leaves rows that the next run completes: no recording is uploaded under two keys, none
is deleted locally before it is verified.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol, cast
from zoneinfo import ZoneInfo

from sqlalchemy import select, update
from sqlalchemy.engine import CursorResult
from sqlalchemy.orm import Session

from cartera.core.adapters import RecordingStore
from cartera.core.clock import Clock
from cartera.core.config import ArchivalConfig
from cartera.core.hooks import Hooks
from cartera.core.logs import event
from cartera.core.models import Recording
from cartera.core.store.database import Database
from cartera.core.store.schema import RecordingRow
from cartera.recordings.catalog import PENDING, Backlog, Catalog
from cartera.recordings.retention import Retention
from cartera.recordings.upload import NotArchived, Outcome, Pending, Uploader, Verified

log = logging.getLogger("cartera.archival")

_COMMIT_BATCH, _COMMIT_EVERY_S = 64, 1.0  # verified uploads committed together: at most this many, this late
_FAILED_STATE = {Outcome.MISSING: "missing", Outcome.FAILED: "failed", Outcome.LEFT: None}


class Progress(Protocol):
    """What a progress display needs from a run."""

    def start(self, files: int) -> None: ...

    def advance(self, size: int) -> None: ...


@dataclass
class ArchiveRun:
    found: int = 0  #: recordings the dialer reported since the previous run
    archived: int = 0
    failed: int = 0
    missing: int = 0
    left: int = 0
    deleted_local: int = 0
    purged: int = 0
    store_error: str | None = None

    @property
    def ok(self) -> bool:
        return not (self.failed or self.missing or self.left)

    def __str__(self) -> str:
        text = (
            f"{self.found} reported by the dialer, {self.archived} archived and verified, {self.failed} failed, "
            f"{self.missing} missing, {self.deleted_local} local copies removed, {self.purged} purged"
        )
        if self.store_error:
            text += f"; store unavailable, {self.left} left on local disk for the next run: {self.store_error}"
        return text


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
        self.site, self.db, self.store, self.hooks, self.clock, self.config = site, db, store, hooks, clock, config
        self.recordings = Catalog(site=site, zone=zone, db=db, clock=clock, config=config)
        self.retention = Retention(site=site, db=db, store=store, clock=clock, config=config)

    def catalog(self, recording: Recording) -> int:
        """The one door, :meth:`Catalog.catalog`: a recording a dialer reported; returns its catalog id."""
        return self.recordings.catalog(recording)

    def backlog(self) -> Backlog:
        """What is still only on local disk, for ``check``."""
        return self.recordings.backlog()

    def run_once(self, progress: Progress | None = None) -> ArchiveRun:
        """Archive every pending recording, free local disk, purge expired recordings."""
        run = ArchiveRun(found=self.recordings.take_reported())
        pending = self.recordings.pending()
        uploader = Uploader(self.store)
        if progress is not None:
            progress.start(len(pending))
        if pending:
            outcomes = self._upload(pending, uploader, progress)
            run.archived, run.failed = outcomes[Outcome.VERIFIED], outcomes[Outcome.FAILED]
            run.missing, run.left = outcomes[Outcome.MISSING], outcomes[Outcome.LEFT]
        try:
            if uploader.store_down.is_set():
                run.store_error = uploader.last_store_error
                event(log, "archive.store_unavailable", logging.ERROR, left=run.left, error=run.store_error)
            else:
                run.purged = self.retention.purge_expired()
        finally:  # local disk is freed even when the purge failed: a full spool stops the PBX recording
            run.deleted_local = self.retention.free_local_disk()
        if pending or run.deleted_local or run.purged:
            event(
                log,
                "archive.run",
                archived=run.archived,
                failed=run.failed,
                missing=run.missing,
                left=run.left,
                deleted_local=run.deleted_local,
                purged=run.purged,
            )
        return run

    def _upload(self, pending: list[Pending], uploader: Uploader, progress: Progress | None) -> Counter[Outcome]:
        """Upload on the workers; this thread writes each outcome, the verified ones a batch at a time."""
        workers = self.config.workers or self.store().max_concurrency()
        outcomes: Counter[Outcome] = Counter()
        verified: list[Verified] = []
        committed = time.monotonic()
        with ThreadPoolExecutor(workers, thread_name_prefix="archive") as pool:
            for each, done in zip(pending, pool.map(uploader, pending), strict=True):
                if isinstance(done, Verified):
                    verified.append(done)
                elif (outcome := self._record_failure(each, done)) is not None:
                    outcomes[outcome] += 1
                if verified and (len(verified) >= _COMMIT_BATCH or time.monotonic() - committed >= _COMMIT_EVERY_S):
                    outcomes += self._commit_verified(verified)
                    verified, committed = [], time.monotonic()
                if progress is not None:
                    progress.advance(done.checksums.size if isinstance(done, Verified) else 0)
        return outcomes + self._commit_verified(verified)

    def _record_failure(self, pending: Pending, done: NotArchived) -> Outcome | None:
        """Write why a worker did not archive a recording; ``None`` when another archiver of the site archived it
        meanwhile (its catalog row is no longer pending): nothing failed."""
        if done.error is not None and not self.recordings.fail(
            pending.recording_id, done.error, state=_FAILED_STATE[done.outcome]
        ):
            return None
        return done.outcome

    def _commit_verified(self, batch: list[Verified]) -> Counter[Outcome]:
        """Mark a batch of verified uploads ``verified`` in one transaction. A recording put on legal hold while
        it was being uploaded gets the hold in the store first, or fails (the next run uploads it again,
        idempotently, and retries)."""
        committed: list[Verified] = []
        unheld: dict[int, str] = {}
        now = self.clock.now()
        with self.db.session() as session:
            ids = [done.pending.recording_id for done in batch]
            held = set(
                session.scalars(
                    select(RecordingRow.id).where(RecordingRow.id.in_(ids), RecordingRow.legal_hold).with_for_update()
                )
            )
            for done in batch:
                pending = done.pending
                if pending.recording_id in held and not pending.legal_hold:
                    try:
                        self.store().set_retention(pending.key, pending.retain_until, legal_hold=True)
                    except Exception as exc:
                        unheld[pending.recording_id] = f"applying a legal hold: {exc!r}"
                        continue
                committed.append(done)
            committed = [done for done in committed if _mark_verified(session, done, now)]
        for recording_id, error in list(unheld.items()):
            if not self.recordings.fail(recording_id, error, state="failed"):
                del unheld[recording_id]
        for done in committed:
            recording_id = done.pending.recording_id
            event(log, "recording.archived", recording=recording_id, key=done.pending.key, size=done.stored.size)
            self.hooks.recording_archived(self.site, recording_id, done.stored)
        return Counter({Outcome.VERIFIED: len(committed), Outcome.FAILED: len(unheld)})


def _mark_verified(session: Session, done: Verified, now: datetime) -> bool:
    """Mark a recording verified if its row is still pending (compare-and-set): another archiver of the site
    (the node's job beside a command-line ``archive``) may have verified, or even purged, it since this run read
    the catalog; that row is left as it is, and this upload is not counted nor announced again."""
    recording_id = done.pending.recording_id
    changed = cast(
        CursorResult[Any],
        session.execute(
            update(RecordingRow)
            .where(RecordingRow.id == recording_id, RecordingRow.state.in_(PENDING))
            .values(_verified_row(done, now))
            .execution_options(synchronize_session=False)
        ),
    ).rowcount
    if not changed:
        event(log, "recording.archived_already", recording=recording_id, key=done.pending.key)
    return bool(changed)


def _verified_row(done: Verified, now: datetime) -> dict[str, Any]:
    """The catalog's new values for a verified recording."""
    return {
        "state": "verified",
        "store_key": done.pending.key,
        "location": done.stored.location,
        "error": None,
        "size": done.checksums.size,
        "md5": done.checksums.md5_hex,
        "sha256": done.checksums.sha256_hex,
        "verified_at": now,
        "retain_until": done.pending.retain_until,
    }
