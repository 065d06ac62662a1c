"""Archival never follows a symlink: the catalog keeps the reported path (not its target), a recording is read
without following one, and a local copy is deleted only while it is still the regular file that was archived
(red team round 5, H2: a spool symlink archived its target and then deleted it)."""

from __future__ import annotations

import logging
import os
from datetime import UTC, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import select

from cartera.core.clock import SystemClock
from cartera.core.config import ArchivalConfig
from cartera.core.hooks import load_plugins
from cartera.core.models import Recording
from cartera.core.store.database import Database
from cartera.core.store.schema import RecordingRow
from cartera.plugin.testing import CapturingContext
from cartera.plugins.recording.localdir.config import LocalDirConfig
from cartera.plugins.recording.localdir.plugin import LocalDirStore
from cartera.recordings.archival import Archiver

pytestmark = pytest.mark.abuse
BEGAN = datetime(2026, 11, 23, 14, 0, tzinfo=UTC)


def _archiver(tmp_path: Path, *, local_retention_hours: float = 0) -> Archiver:
    db = Database(f"sqlite:///{tmp_path / 't.db'}")
    db.migrate()
    store = LocalDirStore(LocalDirConfig(path=tmp_path / "archive", fsync=False), CapturingContext(tmp_path / "d"))
    store.start()
    return Archiver(
        site="t",
        zone=ZoneInfo("America/Bogota"),
        db=db,
        store=lambda: store,
        hooks=load_plugins(entry_points=False),
        clock=SystemClock(),
        config=ArchivalConfig(workers=1, local_retention_hours=local_retention_hours),
    )


def _victim(tmp_path: Path) -> Path:
    victim = tmp_path / "victim" / "important.txt"
    victim.parent.mkdir()
    victim.write_text("the target's text")
    return victim


def _row(archiver: Archiver, recording_id: int) -> RecordingRow:
    with archiver.db.session() as session:
        return session.scalars(select(RecordingRow).where(RecordingRow.id == recording_id)).one()


def test_a_reported_symlink_is_catalogued_as_itself_never_read_and_never_deletes_its_target(tmp_path: Path) -> None:
    archiver = _archiver(tmp_path)
    victim = _victim(tmp_path)
    link = tmp_path / "spool" / "call-123.wav"
    link.parent.mkdir()
    link.symlink_to(victim)
    recording_id = archiver.catalog(Recording(link, None, BEGAN, 1.0))
    assert _row(archiver, recording_id).local_path == str(link)
    run = archiver.run_once()
    assert (run.archived, run.failed, run.deleted_local) == (0, 1, 0)
    row = _row(archiver, recording_id)
    assert (row.state, row.store_key is not None) == ("failed", True)
    assert row.error == f"{link} is not a regular file: left alone"
    assert victim.read_text() == "the target's text"
    assert link.is_symlink()
    assert not any(path.is_file() for path in (tmp_path / "archive").rglob("*"))


def test_a_fifo_is_not_waited_on(tmp_path: Path) -> None:
    archiver = _archiver(tmp_path)
    fifo = tmp_path / "spool" / "pipe.wav"
    fifo.parent.mkdir()
    os.mkfifo(fifo)
    archiver.catalog(Recording(fifo, None, BEGAN, 1.0))
    assert archiver.run_once().failed == 1


@pytest.mark.parametrize("replacement", ["symlink", "other file"])
def test_a_local_copy_replaced_after_archival_is_left_and_logged(
    tmp_path: Path, replacement: str, caplog: pytest.LogCaptureFixture
) -> None:
    archived = tmp_path / "spool" / "call-1.wav"
    archived.parent.mkdir()
    archived.write_bytes(b"RIFF" + bytes(60))
    recording_id = _archiver(tmp_path, local_retention_hours=1).catalog(Recording(archived, None, BEGAN, 1.0))
    assert _archiver(tmp_path, local_retention_hours=1).run_once().archived == 1
    victim = _victim(tmp_path)
    archived.unlink()
    if replacement == "symlink":
        archived.symlink_to(victim)
    else:
        archived.write_bytes(b"another recording, another size")
    with caplog.at_level(logging.WARNING, logger="cartera.archival"):
        assert _archiver(tmp_path).run_once().deleted_local == 0
    assert archived.is_symlink() == (replacement == "symlink")
    assert archived.exists()
    assert victim.read_text() == "the target's text"
    assert _row(_archiver(tmp_path), recording_id).local_deleted_at is None
    assert [record.getMessage() for record in caplog.records] == ["recording.local_copy_replaced"]


def test_the_archived_regular_file_is_still_deleted(tmp_path: Path) -> None:
    archived = tmp_path / "spool" / "call-1.wav"
    archived.parent.mkdir()
    archived.write_bytes(b"RIFF" + bytes(60))
    archiver = _archiver(tmp_path)
    recording_id = archiver.catalog(Recording(archived, None, BEGAN, 1.0))
    run = archiver.run_once()
    assert (run.archived, run.deleted_local) == (1, 1)
    assert not archived.exists()
    assert _row(archiver, recording_id).local_deleted_at is not None
