"""The catalog's one door: a reported recording is inserted once by path (ON CONFLICT DO NOTHING), however
often and however concurrently it is reported, on SQLite and PostgreSQL."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, cast
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import func, select

from cartera.core.adapters import RecordingStore
from cartera.core.clock import SystemClock
from cartera.core.config import ArchivalConfig
from cartera.core.hooks import load_plugins
from cartera.core.models import Recording
from cartera.core.store.database import Database
from cartera.core.store.schema import RecordingRow
from cartera.recordings.archival import Archiver


def _archiver(url: str) -> Archiver:
    db = Database(url)
    db.migrate()

    return Archiver(
        site="t",
        zone=ZoneInfo("America/Bogota"),
        db=db,
        store=lambda: cast(RecordingStore[Any], object()),  # never reached: the files do not exist
        hooks=load_plugins(entry_points=False),
        clock=SystemClock(),
        config=ArchivalConfig(workers=1),
    )


def _reported_twice_concurrently(archiver: Archiver, spool: Path) -> None:
    paths = [spool / f"{n}.wav" for n in range(20)]
    began = datetime(2026, 11, 23, 14, 0, tzinfo=UTC)
    reports = [Recording(path, None, began, 1.0) for path in paths] * 2
    with ThreadPoolExecutor(8) as pool:
        ids = list(pool.map(archiver.catalog, reports))
    assert ids[:20] == ids[20:]  # the second report of a path answers the first one's id
    assert len(set(ids)) == 20
    with archiver.db.session() as session:
        assert session.scalar(select(func.count()).select_from(RecordingRow)) == 20
    assert archiver.run_once().found == 20  # each counted once (the files do not exist: all missing)
    again = archiver.catalog(Recording(paths[0], 7, began, 2.0, agent="agent-01"))
    assert again == ids[0]
    with archiver.db.session() as session:
        row = session.get_one(RecordingRow, again)
        assert (row.attempt_id, row.agent, row.duration_s) == (None, None, 1.0)  # the first report stands


def test_a_path_is_catalogued_once_on_sqlite(tmp_path: Path) -> None:
    _reported_twice_concurrently(_archiver(f"sqlite:///{tmp_path / 't.db'}"), tmp_path / "spool")


@pytest.mark.postgres
def test_a_path_is_catalogued_once_on_postgresql(postgres_url: str, tmp_path: Path) -> None:
    _reported_twice_concurrently(_archiver(postgres_url), tmp_path / "spool")


@pytest.mark.abuse
@pytest.mark.postgres
def test_an_agent_longer_than_the_store_keeps_does_not_cost_the_recordings_row(
    postgres_url: str, tmp_path: Path
) -> None:
    """Red-team round 17 M3: a PBX's AgentConnect Interface over 64 characters reached recordings.agent
    (String(64)); PostgreSQL refused the row. It is catalogued without the agent (logged)."""
    archiver = _archiver(postgres_url)
    began = datetime(2026, 11, 23, 14, 0, tzinfo=UTC)
    new = archiver.catalog(Recording(tmp_path / "long.wav", None, began, 1.0, agent="PJSIP/" + "a" * 94))
    with archiver.db.session() as session:
        row = session.get_one(RecordingRow, new)
        assert (row.agent, row.duration_s) == (None, 1.0)
