"""The recordings' catalog: its one door (a dialer's report), what is still to archive, and why not yet.

Catalog states: ``found`` (on local disk) → ``verified`` (the store took the upload, checked it, and its
description matches size and sha256) → ``purged`` (deleted from the store after its retention). ``failed``
rows are retried every run; ``missing`` rows lost their local file before it was archived.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path, PurePosixPath
from typing import Any, cast
from zoneinfo import ZoneInfo

from sqlalchemy import func, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import CursorResult

from cartera.core.adapters import recording_key_problem
from cartera.core.clock import Clock
from cartera.core.config import ArchivalConfig
from cartera.core.logs import event
from cartera.core.models import AGENT_MAX, Recording, storable_agent
from cartera.core.store.database import Database
from cartera.core.store.schema import Account, ContactAttempt, Creditor, Portfolio, RecordingRow
from cartera.recordings.retention import retain_until
from cartera.recordings.upload import Pending

log = logging.getLogger("cartera.archival")

PENDING = ("found", "failed")


@dataclass(frozen=True)
class Backlog:
    """Recordings still only on local disk."""

    waiting: int
    oldest: datetime | None
    failing: int
    missing: int
    last_error: str | None


class Catalog:
    """A site's recordings as the store knows them, with a count of those reported since it was last taken."""

    def __init__(self, *, site: str, zone: ZoneInfo, db: Database, clock: Clock, config: ArchivalConfig) -> None:
        self.site, self.zone, self.db, self.clock, self.config = site, zone, db, clock, config
        self._reported = 0
        self._reported_lock = threading.Lock()

    def catalog(self, recording: Recording) -> int:
        """Record a finished recording a dialer reported as ``found``; returns its catalog id. Idempotent on
        its path: a second report of the same file (a dialer's scan after a restart) changes nothing. The path is
        kept as reported (its folder made absolute): a symlink's target is never taken for the recording."""
        path = str(recording.path.parent.resolve() / recording.path.name)
        agent = storable_agent(recording.agent)
        if recording.agent is not None and agent is None:
            length, shown = len(recording.agent), recording.agent[:AGENT_MAX]
            event(log, "archival.agent_too_long", logging.WARNING, path=path, length=length, agent=shown)
        values = {
            "site": self.site,
            "attempt_id": recording.attempt_id,
            "local_path": path,
            "state": "found",
            "started_at": recording.started_at,
            "duration_s": recording.duration_s,
            "agent": agent,
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

    def take_reported(self) -> int:
        """How many new recordings were reported since the previous call."""
        with self._reported_lock:
            reported, self._reported = self._reported, 0
        return reported

    def pending(self) -> list[Pending]:
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
            pending: list[Pending] = []
            for row, creditor, portfolio in rows:
                if row.store_key is None:
                    row.store_key = self._key(row)
                elif (problem := recording_key_problem(row.store_key)) is not None:
                    self._rekey(row, problem)
                until = retain_until(self.config, row.started_at, creditor, portfolio)
                pending.append(Pending(row.id, Path(row.local_path), row.store_key, row.legal_hold, until))
            return pending

    def fail(self, recording_id: int, error: str, state: str | None) -> bool:
        """Count a failed try of a recording with its ``error``; ``state``: the row's new state, if any. Only a
        row still pending changes (compare-and-set in the UPDATE): a try's report that comes after another
        archiver (the node's job beside a command-line ``archive``) verified the recording is dropped, never
        downgrading it; returns whether the row changed."""
        changes: dict[str, Any] = {"failures": RecordingRow.failures + 1, "error": error}
        if state is not None:
            changes["state"] = state
        with self.db.session() as session:
            changed = cast(
                CursorResult[Any],
                session.execute(
                    update(RecordingRow)
                    .where(RecordingRow.id == recording_id, RecordingRow.state.in_(PENDING))
                    .values(changes)
                    .execution_options(synchronize_session=False)
                ),
            ).rowcount
            found = (
                None if changed else session.scalar(select(RecordingRow.state).where(RecordingRow.id == recording_id))
            )
        if not changed:
            event(log, "recording.failure_ignored", recording=recording_id, state=found, error=error)
            return False
        event(log, "recording.archive_failed", logging.WARNING, recording=recording_id, error=error)
        return True

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

    def _rekey(self, row: RecordingRow, problem: str) -> None:
        """A key a store refuses, given by a template of before such templates were refused, would fail the row
        at every run: it is made again from the current template (never uploaded, as the row is not verified)."""
        new = self._key(row)
        if recording_key_problem(new) is None:
            event(
                log,
                "recording.key_remade",
                logging.WARNING,
                recording=row.id,
                old_key=row.store_key,
                problem=problem,
                key=new,
            )
            row.store_key = new

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
