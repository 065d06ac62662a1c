"""A creditor file still being written under its final name is read only once settled (round 21 A-F12): read at
once, its last row was cut (a balance of 1,250,000 stored as 12) and the rest of the upload landed in the archive."""

from __future__ import annotations

import logging
import os
import time
from decimal import Decimal
from pathlib import Path

import pytest
from sqlalchemy import select

from cartera.core.clock import SimulatedClock
from cartera.core.hooks import Hooks
from cartera.core.models import AssignmentRow
from cartera.core.store.database import Database
from cartera.core.store.schema import Account
from cartera.plugin import DEFAULT_SETTLE_SECONDS, Settling
from cartera.plugins.crm_sync.csv_dir.config import CsvDirConfig
from cartera.plugins.crm_sync.sftp_csv.config import SftpCsvConfig
from cartera.portfolio.export import ActivityExporter
from cartera.portfolio.importer import AssignmentImporter
from cartera.portfolio.sync import CreditorSync
from tests.plugins.crm_sync.test_csv_dir import NOW, make_sync

HEADER = "cuenta;nombre;telefono1;telefono2;saldo;moneda\n"
ROWS = ("BCO-1;Ana;3001234567;;1000;COP", "BCO-2;Eva;3001234568;;1250000;COP", "BCO-3;Luz;3001234569;;5000;COP")
COMPLETE = HEADER + "".join(f"{row}\n" for row in ROWS)
CUT = COMPLETE[: COMPLETE.index("1250000") + 2]  # the upload stalled inside BCO-2's balance


def aged(path: Path, seconds: float) -> None:
    """Give ``path`` a modification time ``seconds`` ago by the node's clock."""
    then = time.time() - seconds
    os.utime(path, (then, then))


def settling_events(caplog: pytest.LogCaptureFixture, name: str) -> list[logging.LogRecord]:
    return [record for record in caplog.records if record.getMessage() == name]


def test_a_file_modified_just_now_is_left_for_a_later_sync_and_read_once_settled(
    tmp_path: Path, hooks: Hooks, caplog: pytest.LogCaptureFixture
) -> None:
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    crm = make_sync(tmp_path, settle_seconds=DEFAULT_SETTLE_SECONDS)
    crm.start()
    db = Database(f"sqlite:///{tmp_path / 'store.db'}")
    db.migrate()
    sync = CreditorSync(
        crm, AssignmentImporter("t", "CO", db, SimulatedClock(NOW, 1.0), hooks), ActivityExporter("t", db, crm)
    )
    path = inbox / "asignacion.csv"
    upload = path.open("w", encoding="utf-8")
    upload.write(CUT)
    upload.flush()
    with caplog.at_level(logging.INFO):
        first, second = sync.run_once(), sync.run_once()
    assert (first.imports, first.failed, second.imports, second.failed) == ([], [], [], [])
    assert [record.levelno for record in settling_events(caplog, "crm_sync.csv.settling")] == [logging.INFO]
    assert path.exists()
    assert not (inbox / "imported").exists()
    upload.write(COMPLETE[len(CUT) :])
    upload.close()
    aged(path, DEFAULT_SETTLE_SECONDS + 1)
    assert [report.new for report in sync.run_once().imports] == [3]
    with db.session() as session:
        balances = dict(session.execute(select(Account.ref, Account.balance)).all())
    db.dispose()
    assert balances == {"BCO-1": Decimal("1000.00"), "BCO-2": Decimal("1250000.00"), "BCO-3": Decimal("5000.00")}
    assert (inbox / "imported" / "asignacion.csv").read_text(encoding="utf-8") == COMPLETE


def test_a_file_listed_unchanged_for_settle_seconds_is_read_whatever_its_time(tmp_path: Path) -> None:
    """A time in the future (a share written by a machine whose clock runs ahead) is settled by the listings."""
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    crm = make_sync(tmp_path, settle_seconds=0.2)
    path = inbox / "asignacion.csv"
    path.write_text(COMPLETE, encoding="utf-8")
    aged(path, -3600)
    assert list(crm.fetch()) == []
    time.sleep(0.25)
    (batch,) = crm.fetch()
    rows = [item for item in batch.items if isinstance(item, AssignmentRow)]
    assert [row.account_ref for row in rows] == ["BCO-1", "BCO-2", "BCO-3"]


def test_a_file_changed_between_listings_waits_again() -> None:
    now = [100.0]
    log = logging.getLogger("test.settle")
    settling = Settling(10, log, "crm_sync.sftp.settling", monotonic=lambda: now[0])
    assert not settling.settled("f", 10, 1)
    now[0] += 9
    assert not settling.settled("f", 10, 1)
    now[0] += 1
    assert settling.settled("f", 10, 1)
    assert not settling.settled("f", 20, 2)  # written again: a new wait
    now[0] += 10
    assert settling.settled("f", 20, 2)
    settling.forget_unlisted([])
    assert not settling.settled("f", 20, 2)  # gone and back: listed anew
    assert settling.settled("g", 10, 1, age=10)
    assert Settling(0, log, "x").settled("h", 1, 1)


def test_settle_seconds_is_one_setting_of_both_plugins() -> None:
    csv_field = CsvDirConfig.model_fields["settle_seconds"]
    sftp_field = SftpCsvConfig.model_fields["settle_seconds"]
    assert csv_field.default == sftp_field.default == DEFAULT_SETTLE_SECONDS
    assert csv_field.metadata == sftp_field.metadata
    assert csv_field.description == sftp_field.description
