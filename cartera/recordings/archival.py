"""Recording archival: catalog finished recordings, upload them verified, free local disk, apply retention.

Recordings enter by one door: a dialer's report (``PluginContext.report_recording`` → :meth:`Archiver.catalog`),
idempotent on the file's path. Finding finished files in a PBX's spool folder is the dialer's job.

Catalog states: ``found`` (on local disk) → ``verified`` (the store took the upload, checked it, and its
description matches size and sha256) → ``purged`` (deleted from the store after its retention). ``failed``
rows are retried every run; ``missing`` rows lost their local file before it was archived.

Crash safety: a row's store key is committed before its first upload and never changes, a store's ``put``
is idempotent for identical content, and ``verified`` is committed only after the store confirmed the
object. Uploads run on a pool of workers that never touch the catalog; the run's own thread writes the
outcomes, verified ones a batch per transaction, so the workers do not queue for the database's write lock
(a batch lost to a crash is only uploaded again, and the store recognises its own objects). A run killed at
any instant (kill -9)
leaves rows that the next run completes: no recording is uploaded under two keys, none is deleted locally
before it is verified.
"""

from __future__ import annotations

import enum
import logging
import stat
import threading
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path, PurePosixPath
from typing import Any, Protocol
from zoneinfo import ZoneInfo

from sqlalchemy import func, select, update
from sqlalchemy.dialects import postgresql, sqlite

from cartera.core.adapters import RecordingStore
from cartera.core.audit import SYSTEM, audit
from cartera.core.checksums import stream_checksums
from cartera.core.clock import Clock
from cartera.core.config import ArchivalConfig
from cartera.core.durable import NotARegularFile, open_regular
from cartera.core.errors import IntegrityError, ObjectLocked, StoreUnavailable
from cartera.core.hooks import Hooks
from cartera.core.logs import event
from cartera.core.models import Checksums, Recording, StoredObject
from cartera.core.store.database import Database
from cartera.core.store.schema import Account, ContactAttempt, Creditor, Portfolio, RecordingRow

log = logging.getLogger("cartera.archival")

PENDING = ("found", "failed")
_COMMIT_BATCH, _COMMIT_EVERY_S = 64, 1.0  # verified uploads committed together: at most this many, this late


class Outcome(enum.Enum):
    VERIFIED = "verified"
    FAILED = "failed"
    MISSING = "missing"
    LEFT = "left"  # not tried: the store was unavailable


@dataclass(frozen=True)
class _Upload:
    """One pending recording, as read from the catalog at the start of a run."""

    recording_id: int
    path: Path
    key: str
    legal_hold: bool
    retain_until: datetime | None


@dataclass(frozen=True)
class _NotArchived:
    """Why a worker did not archive an upload."""

    outcome: Outcome
    error: str | None = None


@dataclass(frozen=True)
class _Verified:
    """An upload the store holds and confirmed, waiting for its catalog commit."""

    upload: _Upload
    checksums: Checksums
    stored: StoredObject


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


@dataclass(frozen=True)
class Backlog:
    """Recordings still only on local disk."""

    waiting: int
    oldest: datetime | None
    failing: int
    missing: int
    last_error: str | None


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
        self._reported = 0  #: recordings catalogued since the last run
        self._reported_lock = threading.Lock()
        self._store_down = threading.Event()
        self._last_store_error: str | None = None
        self._left_alone: set[int] = set()  #: recordings whose local copy was replaced after archival, logged

    # --- cataloguing ----------------------------------------------------------------------------------

    def catalog(self, recording: Recording) -> int:
        """Record a finished recording a dialer reported as ``found``; returns its catalog id. Idempotent on
        its path: a second report of the same file (a dialer's scan after a restart) changes nothing. The path is
        kept as reported (its folder made absolute): a symlink's target is never taken for the recording."""
        path = str(recording.path.parent.resolve() / recording.path.name)
        values = {
            "site": self.site,
            "attempt_id": recording.attempt_id,
            "local_path": path,
            "state": "found",
            "started_at": recording.started_at,
            "duration_s": recording.duration_s,
            "agent": recording.agent,
            "found_at": self.clock.now(),
            "failures": 0,
            "legal_hold": False,
        }
        with self.db.session() as session:
            dialect = postgresql if session.get_bind().dialect.name == "postgresql" else sqlite
            new: int | None = session.scalar(
                dialect.insert(RecordingRow)
                .values(values)
                .on_conflict_do_nothing(index_elements=[RecordingRow.local_path])
                .returning(RecordingRow.id)
            )
            if new is not None:
                with self._reported_lock:
                    self._reported += 1
                return new
            return session.scalars(select(RecordingRow.id).where(RecordingRow.local_path == path)).one()

    # --- the job --------------------------------------------------------------------------------------

    def run_once(self, progress: Progress | None = None) -> ArchiveRun:
        """Archive every pending recording, free local disk, purge expired recordings."""
        with self._reported_lock:
            run, self._reported = ArchiveRun(found=self._reported), 0
        pending = self._pending()
        self._store_down.clear()
        if progress is not None:
            progress.start(len(pending))
        if pending:
            store = self.store()
            workers = self.config.workers or store.max_concurrency()
            outcomes: Counter[Outcome] = Counter()
            verified: list[_Verified] = []
            committed = time.monotonic()
            with ThreadPoolExecutor(workers, thread_name_prefix="archive") as pool:
                for upload, done in zip(pending, pool.map(self._upload, pending), strict=True):
                    if isinstance(done, _Verified):
                        verified.append(done)
                    else:
                        outcomes[self._record_failure(upload, done)] += 1
                    if verified and (len(verified) >= _COMMIT_BATCH or time.monotonic() - committed >= _COMMIT_EVERY_S):
                        outcomes += self._commit_verified(verified)
                        verified, committed = [], time.monotonic()
                    if progress is not None:
                        progress.advance(done.checksums.size if isinstance(done, _Verified) else 0)
            outcomes += self._commit_verified(verified)
            run.archived, run.failed = outcomes[Outcome.VERIFIED], outcomes[Outcome.FAILED]
            run.missing, run.left = outcomes[Outcome.MISSING], outcomes[Outcome.LEFT]
        if self._store_down.is_set():
            run.store_error = self._last_store_error
            event(log, "archive.store_unavailable", logging.ERROR, left=run.left, error=run.store_error)
        else:
            run.purged = self._purge_expired()
        run.deleted_local = self._apply_local_retention()
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

    def _pending(self) -> list[_Upload]:
        """Every recording still to archive, in catalog order (one read), with its key, hold and retention. A
        row's store key is fixed, and committed, before its first upload: a retry reuses it."""
        with self.db.session() as session:
            rows = session.execute(
                select(RecordingRow, Creditor.code, Portfolio.code)
                .outerjoin(ContactAttempt, RecordingRow.attempt_id == ContactAttempt.id)
                .outerjoin(Account, ContactAttempt.account_id == Account.id)
                .outerjoin(Portfolio, Account.portfolio_id == Portfolio.id)
                .outerjoin(Creditor, Portfolio.creditor_id == Creditor.id)
                .where(RecordingRow.site == self.site, RecordingRow.state.in_(PENDING))
                .order_by(RecordingRow.id)
            ).all()
            uploads: list[_Upload] = []
            for row, creditor, portfolio in rows:
                if row.store_key is None:
                    row.store_key = self._key(row)
                retain_until = self._retain_until(row, creditor, portfolio)
                uploads.append(_Upload(row.id, Path(row.local_path), row.store_key, row.legal_hold, retain_until))
            return uploads

    def _upload(self, upload: _Upload) -> _Verified | _NotArchived:
        """A worker: checksum the file, put it in the store (which verifies it), apply retention and hold."""
        if self._store_down.is_set():
            return _NotArchived(Outcome.LEFT)
        try:
            checksums = _regular_file_checksums(upload.path)
            store = self.store()
            stored = self._matching(store.put(upload.key, upload.path, checksums), checksums)
            if upload.retain_until is not None or upload.legal_hold:
                store.set_retention(upload.key, upload.retain_until, upload.legal_hold)
        except NotARegularFile as exc:
            return _NotArchived(Outcome.FAILED, error=str(exc))
        except FileNotFoundError:
            return _NotArchived(Outcome.MISSING, error=f"{upload.path} vanished before it was archived")
        except StoreUnavailable as exc:
            self._last_store_error = str(exc)
            self._store_down.set()
            return _NotArchived(Outcome.LEFT, error=f"store unavailable: {exc}")
        except (OSError, IntegrityError) as exc:
            return _NotArchived(Outcome.FAILED, error=f"{type(exc).__name__}: {exc}")
        except Exception as exc:  # a plugin's unexpected error must not stop the other files
            return _NotArchived(Outcome.FAILED, error=f"store error: {exc!r}")
        return _Verified(upload, checksums, stored)

    def _record_failure(self, upload: _Upload, done: _NotArchived) -> Outcome:
        """The run's thread: write why a worker did not archive a recording."""
        if done.error is not None:
            self._fail(upload.recording_id, done.error, state=_FAILED_STATE[done.outcome])
        return done.outcome

    def _commit_verified(self, batch: list[_Verified]) -> Counter[Outcome]:
        """The run's thread: mark a batch of verified uploads ``verified`` in one transaction. A recording put
        on legal hold while it was being uploaded gets the hold in the store first, or fails (the next run
        uploads it again, idempotently, and retries)."""
        committed: list[_Verified] = []
        unheld: dict[int, str] = {}
        now = self.clock.now()
        with self.db.session() as session:
            ids = [done.upload.recording_id for done in batch]
            held = set(
                session.scalars(
                    select(RecordingRow.id).where(RecordingRow.id.in_(ids), RecordingRow.legal_hold).with_for_update()
                )
            )
            for done in batch:
                upload = done.upload
                if upload.recording_id in held and not upload.legal_hold:
                    try:
                        self.store().set_retention(upload.key, upload.retain_until, legal_hold=True)
                    except Exception as exc:
                        unheld[upload.recording_id] = f"applying a legal hold: {exc!r}"
                        continue
                committed.append(done)
            if committed:
                session.execute(update(RecordingRow), [self._verified_row(done, now) for done in committed])
        for recording_id, error in unheld.items():
            self._fail(recording_id, error, state="failed")
        for done in committed:
            recording_id = done.upload.recording_id
            event(log, "recording.archived", recording=recording_id, key=done.upload.key, size=done.stored.size)
            self.hooks.recording_archived(self.site, recording_id, done.stored)
        return Counter({Outcome.VERIFIED: len(committed), Outcome.FAILED: len(unheld)})

    @staticmethod
    def _verified_row(done: _Verified, now: datetime) -> dict[str, Any]:
        """The catalog's new values for a verified recording (a bulk UPDATE by primary key)."""
        return {
            "id": done.upload.recording_id,
            "state": "verified",
            "store_key": done.upload.key,
            "location": done.stored.location,
            "error": None,
            "size": done.checksums.size,
            "md5": done.checksums.md5_hex,
            "sha256": done.checksums.sha256_hex,
            "verified_at": now,
            "retain_until": done.upload.retain_until,
        }

    @staticmethod
    def _matching(stored: StoredObject, checksums: Checksums) -> StoredObject:
        """The store's description of what it holds must match what was read from local disk."""
        if stored.size != checksums.size:
            raise IntegrityError(f"{stored.key}: store holds {stored.size} bytes, expected {checksums.size}")
        if stored.sha256_hex is not None and stored.sha256_hex != checksums.sha256_hex:
            raise IntegrityError(f"{stored.key}: store's sha256 differs from the local file's")
        return stored

    def _key(self, row: RecordingRow) -> str:
        local = row.started_at.astimezone(self.zone)
        call_id = row.attempt_id if row.attempt_id is not None else f"rec-{row.id}"
        return self.config.key_template.format(
            site=self.site,
            yyyy=f"{local:%Y}",
            mm=f"{local:%m}",
            dd=f"{local:%d}",
            call_id=call_id,
            ext=PurePosixPath(row.local_path).suffix.lstrip(".").lower() or "bin",
        )

    def _fail(self, recording_id: int, error: str, state: str | None) -> None:
        with self.db.session() as session:
            row = session.get_one(RecordingRow, recording_id)
            row.failures += 1
            row.error = error
            if state is not None:
                row.state = state
        event(log, "recording.archive_failed", logging.WARNING, recording=recording_id, error=error)

    # --- retention ------------------------------------------------------------------------------------

    def _retain_until(self, row: RecordingRow, creditor: str | None, portfolio: str | None) -> datetime | None:
        """Until when the store keeps ``row``: its portfolio's retention ("CREDITOR/PORTFOLIO", then
        "PORTFOLIO"), else the default; ``None``: no retention."""
        retention = self.config.retention
        days = (
            retention.portfolios.get(f"{creditor}/{portfolio}")
            or retention.portfolios.get(portfolio or "")
            or retention.default_days
        )
        return None if days is None else row.started_at + timedelta(days=days)

    def _purge_expired(self) -> int:
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
            try:
                self.store().delete(key)
            except (ObjectLocked, StoreUnavailable) as exc:
                event(log, "recording.purge_refused", logging.WARNING, recording=recording_id, error=str(exc))
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

    def _apply_local_retention(self) -> int:
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

    # --- for operators --------------------------------------------------------------------------------

    def backlog(self) -> Backlog:
        """What is still only on local disk, for ``check``."""
        with self.db.session() as session:
            waiting, oldest, failing = session.execute(
                select(
                    func.count(),
                    func.min(RecordingRow.found_at),
                    func.count().filter(RecordingRow.error.is_not(None)),
                ).where(RecordingRow.site == self.site, RecordingRow.state.in_(PENDING))
            ).one()
            missing = session.scalar(
                select(func.count()).where(RecordingRow.site == self.site, RecordingRow.state == "missing")
            )
            last_error = session.scalar(
                select(RecordingRow.error)
                .where(RecordingRow.site == self.site, RecordingRow.state.in_((*PENDING, "missing")))
                .where(RecordingRow.error.is_not(None))
                .order_by(RecordingRow.id.desc())
                .limit(1)
            )
        return Backlog(waiting, oldest, failing, missing or 0, last_error)


def _regular_file_checksums(path: Path) -> Checksums:
    """Checksums of the regular file at ``path``; a symlink, FIFO or device is never read, never deleted."""
    try:
        with open_regular(path) as src:
            return stream_checksums(src)
    except NotARegularFile:
        raise NotARegularFile(f"{path} is not a regular file: left alone") from None


def _replaced(path: Path, size: int | None) -> bool:
    """Whether ``path`` exists but is no longer the regular file of ``size`` bytes that was archived."""
    try:
        info = path.lstat()
    except FileNotFoundError:
        return False
    return not stat.S_ISREG(info.st_mode) or (size is not None and info.st_size != size)
