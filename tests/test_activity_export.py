"""The activity export: each activity reaches the creditor once, in order, also across failed uploads."""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator, Sequence
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path

import pytest
from sqlalchemy import select

from cartera.core.clock import SimulatedClock
from cartera.core.errors import CarteraError
from cartera.core.models import Activity, ActivityKind, DeliveryScope
from cartera.core.store.database import Database
from cartera.core.store.schema import Account, Creditor, Debtor, ExportCursor, Portfolio
from cartera.core.testing.context import CapturingContext
from cartera.plugins.crm_sync.csv_dir.config import CsvDirConfig
from cartera.plugins.crm_sync.csv_dir.plugin import CsvDirSync
from cartera.portfolio.export import ActivityExporter, ExportFailed, add_activity, exported_activities
from tests.plugins.crm_sync.test_csv_dir import exported_rows

NOW = datetime(2026, 3, 2, 13, 30, tzinfo=UTC)


@pytest.fixture
def db(tmp_path: Path) -> Iterator[Database]:
    store = Database(f"sqlite:///{tmp_path / 'store.db'}")
    store.migrate()
    with store.session() as session:
        portfolio = Portfolio(creditor=Creditor(code="BCO"), code="TARJETAS", site="t", country="CO")
        debtor = Debtor(name="Ana")
        session.add(Account(portfolio=portfolio, ref="A-1", debtor=debtor, balance=1, currency="COP", updated_at=NOW))
    yield store
    store.dispose()


def record(db: Database, count: int, kind: ActivityKind = ActivityKind.CALL_ATTEMPT) -> None:
    with db.session() as session:
        account = session.scalars(select(Account)).one()
        for _ in range(count):
            add_activity(session, site="t", kind=kind, at=NOW, account=account, phone="+573001234567")


def adapter(tmp_path: Path, **settings: object) -> CsvDirSync:
    config = CsvDirConfig.model_validate(
        {"inbox": tmp_path / "inbox", "outbox": tmp_path / "outbox", "creditor": "BCO", "portfolio": "TARJETAS"}
        | settings
    )
    return CsvDirSync(config, CapturingContext(tmp_path / "data", clock=SimulatedClock(NOW, 1e-6)))


def test_failed_upload_resends_the_same_range_first(tmp_path: Path, db: Database) -> None:
    (tmp_path / "outbox").write_text("a file where the outbox directory should be")
    exporter = ActivityExporter("t", db, adapter(tmp_path), batch_size=3)
    record(db, 2)
    with pytest.raises(NotADirectoryError):
        exporter.run_once()
    with db.session() as session:
        cursor = session.get_one(ExportCursor, ("t", "BCO"))
        assert (cursor.last_seq, cursor.pending_seq) == (0, 2)
    record(db, 2)
    (tmp_path / "outbox").unlink()
    (tmp_path / "outbox").mkdir()
    assert exporter.run_once() == 4
    assert sorted(p.name for p in (tmp_path / "outbox").iterdir()) == [
        "activities-00000001-00000002.csv",
        "activities-00000003-00000004.csv",
    ]
    assert [int(row["secuencia"]) for row in exported_rows(tmp_path / "outbox")] == [1, 2, 3, 4]
    assert exporter.run_once() == 0
    assert exporter.pending() == 0


def test_a_creditor_may_pull_what_the_export_reached_and_no_more(db: Database) -> None:
    """What an adapter's context answers as exported (the ``http`` creditor API's pull): the creditor's
    activities up to its export cursor, the batch being exported included, in seq order, from ``after`` on."""
    assert exported_activities(db, "t", "BCO", 0, 10) == []  # nothing exported yet
    record(db, 3)
    with db.session() as session:
        bco = session.scalars(select(Account)).one()
        portfolio = Portfolio(creditor=Creditor(code="OTRO"), code="TARJETAS", site="t", country="CO")
        other = Account(portfolio=portfolio, ref="O-1", debtor=Debtor(name="Olga"), balance=1, currency="COP")
        other.updated_at = NOW
        add_activity(session, site="t", kind=ActivityKind.CALL_ATTEMPT, at=NOW, account=other)
        add_activity(session, site="t", kind=ActivityKind.CALL_ATTEMPT, at=NOW, account=bco)  # not exported yet
        session.add(ExportCursor(site="t", creditor="BCO", last_seq=1, pending_seq=2))
        session.add(ExportCursor(site="t", creditor="OTRO", last_seq=5))
    assert [a.seq for a in exported_activities(db, "t", "BCO", 0, 10)] == [1, 2]
    assert [a.seq for a in exported_activities(db, "t", "BCO", 1, 10)] == [2]
    assert [a.seq for a in exported_activities(db, "t", "BCO", 0, 1)] == [1]
    assert [(a.seq, a.creditor) for a in exported_activities(db, "t", "OTRO", 0, 10)] == [(4, "OTRO")]
    assert exported_activities(db, "other-site", "BCO", 0, 10) == []


def test_creditor_columns_and_dialect(tmp_path: Path, db: Database) -> None:
    export = {
        "delimiter": ",",
        "encoding": "windows-1252",
        "decimal_comma": False,
        "date_format": "%d/%m/%Y",
        "columns": {"account_ref": "Obligación", "kind": "Gestión", "amount": "Valor", "due_date": "Fecha"},
    }
    (tmp_path / "outbox").mkdir()
    sync = adapter(tmp_path, export=export)
    with db.session() as session:
        account = session.scalars(select(Account)).one()
        add_activity(
            session,
            site="t",
            kind=ActivityKind.PROMISE_TO_PAY,
            at=NOW,
            account=account,
            amount=Decimal("1250000.50"),
            due_date=date(2026, 3, 16),
        )
    ActivityExporter("t", db, sync).run_once()
    (path,) = (tmp_path / "outbox").iterdir()
    assert path.read_bytes().decode("windows-1252") == (
        "Obligación,Gestión,Valor,Fecha\r\nA-1,promise_to_pay,1250000.50,16/03/2026\r\n"
    )


def two_creditors(tmp_path: Path, db: Database) -> None:
    """Activities 1 and 2 of creditor BCO, 3 of creditor CCC; an empty outbox."""
    record(db, 2)  # BCO's account
    with db.session() as session:
        portfolio = Portfolio(creditor=Creditor(code="CCC"), code="P", site="t", country="CO")
        session.add(
            Account(
                portfolio=portfolio, ref="Z-1", debtor=Debtor(name="Zoe"), balance=1, currency="COP", updated_at=NOW
            )
        )
    with db.session() as session:
        zoe = session.scalars(select(Account).where(Account.ref == "Z-1")).one()
        add_activity(session, site="t", kind=ActivityKind.CALL_ATTEMPT, at=NOW, account=zoe, phone="+573001234568")
    (tmp_path / "outbox").mkdir()


class BothCreditors(CsvDirSync):
    """The csv plugin delivering for creditors BCO and CCC (as the ``http`` plugin does for several)."""

    def delivers(self) -> DeliveryScope:
        return DeliveryScope({"BCO": frozenset(), "CCC": frozenset()})


class RefusedFor(BothCreditors):
    """The csv plugin, but the delivery to creditor ``BCO`` fails, as a creditor's refusing webhook does."""

    def export(self, batch: Sequence[Activity]) -> None:
        if batch[0].creditor == "BCO":
            raise CarteraError("BCO's webhook answered HTTP 307")
        super().export(batch)


@pytest.mark.abuse
def test_one_creditors_failed_delivery_holds_back_only_that_creditor(tmp_path: Path, db: Database) -> None:
    """The export went creditor by creditor and stopped at the first failure, so a creditor whose webhook refused
    (at will: it is the creditor's endpoint) froze the export of every creditor after it."""
    two_creditors(tmp_path, db)
    exporter = ActivityExporter("t", db, RefusedFor(adapter(tmp_path).config, CapturingContext(tmp_path / "data")))
    with pytest.raises(ExportFailed, match="BCO: BCO's webhook answered HTTP 307"):
        exporter.run_once()
    assert [int(row["secuencia"]) for row in exported_rows(tmp_path / "outbox")] == [3]
    with db.session() as session:
        assert session.get_one(ExportCursor, ("t", "BCO")).last_seq == 0
        assert session.get_one(ExportCursor, ("t", "CCC")).last_seq == 3


@pytest.mark.abuse
def test_a_creditors_activities_reach_only_an_adapter_that_delivers_for_it(
    tmp_path: Path, db: Database, caplog: pytest.LogCaptureFixture
) -> None:
    """Every creditor with a portfolio at the site was exported through the site's one adapter: a site moved to a
    plugin configured for BCO alone sent CCC's calls (account, time, outcome) into BCO's system."""
    two_creditors(tmp_path, db)
    exporter = ActivityExporter("t", db, adapter(tmp_path))  # configured for BCO
    with caplog.at_level(logging.WARNING):
        assert exporter.run_once() == 2
    assert {row["acreedor"] for row in exported_rows(tmp_path / "outbox")} == {"BCO"}
    (warned,) = [r for r in caplog.records if r.getMessage() == "activities.not_delivered"]
    assert warned.fields == {"creditors": ["CCC"]}  # type: ignore[attr-defined]
    with db.session() as session:
        assert session.get(ExportCursor, ("t", "CCC")) is None  # CCC's wait for an adapter that delivers for it


def test_a_stopping_export_starts_no_further_batch_nor_creditor(tmp_path: Path, db: Database) -> None:
    """Each creditor's delivery may wait its webhook's whole deadline: a node asked to stop while exporting waited
    them all, one creditor after another. What is left is sent by the next run, from the cursors."""
    two_creditors(tmp_path, db)
    stopping = threading.Event()

    class StopAsked(BothCreditors):
        def export(self, batch: Sequence[Activity]) -> None:
            super().export(batch)
            stopping.set()  # the node is asked to stop while this delivery is under way

    sync = StopAsked(adapter(tmp_path).config, CapturingContext(tmp_path / "data"))
    exporter = ActivityExporter("t", db, sync, batch_size=1)
    assert exporter.run_once(stop=stopping.is_set) == 1
    assert [int(row["secuencia"]) for row in exported_rows(tmp_path / "outbox")] == [1]
    stopping.clear()
    assert exporter.run_once(stop=stopping.is_set) == 1  # the next run goes on where this one stopped
    assert exporter.run_once() == 1
    assert [int(row["secuencia"]) for row in exported_rows(tmp_path / "outbox")] == [1, 2, 3]


@pytest.mark.abuse
def test_the_export_on_the_way_out_ends_at_the_first_failure(tmp_path: Path, db: Database) -> None:
    """The export a stopping node makes of its last calls' activities would wait each failing creditor's deadline
    in turn; it gives up at the first failure instead, and the next start sends the rest."""
    two_creditors(tmp_path, db)
    exporter = ActivityExporter("t", db, RefusedFor(adapter(tmp_path).config, CapturingContext(tmp_path / "data")))
    with pytest.raises(ExportFailed, match="BCO: BCO's webhook answered HTTP 307"):
        exporter.run_once(stop_at_failure=True)
    assert exported_rows(tmp_path / "outbox") == []
    with pytest.raises(ExportFailed):
        exporter.run_once()
    assert [int(row["secuencia"]) for row in exported_rows(tmp_path / "outbox")] == [3]
