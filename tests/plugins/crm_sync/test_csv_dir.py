"""The ``csv`` crm_sync adapter: the conformance suite plus the CSV layouts creditors really send."""

from __future__ import annotations

import codecs
import contextlib
import csv
import hashlib
import io
import logging
import os
import shutil
import sqlite3
import tracemalloc
from collections.abc import Callable, Iterator
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path
from types import SimpleNamespace
from typing import Any, BinaryIO, ClassVar

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError
from sqlalchemy import func, select, update

from cartera.contact.phones import InvalidPhone, normalize
from cartera.core.adapters import CrmSync
from cartera.core.clock import SimulatedClock
from cartera.core.hooks import Hooks
from cartera.core.models import (
    Activity,
    ActivityKind,
    AssignmentAction,
    AssignmentBatch,
    AssignmentRow,
    CheckResult,
    DeliveryScope,
    FileRejected,
    RowError,
)
from cartera.core.registry import AdapterRegistry
from cartera.core.store.database import Database
from cartera.core.store.schema import Account, ImportBatch
from cartera.core.testing.context import CapturingContext
from cartera.core.testing.crm_sync import CrmSyncConformance, Delivery, RejectedDelivery
from cartera.plugins.crm_sync.csv_dir import plugin as csv_dir_plugin
from cartera.plugins.crm_sync.csv_dir.client import open_entry
from cartera.plugins.crm_sync.csv_dir.config import CsvDirConfig
from cartera.plugins.crm_sync.csv_dir.plugin import CsvDirSync, cartera_register_crm_syncs
from cartera.plugins.crm_sync.sftp_csv.config import SftpCsvConfig
from cartera.portfolio.export import ActivityExporter
from cartera.portfolio.files import reader as reader_module
from cartera.portfolio.files.config import ColumnsConfig
from cartera.portfolio.files.set_aside import FORGET_AFTER, SET_ASIDE_FILE, SetAsideFile, SetAsideFiles
from cartera.portfolio.files.values import parse_amount
from cartera.portfolio.importer import AssignmentImporter
from cartera.portfolio.sync import CreditorSync

FIXTURES = Path(__file__).parent / "fixtures"
DEMO = Path(__file__).parents[3] / "examples" / "demo_portfolio.csv"
NOW = datetime(2026, 3, 2, 13, 30, tzinfo=UTC)

GOOD_DELIVERY = (
    "cuenta;nombre;telefono1;telefono2;saldo;moneda\r\n"
    "BCO-000101;Luis Fernando Gómez Rojas;300 123 4567;601 5550123;1.250.000,50;COP\r\n"
    "BCO-000102;María Camila Rodríguez Pérez;3101234567;;180.000;COP\r\n"
    "BCO-000103;Jorge Enrique Martínez Castro;+57 315 555 0101;;12.500.000;COP\r\n"
    "BCO-000104;Ana Milena Vargas Ospina;3001234567;;mil pesos;COP\r\n"
    "BCO-000105;Diana Marcela Torres Muñoz;+52 55 5512 3456;;999.000;COP\r\n"
)


WRONG_HEADER = "account;name;phone;amount\nBCO-1;Ana;3001234567;1000\n"


def make_sync(tmp_path: Path, context: CapturingContext | None = None, **settings: Any) -> CsvDirSync:
    """A csv adapter on ``tmp_path``'s inbox and outbox; files are read as soon as listed unless ``settle_seconds``
    is given (test_settle.py)."""
    config = CsvDirConfig.model_validate(
        {"inbox": tmp_path / "inbox", "outbox": tmp_path / "outbox", "creditor": "BCO", "portfolio": "TARJETAS"}
        | {"settle_seconds": 0}
        | settings
    )
    return CsvDirSync(config, context or CapturingContext(tmp_path / "data", clock=SimulatedClock(NOW, 1e-6)))


def read(sync: CsvDirSync, path: Path) -> tuple[list[AssignmentRow], list[RowError]]:
    items = list(sync.read_file(path).items)
    return [i for i in items if isinstance(i, AssignmentRow)], [i for i in items if isinstance(i, RowError)]


def exported_rows(outbox: Path) -> list[dict[str, str]]:
    rows: list[dict[str, str]] = []
    for path in sorted(outbox.glob("*.csv")):
        with path.open(encoding="utf-8-sig", newline="") as stream:
            rows.extend(csv.DictReader(stream, delimiter=";"))
    return rows


class TestCsvDirConformance(CrmSyncConformance):
    settings: ClassVar[dict[str, Any]] = {}

    @pytest.fixture
    def context(self, tmp_path: Path) -> CapturingContext:
        return CapturingContext(tmp_path / "data", clock=SimulatedClock(NOW, 1e-6))

    @pytest.fixture
    def crm(self, tmp_path: Path, context: CapturingContext) -> Iterator[CrmSync[Any]]:
        (tmp_path / "inbox").mkdir()
        sync = make_sync(tmp_path, context, **self.settings)
        sync.start()
        yield sync
        sync.stop()

    @pytest.fixture
    def good_delivery(self, crm: CsvDirSync) -> Delivery:
        path = crm.config.inbox / "asignacion-20260302.csv"
        path.write_bytes(codecs.BOM_UTF8 + GOOD_DELIVERY.encode())
        refs = ("BCO-000101", "BCO-000102", "BCO-000103", "BCO-000105")
        return Delivery(path=path, account_refs=refs, rejected_line=5, creditor="BCO", portfolio="TARJETAS")

    @pytest.fixture
    def bad_header_file(self, tmp_path: Path) -> Path:
        path = tmp_path / "wrong-header.csv"
        path.write_text("account;name;phone;amount\nBCO-1;Ana;3001234567;1000\n", encoding="utf-8")
        return path

    @pytest.fixture
    def rejected_delivery(self, crm: CsvDirSync) -> RejectedDelivery:
        (crm.config.inbox / "asignacion-rota.csv").write_text(WRONG_HEADER, encoding="utf-8")

        def set_aside() -> list[bytes]:
            if crm.config.keep_files:
                store = SetAsideFiles(crm.context.data_dir / SET_ASIDE_FILE, logging.getLogger())
                hashes = {kept.sha256 for kept in store.sources().values() if kept.kind == "rejected"}
                files = sorted(crm.config.inbox.glob("*.csv"))
                return [path.read_bytes() for path in files if hashlib.sha256(path.read_bytes()).hexdigest() in hashes]
            folder = crm.config.rejected_dir
            return [path.read_bytes() for path in sorted(folder.iterdir())] if folder.exists() else []

        return RejectedDelivery(set_aside)

    @pytest.fixture
    def exported_seqs(self, crm: CsvDirSync) -> Callable[[], list[int]]:
        return lambda: [int(row["secuencia"]) for row in exported_rows(crm.config.outbox)]


class TestCsvDirKeepFilesConformance(TestCsvDirConformance):
    settings: ClassVar[dict[str, Any]] = {"keep_files": True}


@pytest.fixture
def sync(tmp_path: Path) -> CsvDirSync:
    (tmp_path / "inbox").mkdir()
    adapter = make_sync(tmp_path)
    adapter.start()
    return adapter


def test_utf8_bom_semicolons_decimal_comma_and_actions(sync: CsvDirSync) -> None:
    rows, errors = read(sync, FIXTURES / "bom_semicolon.csv")
    assert rows == [
        AssignmentRow(
            line=2,
            creditor="BCO",
            portfolio="TARJETAS",
            account_ref="CR-1",
            debtor_name="Ana Pérez",
            phones=("300 123 4567", "601 5550123"),
            balance=Decimal("1250000.50"),
            currency="COP",
        ),
        AssignmentRow(
            3, "BCO", "TARJETAS", "CR-2", "Luis Gómez", ("3101234567", "+57 315 555 0101"), Decimal(180000), "COP"
        ),
        AssignmentRow(5, "BCO", "TARJETAS", "CR-3", "", (), Decimal(0), "COP", AssignmentAction.WITHDRAW),
        AssignmentRow(
            6,
            "BCO",
            "TARJETAS",
            "CR-4",
            "",
            (),
            Decimal(0),
            "COP",
            AssignmentAction.PAYMENT,
            payment_amount=Decimal(75000),
        ),
    ]
    assert [(e.line, e.field) for e in errors] == [(7, "account_ref"), (8, "action"), (9, "balance")]
    assert errors[1].reason.startswith("unknown action 'suspender' (use 'asignar', 'nuevo', 'assign'")
    assert errors[2].reason == "column 'saldo': 'mil pesos' is not an amount"


def test_utf8_without_bom_commas_decimal_point(sync: CsvDirSync) -> None:
    rows, errors = read(sync, FIXTURES / "plain_comma.csv")
    assert errors == []
    assert [(r.line, r.account_ref, r.debtor_name, r.balance) for r in rows] == [
        (2, "CR-10", "Gómez, Ana", Decimal("1250000.50")),
        (3, "CR-11", "Luis Peña", Decimal("1250000.5")),
        (4, "CR-12", "José Núñez", Decimal(980000)),
    ]


def test_windows_1252_names(sync: CsvDirSync) -> None:
    raw = (FIXTURES / "windows1252.csv").read_bytes()
    assert "ñ".encode("windows-1252") in raw
    rows, errors = read(sync, FIXTURES / "windows1252.csv")
    assert errors == []
    assert [(r.debtor_name, r.balance) for r in rows] == [
        ("Begoña Muñoz", Decimal(2500000)),
        ("José Hernández", Decimal("99999.99")),
    ]


def test_configured_delimiter_encoding_and_decimals(tmp_path: Path) -> None:
    path = tmp_path / "explicit.csv"
    path.write_bytes("cuenta,nombre,telefono1,saldo,nota;a;b;c;d\nCR-1,Peña,3001234567,180.000,x\n".encode("cp1252"))
    sync = make_sync(tmp_path, delimiter=",", encoding="windows-1252", decimal_comma=False)
    rows, _ = read(sync, path)
    assert [(r.debtor_name, r.balance) for r in rows] == [("Peña", Decimal("180.000"))]


def test_custom_column_mapping(tmp_path: Path) -> None:
    columns = {
        "account_ref": "Numero de obligacion",
        "debtor_name": "nombre completo",
        "phones": ["celular", "fijo"],
        "balance": "saldo capital",
        "action": "novedad",
    }
    rows, errors = read(make_sync(tmp_path, columns=columns), FIXTURES / "custom_columns.csv")
    assert errors == []
    assert [(r.account_ref, r.phones, r.balance, r.action) for r in rows] == [
        ("OB-1", ("3001234567", "601 5550123"), Decimal(1000000), AssignmentAction.ASSIGN),
        ("OB-2", ("601 5550124",), Decimal(2000000), AssignmentAction.WITHDRAW),
    ]


def test_missing_required_column_names_it_and_the_file(sync: CsvDirSync) -> None:
    path = FIXTURES / "missing_column.csv"
    with pytest.raises(FileRejected) as rejected:
        list(sync.read_file(path).items)
    assert rejected.value.source == str(path)
    assert rejected.value.reason.startswith("line 1: missing required column(s) saldo in the header")
    assert "found: cuenta, nombre, telefono1, valor" in rejected.value.reason


def test_no_phone_column_is_missing(tmp_path: Path) -> None:
    path = tmp_path / "no-phones.csv"
    path.write_text("cuenta;nombre;saldo\nCR-1;Ana;1.000\n", encoding="utf-8")
    with pytest.raises(FileRejected, match="telefono1 or telefono2 or telefono3"):
        list(make_sync(tmp_path).read_file(path).items)


@pytest.mark.parametrize(
    ("encoding", "expected"),
    [
        ("utf-8", "line 3: byte 0xe9 at column 9 is not valid utf-8 (the file is probably windows-1252 or latin-1"),
        (None, "line 3: byte 0x81 at column 9 is not valid UTF-8 or Windows-1252"),
    ],
)
def test_undecodable_bytes_name_the_line(tmp_path: Path, encoding: str | None, expected: str) -> None:
    path = tmp_path / "broken.csv"
    bad = b"\xe9" if encoding else b"\x81"
    path.write_bytes(b"cuenta;nombre;telefono1;saldo\nCR-1;Ana;3001234567;1\nCR-2;Jos" + bad + b";3001234567;1\n")
    rows: list[AssignmentRow | RowError] = []
    with pytest.raises(FileRejected) as rejected:
        rows.extend(make_sync(tmp_path, encoding=encoding).read_file(path).items)
    assert rejected.value.reason.startswith(expected)
    assert [item.line for item in rows] == [2]


def test_empty_file_is_rejected(tmp_path: Path) -> None:
    path = tmp_path / "empty.csv"
    path.write_bytes(b"")
    with pytest.raises(FileRejected, match="empty file"):
        list(make_sync(tmp_path).read_file(path).items)


def test_classic_mac_line_endings_are_rejected_naming_the_line(tmp_path: Path) -> None:
    path = tmp_path / "mac.csv"
    path.write_bytes(b"cuenta;nombre;telefono1;saldo\rCR-1;Ana;3001234567;1\r")
    with pytest.raises(FileRejected, match=r"line 1: line ends are bare CR, without LF"):
        list(make_sync(tmp_path).read_file(path).items)


def test_unreadable_file_is_rejected(tmp_path: Path) -> None:
    with pytest.raises(FileRejected, match="cannot read"):
        make_sync(tmp_path).read_file(tmp_path / "absent.csv")


def test_file_changed_while_read_is_rejected(tmp_path: Path) -> None:
    path = tmp_path / "growing.csv"
    path.write_text("cuenta;nombre;telefono1;saldo\nCR-1;Ana;3001234567;1\n", encoding="utf-8")
    batch = make_sync(tmp_path).read_file(path)
    with path.open("a", encoding="utf-8") as stream:
        stream.write("CR-2;Luis;3101234567;2\n")
    with pytest.raises(FileRejected, match="changed while it was being read"):
        list(batch.items)


def test_items_can_be_iterated_again(sync: CsvDirSync) -> None:
    batch = sync.read_file(FIXTURES / "plain_comma.csv")
    assert list(batch.items) == list(batch.items)
    assert len(list(batch.items)) == 3


@pytest.mark.parametrize(
    ("text", "decimal_comma", "expected"),
    [
        ("1.250.000,50", None, Decimal("1250000.50")),
        ("1,250,000.50", None, Decimal("1250000.50")),
        ("1250000.5", None, Decimal("1250000.5")),
        ("180.000", None, Decimal(180000)),
        ("12,5", None, Decimal("12.5")),
        ("$ 1.000", None, Decimal(1000)),
        ("-7", None, Decimal(-7)),
        ("180.000", False, Decimal("180.000")),
        ("1.250,5", True, Decimal("1250.5")),
        ("1,250.5", True, None),
        ("12.50.000", None, None),
        ("1.2.3,4,5", None, None),
        ("10,", None, None),
        ("mil pesos", None, None),
        ("", None, None),
    ],
)
def test_parse_amount(text: str, decimal_comma: bool | None, expected: Decimal | None) -> None:
    assert parse_amount(text, decimal_comma) == expected


def test_negative_balance_and_bad_currency_are_row_errors(tmp_path: Path) -> None:
    path = tmp_path / "odd.csv"
    path.write_text(
        "cuenta;nombre;telefono1;saldo;moneda;accion\n"
        "CR-1;Ana;3001234567;-5;COP;\n"
        "CR-2;Luis;3101234567;5;pesos;\n"
        "CR-3;;;0;COP;pago\n",
        encoding="utf-8",
    )
    _, errors = read(make_sync(tmp_path), path)
    assert [(e.line, e.field) for e in errors] == [(2, "balance"), (3, "currency"), (4, "balance")]


def test_export_file_content(sync: CsvDirSync) -> None:
    at = datetime(2026, 3, 2, 14, 5, 30, tzinfo=UTC)
    activities = [
        Activity(7, ActivityKind.CALL_ATTEMPT, at, "BCO", "TARJETAS", "BCO-000101", "+573001234567", "busy"),
        Activity(
            9,
            ActivityKind.PROMISE_TO_PAY,
            at,
            "BCO",
            "TARJETAS",
            "BCO-000102",
            outcome="promise_to_pay",
            amount=Decimal("1250000.50"),
            due_date=date(2026, 3, 16),
            agent="agente; 07",
        ),
    ]
    sync.export(activities)
    outbox = sync.config.outbox
    assert sorted(p.name for p in outbox.iterdir()) == ["activities-00000007-00000009.csv"]
    raw = (outbox / "activities-00000007-00000009.csv").read_bytes()
    assert raw.startswith(codecs.BOM_UTF8)
    assert raw.endswith(b"\r\n")
    with (outbox / "activities-00000007-00000009.csv").open(encoding="utf-8-sig", newline="") as stream:
        assert list(csv.reader(stream, delimiter=";")) == [
            [
                "secuencia",
                "tipo",
                "fecha_hora",
                "acreedor",
                "cartera",
                "cuenta",
                "telefono",
                "resultado",
                "monto",
                "fecha_compromiso",
                "agente",
            ],
            [
                "7",
                "call_attempt",
                "2026-03-02T14:05:30+00:00",
                "BCO",
                "TARJETAS",
                "BCO-000101",
                "+573001234567",
                "busy",
                "",
                "",
                "",
            ],
            [
                "9",
                "promise_to_pay",
                "2026-03-02T14:05:30+00:00",
                "BCO",
                "TARJETAS",
                "BCO-000102",
                "",
                "promise_to_pay",
                "1250000,50",
                "2026-03-16",
                "agente; 07",
            ],
        ]
    sync.export(activities)
    assert (outbox / "activities-00000007-00000009.csv").read_bytes() == raw
    assert len(list(outbox.iterdir())) == 1


def test_acknowledge_moves_the_file_into_the_archive(sync: CsvDirSync) -> None:
    inbox = sync.config.inbox
    for name in ("b.csv", "a.csv", "notes.txt"):
        shutil.copy(FIXTURES / "plain_comma.csv", inbox / name)
    (inbox / "imported").mkdir()
    shutil.copy(FIXTURES / "plain_comma.csv", inbox / "imported" / "a.csv")
    batches = list(sync.fetch())
    assert [Path(b.source).name for b in batches] == ["a.csv", "b.csv"]
    sync.acknowledge(batches[0])
    assert sorted(p.name for p in (inbox / "imported").iterdir()) == ["a-20260302T133000Z.csv", "a.csv"]
    assert [Path(b.source).name for b in sync.fetch()] == ["b.csv"]
    recursive = make_sync(sync.config.inbox.parent, pattern="**/*.csv")
    assert [Path(b.source).name for b in recursive.fetch()] == ["b.csv"]
    sync.acknowledge(batches[0])
    assert len(list((inbox / "imported").iterdir())) == 2


def test_acknowledge_leaves_changed_and_outside_files(sync: CsvDirSync, tmp_path: Path) -> None:
    inbox_file = sync.config.inbox / "a.csv"
    shutil.copy(FIXTURES / "plain_comma.csv", inbox_file)
    (batch,) = sync.fetch()
    with inbox_file.open("a", encoding="utf-8") as stream:
        stream.write("CR-13,Ana,3001234567,1\n")
    sync.acknowledge(batch)
    outside = tmp_path / "elsewhere.csv"
    shutil.copy(FIXTURES / "plain_comma.csv", outside)
    sync.acknowledge(sync.read_file(outside))
    assert inbox_file.exists()
    assert outside.exists()
    assert not sync.config.archive_dir.exists()


def test_rejected_file_is_set_aside_once_and_a_corrected_one_imports(
    tmp_path: Path, hooks: Hooks, caplog: pytest.LogCaptureFixture
) -> None:
    inbox, outbox = tmp_path / "inbox", tmp_path / "outbox"
    inbox.mkdir()
    sync = make_sync(tmp_path)
    sync.start()
    db = Database(f"sqlite:///{tmp_path / 'store.db'}")
    db.migrate()
    job = CreditorSync(
        sync, AssignmentImporter("t", "CO", db, SimulatedClock(NOW, 1.0), hooks), ActivityExporter("t", db, sync)
    )
    caplog.set_level(logging.INFO)
    try:
        (inbox / "asignacion.csv").write_text(WRONG_HEADER, encoding="utf-8")
        outbox.rmdir()
        outbox.write_text("in the way")  # the report cannot be written: nothing is set aside
        (failed,) = job.run_once().failed
        assert "NotADirectoryError" in failed
        assert [p.name for p in inbox.iterdir()] == ["asignacion.csv"]
        outbox.unlink()
        outbox.mkdir()
        runs = [job.run_once(), job.run_once()]
        assert [len(run.rejected) for run in runs] == [1, 0]
        rejections = [r for r in caplog.records if r.getMessage() == "sync.file_rejected"]
        assert len(rejections) == 2  # the failed sync and the first one after it
        assert [p.name for p in outbox.iterdir()] == ["asignacion.rechazos.csv"]
        assert sorted(p.name for p in inbox.iterdir()) == ["rejected"]
        assert (inbox / "rejected" / "asignacion.csv").read_text(encoding="utf-8") == WRONG_HEADER
        (inbox / "asignacion.csv").write_bytes(GOOD_DELIVERY.encode())  # corrected, under the same name
        (imported,) = job.run_once().imports
        assert (imported.new, len(imported.quarantined)) == (4, 1)
        (inbox / "asignacion.csv").write_text(WRONG_HEADER, encoding="utf-8")  # the same mistake again
        assert len(job.run_once().rejected) == 1
        assert sorted(p.name for p in (inbox / "rejected").iterdir()) == [
            "asignacion-20260302T133000Z.csv",
            "asignacion.csv",
        ]
        assert [p.name for p in (inbox / "imported").iterdir()] == ["asignacion.csv"]
    finally:
        db.dispose()


def test_reject_leaves_changed_and_outside_files(sync: CsvDirSync, tmp_path: Path) -> None:
    inbox_file = sync.config.inbox / "a.csv"
    inbox_file.write_text(WRONG_HEADER, encoding="utf-8")
    (batch,) = sync.fetch()
    inbox_file.write_bytes(GOOD_DELIVERY.encode())  # the creditor replaced it meanwhile
    sync.reject(batch)
    outside = tmp_path / "elsewhere.csv"
    outside.write_text(WRONG_HEADER, encoding="utf-8")
    sync.reject(sync.read_file(outside))
    assert inbox_file.read_bytes() == GOOD_DELIVERY.encode()
    assert outside.exists()
    assert not sync.config.rejected_dir.exists()


def kept_file(tmp_path: Path, content: bytes) -> tuple[CsvDirSync, AssignmentBatch]:
    """``inbox/a.csv`` holding ``content``, fetched and imported with ``keep_files``: left in the inbox."""
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    (inbox / "a.csv").write_bytes(content)
    sync = make_sync(tmp_path, keep_files=True)
    (batch,) = sync.fetch()
    sync.acknowledge(batch)
    return sync, batch


def identity_of(path: Path) -> str:
    status = path.stat()
    return f"{status.st_dev}:{status.st_ino}:{status.st_size}:{status.st_mtime_ns}:{status.st_ctime_ns}"


def test_keep_files_remembers_acknowledged_content(tmp_path: Path) -> None:
    inbox = tmp_path / "inbox"
    sync, batch = kept_file(tmp_path, (FIXTURES / "plain_comma.csv").read_bytes())
    assert sorted(p.name for p in inbox.iterdir()) == ["a.csv"]
    stored = SetAsideFiles(tmp_path / "data" / SET_ASIDE_FILE, logging.getLogger()).sources()
    kept = SetAsideFile(identity_of(inbox / "a.csv"), batch.content_sha256, "imported")
    assert stored == {str(inbox / "a.csv"): kept}
    assert list(make_sync(tmp_path, keep_files=True).fetch()) == []
    with (inbox / "a.csv").open("a", encoding="utf-8") as stream:
        stream.write("CR-13,Ana,3001234567,1\n")
    assert [len(list(b.items)) for b in sync.fetch()] == [4]
    assert SetAsideFiles(tmp_path / "data" / SET_ASIDE_FILE, logging.getLogger()).sources() == {}  # changed


def kept_in_the_inbox(tmp_path: Path, *names: str) -> tuple[Path, CsvDirSync]:
    """An inbox holding ``names``, each imported and kept there (``keep_files``), and its adapter."""
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    sync = make_sync(tmp_path, keep_files=True)
    for name in names:
        shutil.copy(FIXTURES / "plain_comma.csv", inbox / name)
    for batch in list(sync.fetch()):
        sync.acknowledge(batch)
    return inbox, sync


def test_files_set_aside_are_forgotten_once_gone_from_the_inbox_and_never_while_there(tmp_path: Path) -> None:
    """The memory of files kept in the inbox is bounded by the inbox: a file still there is never forgotten
    (fetched again it would be applied again after a later delivery), one gone for FORGET_AFTER is."""
    inbox, sync = kept_in_the_inbox(tmp_path, "a.csv", "b.csv")
    (inbox / "wrong.csv").write_text(WRONG_HEADER, encoding="utf-8")
    (rejected,) = sync.fetch()
    sync.reject(rejected)
    store = SetAsideFiles(tmp_path / "data" / SET_ASIDE_FILE, logging.getLogger())
    assert {Path(source).name: kept.kind for source, kept in store.sources().items()} == {
        "a.csv": "imported",
        "b.csv": "imported",
        "wrong.csv": "rejected",
    }
    (inbox / "a.csv").unlink()
    (inbox / "wrong.csv").rename(tmp_path / "wrong.csv")
    assert list(sync.fetch()) == []
    assert len(store.sources()) == 3  # gone for less than FORGET_AFTER: remembered still
    age_set_aside(tmp_path, FORGET_AFTER)
    assert list(sync.fetch()) == []
    assert [Path(source).name for source in store.sources()] == ["b.csv"]
    shutil.rmtree(inbox)  # an inbox that is not there (an unmounted share) forgets nothing
    assert list(sync.fetch()) == []
    assert [Path(source).name for source in store.sources()] == ["b.csv"]


def age_set_aside(tmp_path: Path, seconds: float) -> None:
    """As if ``seconds`` had gone by since the inbox last listed each file remembered."""
    with contextlib.closing(sqlite3.connect(tmp_path / "data" / SET_ASIDE_FILE)) as db, db:
        db.execute("UPDATE files SET last_seen = last_seen - ?", (seconds,))


def test_one_empty_listing_of_the_inbox_forgets_no_kept_file(tmp_path: Path) -> None:
    """Round 22 A-F8: the inbox being a share's mount point, unmounted for one sync (an empty directory), forgot
    every kept file; mounted again, each was fetched (and applied over later deliveries) again. Gone for longer
    than FORGET_AFTER, a file is forgotten."""
    inbox, sync = kept_in_the_inbox(tmp_path, "a.csv", "b.csv")
    inbox.rename(tmp_path / "share")
    inbox.mkdir()  # the share unmounted: its empty mount point
    assert list(sync.fetch()) == []
    inbox.rmdir()
    (tmp_path / "share").rename(inbox)
    assert list(sync.fetch()) == []
    (inbox / "a.csv").unlink()
    age_set_aside(tmp_path, FORGET_AFTER)
    assert list(sync.fetch()) == []
    store = SetAsideFiles(tmp_path / "data" / SET_ASIDE_FILE, logging.getLogger())
    assert [Path(source).name for source in store.sources()] == ["b.csv"]


@pytest.mark.abuse
def test_the_same_inbox_named_by_another_path_fetches_no_kept_file_again(tmp_path: Path) -> None:
    """Round 23 A-F8: the inbox configured by another path to the same folder (through a symlink: a share mounted
    elsewhere, the other name of a link) fetched every kept file again, and the entries under the old path were
    never forgotten. They are the same inbox's entries: taken under the path configured now."""
    _, sync = kept_in_the_inbox(tmp_path, "a.csv", "b.csv")
    sync.stop()
    (tmp_path / "share").symlink_to(tmp_path)
    moved = make_sync(tmp_path, keep_files=True, inbox=tmp_path / "share" / "inbox")
    assert list(moved.fetch()) == []
    store = SetAsideFiles(tmp_path / "data" / SET_ASIDE_FILE, logging.getLogger())
    assert sorted(store.sources()) == [str(tmp_path / "share" / "inbox" / name) for name in ("a.csv", "b.csv")]
    moved.stop()
    assert list(make_sync(tmp_path, keep_files=True).fetch()) == []  # and back again


def test_an_inbox_that_cannot_be_listed_fails_the_fetch_and_forgets_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Round 22 A-F8: an unreadable inbox (a chmod, an ACL, a share's I/O error) was listed empty by pathlib's
    glob, the sync reported nothing and every kept file was forgotten, then applied again once readable. The
    listing's error fails the fetch (the sync reports it), and check says so."""
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    sync = make_sync(tmp_path, keep_files=True)
    shutil.copy(FIXTURES / "plain_comma.csv", inbox / "a.csv")
    (batch,) = sync.fetch()
    sync.acknowledge(batch)
    scandir = os.scandir

    def refused(path: Any = ".") -> Any:
        if Path(path) == inbox:
            raise PermissionError(13, "Permission denied", str(path))
        return scandir(path)

    sync.config.outbox.mkdir(exist_ok=True)
    monkeypatch.setattr(os, "scandir", refused)
    with pytest.raises(PermissionError):
        list(sync.fetch())
    result = sync.check()
    assert not result.ok
    assert "cannot be listed" in result.detail
    monkeypatch.setattr(os, "scandir", scandir)
    assert list(sync.fetch()) == []
    assert sync.check().ok


@pytest.mark.parametrize("keep_files", [False, True])
def test_a_node_upgraded_in_place_fetches_none_of_the_files_its_old_ledgers_remembered(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, keep_files: bool
) -> None:
    """An earlier version remembered files left in the inbox in acknowledged.sha256 and rejected.sha256 (lines
    ``sha256  device:inode:size:mtime_ns:ctime_ns  source``): the new plugin takes them over once, so none of those
    files is fetched (and applied) again after the upgrade; a file changed since is a new delivery."""
    caplog.set_level(logging.INFO)
    inbox, data = tmp_path / "inbox", tmp_path / "data"
    inbox.mkdir()
    data.mkdir()
    shutil.copy(FIXTURES / "plain_comma.csv", inbox / "kept.csv")
    (inbox / "wrong.csv").write_text(WRONG_HEADER, encoding="utf-8")
    shutil.copy(FIXTURES / "plain_comma.csv", inbox / "changed.csv")

    def line(name: str) -> str:
        path = inbox / name
        status = path.stat()
        identity = f"{status.st_dev}:{status.st_ino}:{status.st_size}:{status.st_mtime_ns}:{status.st_ctime_ns}"
        return f"{hashlib.sha256(path.read_bytes()).hexdigest()}  {identity}  {path}\n"

    (data / "acknowledged.sha256").write_text(
        f"{'0' * 64}  1:2:3:4:5  {inbox / 'kept.csv'}\n{line('kept.csv')}{line('changed.csv')}{'1' * 64}  /elsewhere\n"
    )
    shutil.copy(FIXTURES / "plain_comma.csv", inbox / "replaced.csv")  # rejected once, then imported corrected
    (data / "rejected.sha256").write_text(f"{line('wrong.csv')}{'2' * 64}  9:9:9:9:9  {inbox / 'replaced.csv'}\n")
    with (data / "acknowledged.sha256").open("a", encoding="utf-8") as stream:
        stream.write(line("replaced.csv"))
    with (inbox / "changed.csv").open("a", encoding="utf-8") as stream:
        stream.write("CR-13,Ana,3001234567,1\n")
    sync = make_sync(tmp_path, keep_files=keep_files)
    assert [Path(batch.source).name for batch in sync.fetch()] == ["changed.csv"]
    assert not (data / "acknowledged.sha256").exists()
    assert not (data / "rejected.sha256").exists()
    assert "crm_sync.set_aside.upgraded" in [record.getMessage() for record in caplog.records]
    assert [Path(batch.source).name for batch in make_sync(tmp_path, keep_files=keep_files).fetch()] == ["changed.csv"]


def test_check_counts_waiting_files_and_names_missing_dirs(tmp_path: Path) -> None:
    sync = make_sync(tmp_path)
    sync.start()
    result = sync.check()
    assert not result.ok
    assert result.detail == f"inbox {tmp_path / 'inbox'} is not a readable directory"
    (tmp_path / "inbox").mkdir()
    shutil.copy(FIXTURES / "plain_comma.csv", tmp_path / "inbox" / "a.csv")
    result = sync.check()
    assert result.ok
    assert result.detail == (
        f"inbox {tmp_path / 'inbox'} readable, 1 file(s) waiting; outbox {tmp_path / 'outbox'} writable"
    )
    (tmp_path / "outbox").rmdir()
    assert sync.check() == CheckResult(False, f"outbox {tmp_path / 'outbox'} is not a writable directory")


def test_config_defaults_paths_and_validation(tmp_path: Path) -> None:
    config = CsvDirConfig.model_validate(
        {"inbox": "entrada", "outbox": "/srv/salida", "creditor": "BCO", "portfolio": "TARJETAS"},
        context={"base_dir": tmp_path},
    )
    assert (config.inbox, config.outbox) == (tmp_path / "entrada", Path("/srv/salida"))
    assert config.archive_dir == tmp_path / "entrada" / "imported"
    assert (config.pattern, config.currency, config.columns) == ("*.csv", "COP", ColumnsConfig())
    assert config.columns.phones == ("telefono1", "telefono2", "telefono3")
    for bad in ({"encoding": "utf-16"}, {"encoding": "klingon"}, {"delimiter": "|"}, {"columns": {"cuenta": "x"}}):
        with pytest.raises(ValidationError):
            CsvDirConfig.model_validate({"inbox": "i", "outbox": "o", "creditor": "B", "portfolio": "P"} | bad)


def test_registered_under_csv() -> None:
    registry: AdapterRegistry[CrmSync[Any]] = AdapterRegistry("crm_sync", CrmSync)
    cartera_register_crm_syncs(registry)
    assert registry.get("csv") is CsvDirSync


def test_demo_portfolio(sync: CsvDirSync) -> None:
    assert DEMO.read_bytes().startswith(codecs.BOM_UTF8 + b"cuenta;nombre;telefono1;telefono2;saldo;moneda\r\n")
    batch: AssignmentBatch = sync.read_file(DEMO)
    rows, errors = read(sync, DEMO)
    assert batch.content_sha256 == hashlib.sha256(DEMO.read_bytes()).hexdigest()
    assert len(rows) == 39
    assert errors == [RowError(32, "balance", "column 'saldo': 'mil pesos' is not an amount")]
    assert [r.account_ref for r in rows][:2] == ["BCO-000101", "BCO-000102"]
    assert len({r.account_ref for r in rows}) == 39
    assert min(r.balance for r in rows) == Decimal(180000)
    assert max(r.balance for r in rows) == Decimal(12500000)
    assert {r.currency for r in rows} == {"COP"}
    assert sum(1 for r in rows if r.phones[0].startswith("+52")) == 4

    def valid(row: AssignmentRow) -> bool:
        try:
            return all(normalize(phone, "CO") for phone in row.phones)
        except InvalidPhone:
            return False

    assert [(r.line, r.phones) for r in rows if not valid(r)] == [(24, ("12-AB",))]


def test_payment_dates_references_and_configured_actions(tmp_path: Path) -> None:
    path = tmp_path / "pagos.csv"
    path.write_text(
        "cuenta;nombre;telefono1;saldo;novedad;fecha pago;ref\n"
        "CR-1;;;1.000;P;27/02/2026;R-1\n"
        "CR-2;;;2.000;p;2026-02-28;\n"
        "CR-3;;;3.000;P;30/02/2026;R-3\n"
        "CR-4;Ana;3001234567;4.000;A;;\n"
        "CR-5;;;;X;;\n",
        encoding="utf-8",
    )
    sync = make_sync(
        tmp_path,
        date_formats=["%d/%m/%Y", "%Y-%m-%d"],
        actions={"P": "payment", "A": "update", "X": "withdraw"},
        columns={"action": "novedad", "payment_date": "fecha pago", "payment_ref": "ref"},
    )
    rows, errors = read(sync, path)
    assert [(r.account_ref, r.action, r.payment_amount, r.paid_on, r.payment_ref) for r in rows] == [
        ("CR-1", AssignmentAction.PAYMENT, Decimal(1000), date(2026, 2, 27), "R-1"),
        ("CR-2", AssignmentAction.PAYMENT, Decimal(2000), date(2026, 2, 28), None),
        ("CR-4", AssignmentAction.UPDATE, None, None, None),
        ("CR-5", AssignmentAction.WITHDRAW, None, None, None),
    ]
    assert errors == [
        RowError(4, "payment_date", "column 'fecha pago': '30/02/2026' is not %d/%m/%Y or %Y-%m-%d"),
    ]


@pytest.mark.parametrize(
    ("legacy", "expected"),
    [
        ("latin-1", r"line 2: 'Jos\\x81' holds a C1 control character, which no name or address has; the text was"),
        ("windows-1252", r"line 2: byte 0x81 at column 9 is not valid UTF-8 or Windows-1252"),
    ],
)
def test_legacy_encoding_never_stores_a_control_character(tmp_path: Path, legacy: str, expected: str) -> None:
    path = tmp_path / "legacy.csv"
    path.write_bytes(b"cuenta;nombre;telefono1;saldo\nCR-1;Jos\x81;3001234567;1\n")
    with pytest.raises(FileRejected, match=expected):
        read(make_sync(tmp_path, legacy_encoding=legacy), path)


def test_utf8_file_with_a_legacy_byte_is_rejected_not_misread(tmp_path: Path) -> None:
    path = tmp_path / "mixed.csv"
    path.write_bytes(
        "cuenta;nombre;telefono1;saldo\nCR-1;Peña;3001234567;1\nCR-2;Nu".encode() + b"\xf1ez;3001234567;1\n"
    )
    rows: list[AssignmentRow | RowError] = []
    with pytest.raises(FileRejected) as rejected:
        rows.extend(make_sync(tmp_path).read_file(path).items)
    assert rejected.value.reason.startswith("line 3: byte 0xf1 at column 8 is not valid UTF-8 (the file mixes")
    assert [r.debtor_name for r in rows if isinstance(r, AssignmentRow)] == ["Peña"]


def test_rejection_report_in_the_creditors_dialect(sync: CsvDirSync) -> None:
    batch = sync.read_file(FIXTURES / "bom_semicolon.csv")
    _, errors = read(sync, FIXTURES / "bom_semicolon.csv")
    sync.report_rejections(batch, errors)
    report = sync.config.outbox / "bom_semicolon.rechazos.csv"
    with report.open(encoding="utf-8-sig", newline="") as stream:
        assert list(csv.reader(stream, delimiter=";")) == [
            ["linea", "campo", "motivo"],
            ["7", "account_ref", "column 'cuenta' is empty"],
            ["8", "action", errors[1].reason],
            ["9", "balance", "column 'saldo': 'mil pesos' is not an amount"],
        ]


@settings(max_examples=300, deadline=None)
@given(
    cents=st.integers(0, 10**12),
    decimals=st.integers(0, 3),
    grouping=st.sampled_from([".", ","]),
    decimal_comma=st.sampled_from([None, True, False]),
)
def test_parse_amount_fast_path_agrees_with_the_rules(
    cents: int, decimals: int, grouping: str, decimal_comma: bool | None
) -> None:
    whole, fraction = divmod(cents, 1000)
    text = f"{whole:,}".replace(",", grouping)
    if decimals:
        text += ("," if grouping == "." else ".") + f"{fraction:03d}"[:decimals]
    assert parse_amount(text, decimal_comma) == parse_amount(f"${text}", decimal_comma)  # "$": the general path


@pytest.mark.abuse
def test_a_file_for_another_creditor_or_portfolio_than_configured_is_refused_whole(
    sync: CsvDirSync, tmp_path: Path, hooks: Hooks
) -> None:
    assert sync.delivers() == DeliveryScope({"BCO": frozenset({"TARJETAS"})})
    path = tmp_path / "asignacion.csv"
    path.write_text(GOOD_DELIVERY, encoding="utf-8")
    db = Database(f"sqlite:///{tmp_path / 'store.db'}")
    db.migrate()
    importer = AssignmentImporter("t", "CO", db, SimulatedClock(NOW, 1.0), hooks)
    try:
        for field, value in (("creditor", "OTRO"), ("portfolio", "OTRAP")):  # read as another adapter would
            other = make_sync(tmp_path / "other", None, **{field: value}).read_file(path)
            with pytest.raises(FileRejected, match=rf"^{path}: line 2: {field}: .*{value!r}"):
                importer.import_batch(other, "t", scope=sync.delivers())
            with db.session() as session:
                assert session.scalar(select(func.count()).select_from(Account)) == 0
        report = importer.import_batch(sync.read_file(path), "t", scope=sync.delivers())
        assert report.portfolio_names() == ["BCO/TARJETAS"]
        assert "1 quarantined; portfolio BCO/TARJETAS (read as" in report.summary()
    finally:
        db.dispose()


@pytest.mark.abuse
def test_only_regular_files_of_the_inbox_are_read_the_rest_skipped_with_one_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    secret = tmp_path / "environ"
    secret.write_text("SHELL=/bin/bash BCO_TOK=s3cr3t\n", encoding="utf-8")
    elsewhere = tmp_path / "other-creditor"
    elsewhere.mkdir()
    shutil.copy(FIXTURES / "plain_comma.csv", elsewhere / "theirs.csv")
    sync = make_sync(tmp_path, pattern="**/*.csv")
    inbox = sync.config.inbox
    inbox.mkdir()
    shutil.copy(FIXTURES / "plain_comma.csv", inbox / "a.csv")
    (inbox / "env.csv").symlink_to(secret)
    (inbox / "theirs.csv").symlink_to(elsewhere / "theirs.csv")
    (inbox / "linked").symlink_to(elsewhere, target_is_directory=True)
    os.mkfifo(inbox / "pipe.csv")
    (inbox / "folder.csv").mkdir()
    caplog.set_level(logging.WARNING)
    for _ in range(2):
        assert [Path(batch.source).name for batch in sync.fetch()] == ["a.csv"]
    warnings = [record for record in caplog.records if record.getMessage() == "crm_sync.csv.not_a_regular_file"]
    skipped = sorted(record.fields["file"] for record in warnings)  # type: ignore[attr-defined]
    names = ("env.csv", "folder.csv", "pipe.csv", "theirs.csv")
    assert skipped == [str(inbox / name) for name in names]  # one warning each, not one per sync
    assert list(make_sync(tmp_path, pattern="*/*.csv").fetch()) == []  # linked/theirs.csv: through a symlink
    assert "s3cr3t" not in caplog.text


@pytest.mark.abuse
def test_a_file_swapped_for_a_symlink_after_listing_is_not_followed(sync: CsvDirSync, tmp_path: Path) -> None:
    secret = tmp_path / "environ"
    secret.write_text("SHELL=/bin/bash BCO_TOK=s3cr3t\n", encoding="utf-8")
    inbox_file = sync.config.inbox / "a.csv"
    shutil.copy(FIXTURES / "plain_comma.csv", inbox_file)
    (batch,) = sync.fetch()
    inbox_file.unlink()
    inbox_file.symlink_to(secret)
    with pytest.raises(FileRejected) as rejected:
        list(batch.items)
    assert "s3cr3t" not in str(rejected.value)
    sync.reject(batch)
    assert inbox_file.is_symlink()
    assert not sync.config.rejected_dir.exists()


def two_creditors(tmp_path: Path) -> tuple[CsvDirSync, Path, Path]:
    """Creditor B's csv adapter on sub-folders (``*/*.csv``), its inbox holding ``d1/a.csv`` and ``d2/x.csv``, and
    creditor A's inbox (on the same file system) holding A's own ``x.csv``."""
    other_inbox = tmp_path / "otro-inbox"
    other_inbox.mkdir()
    (other_inbox / "x.csv").write_text("cuenta,nombre,telefono1,saldo\nA-SECRET-1,Deudor de A,3001112233,777000\n")
    sync = make_sync(tmp_path, pattern="*/*.csv")
    inbox = sync.config.inbox
    for folder in ("d1", "d2"):
        (inbox / folder).mkdir(parents=True)
    shutil.copy(FIXTURES / "plain_comma.csv", inbox / "d1" / "a.csv")
    (inbox / "d2" / "x.csv").write_text("cuenta,nombre,telefono1,saldo\nB-2,Propio,3009998878,1000\n")
    sync.start()
    return sync, inbox, other_inbox


def swap_for_symlink(folder: Path, target: Path) -> None:
    """What creditor B does over its login: its sub-folder moved away, a symlink to ``target`` in its place."""
    folder.rename(folder.with_name(f"{folder.name}.old"))
    folder.symlink_to(target, target_is_directory=True)


@pytest.mark.abuse
def test_a_sub_folder_swapped_for_a_symlink_after_listing_is_not_read_through(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Round 23 A-F9: with a sub-folder pattern, the listing checked each entry once; the read opened the path
    with O_NOFOLLOW on its last name only, so a sub-folder the creditor swapped for a symlink to another creditor's
    inbox while an earlier entry was imported was followed, and the other creditor's file imported as this one's
    delivery. Every folder between the inbox and the file is now opened without following a symlink."""
    sync, inbox, other_inbox = two_creditors(tmp_path)
    caplog.set_level(logging.WARNING)
    fetch = sync.fetch()
    first = next(fetch)  # the listing is made: d1/a.csv is being imported
    assert first.source == str(inbox / "d1" / "a.csv")
    swap_for_symlink(inbox / "d2", other_inbox)
    rest = list(fetch)
    assert [batch.source for batch in rest] == []
    assert "A-SECRET-1" not in caplog.text
    unreadable = [record for record in caplog.records if record.getMessage() == "crm_sync.csv.file_unreadable"]
    assert [record.fields["file"] for record in unreadable] == [str(inbox / "d2" / "x.csv")]  # type: ignore[attr-defined]
    sync.acknowledge(first)
    assert [path.name for path in other_inbox.iterdir()] == ["x.csv"]


@pytest.mark.abuse
def test_a_sub_folder_swapped_for_a_symlink_before_the_archive_move_moves_nothing_through_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """Round 23 A-F9, the move: between the check that the imported file is unchanged and its rename into the
    archive, creditor B swapped the file's sub-folder for a symlink to creditor A's inbox; the rename went through
    it and moved A's file (of the same name) into B's archive, out of A's inbox. The file's folder is now opened
    from the inbox without following a symlink and the rename made from it: nothing is moved, B's file stays (one
    warning), remembered, and is archived once its folder is back."""
    sync, inbox, other_inbox = two_creditors(tmp_path)
    (inbox / "d1" / "a.csv").unlink()
    (batch,) = sync.fetch()
    assert batch.source == str(inbox / "d2" / "x.csv")
    list(batch.items)
    checked = sync._unchanged

    def swapped_after_the_check(*args: Any) -> Path | None:
        path = checked(*args)
        swap_for_symlink(inbox / "d2", other_inbox)
        return path

    monkeypatch.setattr(sync, "_unchanged", swapped_after_the_check)
    caplog.set_level(logging.WARNING)
    sync.acknowledge(batch)
    monkeypatch.undo()
    assert [path.name for path in other_inbox.iterdir()] == ["x.csv"]
    assert "A-SECRET-1" in (other_inbox / "x.csv").read_text()
    assert not sync.config.archive_dir.exists() or list(sync.config.archive_dir.iterdir()) == []
    assert [path.name for path in (inbox / "d2.old").iterdir()] == ["x.csv"]
    refused = [record for record in caplog.records if record.getMessage() == "crm_sync.csv.folder_refused"]
    assert [record.fields["folder"] for record in refused] == [str(inbox / "d2")]  # type: ignore[attr-defined]
    (inbox / "d2").unlink()
    (inbox / "d2.old").rename(inbox / "d2")
    assert list(sync.fetch()) == []  # remembered: moved again, not read again
    assert [path.name for path in sync.config.archive_dir.iterdir()] == ["x.csv"]
    assert [path.name for path in other_inbox.iterdir()] == ["x.csv"]


@pytest.mark.abuse
def test_a_hard_link_in_the_inbox_is_never_read_nor_quoted(
    sync: CsvDirSync, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Round 21 A-F15: a file of the node's hard-linked into the inbox (where fs.protected_hardlinks is 0, or a
    file the creditor's account may write) was read like the creditor's; its rejection report, in the outbox the
    creditor reads, quoted its first line. An entry with more than one name is skipped unread, one warning."""
    secret = tmp_path / "env"
    secret.write_text("CRM_TOKEN=s3cr3t-value-123;DB=postgres://x\n", encoding="utf-8")
    inbox = sync.config.inbox
    os.link(secret, inbox / "x.csv")
    shutil.copy(FIXTURES / "plain_comma.csv", inbox / "a.csv")
    caplog.set_level(logging.WARNING)
    for _ in range(2):
        assert [Path(batch.source).name for batch in sync.fetch()] == ["a.csv"]
    warnings = [record for record in caplog.records if record.getMessage() == "crm_sync.csv.file_unreadable"]
    assert [record.fields["why"] for record in warnings] == [  # type: ignore[attr-defined]
        "cannot read: a hard link (2 names for one file), not read"
    ]
    assert "s3cr3t" not in caplog.text
    assert (inbox / "x.csv").exists()


@pytest.mark.abuse
def test_a_wrong_header_is_echoed_as_a_short_escaped_excerpt(tmp_path: Path) -> None:
    path = tmp_path / "long-header.csv"
    path.write_text("cuenta;\x1b[31mnombre;" + "SECRET=" * 2000 + "END\nX;Y\n", encoding="utf-8")
    with pytest.raises(FileRejected) as rejected:
        list(make_sync(tmp_path).read_file(path).items)
    reason = rejected.value.reason
    assert "found: cuenta, \\x1b[31mnombre, SECRET=" in reason
    assert "\x1b" not in reason
    assert "END" not in reason
    assert len(reason) < 300


@pytest.mark.abuse
@pytest.mark.parametrize(
    ("settings", "link", "rejected"),
    [
        ({}, "imported", False),
        ({}, "rejected", True),
        ({"archive": "inbox/done/2026"}, "done", False),
    ],
)
def test_a_folder_of_the_inbox_made_a_symlink_never_moves_a_file_into_another_inbox(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, settings: dict[str, str], link: str, rejected: bool
) -> None:
    other_inbox = tmp_path / "otro-inbox"  # another creditor's, on the same file system
    other_inbox.mkdir()
    sync = make_sync(tmp_path, None, **{key: tmp_path / value for key, value in settings.items()})
    inbox = sync.config.inbox
    inbox.mkdir()
    sync.start()
    (inbox / link).symlink_to(other_inbox, target_is_directory=True)
    path = inbox / "evil.csv"
    content = (WRONG_HEADER if rejected else GOOD_DELIVERY).encode()
    path.write_bytes(content)
    (batch,) = sync.fetch()
    caplog.set_level(logging.WARNING)
    for _ in range(2):
        (sync.reject if rejected else sync.acknowledge)(batch)
    assert list(other_inbox.iterdir()) == []
    assert path.read_bytes() == content
    refused = [record for record in caplog.records if record.getMessage() == "crm_sync.csv.folder_refused"]
    assert len(refused) == 1


def test_an_archive_the_operator_configured_through_a_symlink_is_used(tmp_path: Path) -> None:
    (tmp_path / "disk").mkdir()
    (tmp_path / "archive").symlink_to(tmp_path / "disk", target_is_directory=True)
    sync = make_sync(tmp_path, archive=tmp_path / "archive")
    sync.config.inbox.mkdir()
    shutil.copy(FIXTURES / "plain_comma.csv", sync.config.inbox / "a.csv")
    (batch,) = sync.fetch()
    sync.acknowledge(batch)
    assert [p.name for p in (tmp_path / "disk").iterdir()] == ["a.csv"]


@pytest.mark.abuse
def test_a_line_of_many_megabytes_rejects_the_file_without_holding_it(tmp_path: Path) -> None:
    path = tmp_path / "long-line.csv"
    with path.open("wb") as sink:
        sink.write(b"cuenta;nombre;telefono1;saldo;moneda\nB-1;Ana;3001234567;10;COP\nB-2;")
        for _ in range(32):
            sink.write(b"A" * (1 << 20))
        sink.write(b";3001234568;10;COP\n")
    batch = make_sync(tmp_path).read_file(path)
    tracemalloc.start()
    try:
        with pytest.raises(FileRejected, match=r": line 3 is longer than 1048576 bytes: not an assignment file$"):
            list(batch.items)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 8 << 20  # a few blocks of 1 MiB, never the 32 MiB line (before: its copies and its text)


class CountedReads(io.BufferedReader):
    """A file's bytes, the length of each read added to ``counts``."""

    def __init__(self, raw: io.RawIOBase, counts: list[int]) -> None:
        super().__init__(raw)
        self.counts = counts

    def read(self, size: int | None = -1) -> bytes:
        data = super().read(size)
        self.counts.append(len(data))
        return data


@pytest.mark.parametrize("keep_files", [False, True])
def test_a_synced_delivery_is_read_and_hashed_once(
    tmp_path: Path, hooks: Hooks, monkeypatch: pytest.MonkeyPatch, keep_files: bool
) -> None:
    """One sync of a delivery: fetch does not read the file, the import streams its rows hashing it on the way
    (the already-imported check comes once the sha256 is known), and acknowledge archives it by the file's
    identity without reading it (with ``keep_files``, remembers it by its hash and identity: the next sync
    leaves it out unread)."""
    read: list[int] = []
    hashed: list[int] = []

    class CountedHash:
        def __init__(self) -> None:
            self.digest = hashlib.sha256()

        def update(self, data: bytes) -> None:
            hashed.append(len(data))
            self.digest.update(data)

        def hexdigest(self) -> str:
            return self.digest.hexdigest()

    def counted_open(path: Path, inbox: Path) -> BinaryIO:
        stream = open_entry(path, inbox)
        assert isinstance(stream, io.BufferedReader)
        return CountedReads(stream.detach(), read)

    monkeypatch.setattr(csv_dir_plugin, "open_entry", counted_open)
    monkeypatch.setattr(reader_module, "hashlib", SimpleNamespace(sha256=CountedHash))
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    content = GOOD_DELIVERY.encode()
    (inbox / "asignacion.csv").write_bytes(content)
    sync = make_sync(tmp_path, keep_files=keep_files)
    sync.start()
    db = Database(f"sqlite:///{tmp_path / 'store.db'}")
    db.migrate()
    job = CreditorSync(
        sync, AssignmentImporter("t", "CO", db, SimulatedClock(NOW, 1.0), hooks), ActivityExporter("t", db, sync)
    )
    try:
        (imported,) = job.run_once().imports
        again = job.run_once().imports
    finally:
        db.dispose()
    assert (imported.new, len(imported.quarantined)) == (4, 1)
    assert imported.content_sha256 == hashlib.sha256(content).hexdigest()
    assert again == []
    if keep_files:
        assert sorted(p.name for p in inbox.iterdir()) == ["asignacion.csv"]
    else:
        assert [p.name for p in (inbox / "imported").iterdir()] == ["asignacion.csv"]
    assert (sum(hashed), sum(read)) == (len(content), len(content))


def test_a_file_imported_before_is_recognised_once_read(tmp_path: Path, hooks: Hooks) -> None:
    """The sha256 of a file is known once its rows were read: a file imported before is then rolled back whole
    (reported as already imported, with the rows quarantined then), also when it is rejected now."""
    path = tmp_path / "asignacion.csv"
    path.write_bytes(GOOD_DELIVERY.encode())
    sync = make_sync(tmp_path)
    db = Database(f"sqlite:///{tmp_path / 'store.db'}")
    db.migrate()
    importer = AssignmentImporter("t", "CO", db, SimulatedClock(NOW, 1.0), hooks)
    try:
        first = importer.import_batch(sync.read_file(path), "t")
        with db.session() as session:
            session.execute(update(Account).values(balance=Decimal(1)))
        again = importer.import_batch(sync.read_file(path), "t")
        refused = importer.import_batch(sync.read_file(path), "t", scope=DeliveryScope.of("OTRO", "TARJETAS"))
        with db.reading() as session:
            balances = set(session.scalars(select(Account.balance)))
            batches = session.scalar(select(func.count()).select_from(ImportBatch))
    finally:
        db.dispose()
    assert (first.new, first.already_imported, first.read_as) == (4, False, "utf-8, delimiter ';'")
    for report in (again, refused):
        assert report.already_imported
        assert report.content_sha256 == first.content_sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
        assert report.quarantined == first.quarantined
    assert balances == {Decimal(1)}
    assert batches == 1


@pytest.mark.parametrize("later", ["Peña Muñoz".encode("cp1252"), "Peña Muñoz".encode()])
def test_a_file_that_turns_out_not_utf8_after_some_blocks(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, later: bytes
) -> None:
    """A file whose encoding is not set is read as UTF-8 until a byte is not: with only ASCII before it and no
    UTF-8 character anywhere, it is windows-1252 from that block on; a UTF-8 character after that byte makes the
    file damaged, rejected at that byte. Either way the file is read once."""
    monkeypatch.setattr(reader_module, "CHUNK_SIZE", 64)  # the first byte that is not UTF-8 comes a few blocks in
    ascii_rows = "".join(f"CR-{n};Ana;3001234567;1\n" for n in range(10)).encode()
    path = tmp_path / "legacy.csv"
    path.write_bytes(
        b"cuenta;nombre;telefono1;saldo\n"
        + ascii_rows
        + b"CR-X;Nu\xf1ez;3001234567;1\n"
        + ascii_rows.replace(b"CR-", b"CR-1")
        + b"CR-Y;"
        + later
        + b";3001234567;1\n"
    )
    read: list[int] = []
    reader = reader_module.AssignmentReader(make_sync(tmp_path).config)
    batch = reader.batch(str(path), lambda: CountedReads(io.FileIO(path), read))
    if later == "Peña Muñoz".encode():
        with pytest.raises(FileRejected) as rejected:
            list(batch.items)
        assert rejected.value.reason.startswith("line 12: byte 0xf1 at column 8 is not valid UTF-8 (the file mixes")
        assert sum(read) == path.stat().st_size
        return
    names = [item.debtor_name for item in batch.items if isinstance(item, AssignmentRow)]
    assert names == ["Ana"] * 10 + ["Nuñez"] + ["Ana"] * 10 + ["Peña Muñoz"]
    assert batch.read_as == "windows-1252, delimiter ';'"
    assert batch.known_sha256() == hashlib.sha256(path.read_bytes()).hexdigest()
    assert sum(read) == path.stat().st_size


def test_a_character_cut_short_at_the_end_is_refused_not_dropped(tmp_path: Path) -> None:
    path = tmp_path / "cut.csv"
    path.write_bytes(b"cuenta;nombre;telefono1;saldo\nCR-1;Ana;3001234567;1\nCR-2;Pe\xc3")
    with pytest.raises(FileRejected, match="line 3: byte 0xc3 at column 8 is not valid utf-8"):
        read(make_sync(tmp_path, encoding="utf-8"), path)


@pytest.mark.abuse
@pytest.mark.parametrize(("setting", "expected"), [({}, 0o600), ({"file_mode": "0640"}, 0o640)])
def test_exports_and_rejection_reports_get_the_configured_mode_whatever_the_umask(
    tmp_path: Path, setting: dict[str, str], expected: int
) -> None:
    """Only the files a creditor picks up may be group-readable, and only as the operator chooses (#14 round 8 H2)."""
    sync = make_sync(tmp_path, None, **setting)
    previous = os.umask(0o077)  # the node's own
    try:
        sync.start()
    finally:
        os.umask(previous)
    assert tmp_path.joinpath("outbox").stat().st_mode & 0o777 == (0o750 if expected & 0o040 else 0o700)
    at = datetime(2026, 3, 2, 14, 5, 30, tzinfo=UTC)
    previous = os.umask(0o022)
    try:
        sync.export([Activity(7, ActivityKind.CALL_ATTEMPT, at, "BCO", "TARJETAS", "BCO-1", "+573001234567", "busy")])
        batch = AssignmentBatch(source=str(tmp_path / "inbox" / "a.csv"), hashed="0" * 64, items=[])
        sync.report_rejections(batch, [RowError(2, "saldo", "not a number")])
    finally:
        os.umask(previous)
    written = sorted(tmp_path.joinpath("outbox").iterdir())
    assert len(written) == 2
    assert [oct(path.stat().st_mode & 0o777) for path in written] == [oct(expected)] * 2


@pytest.mark.abuse
@pytest.mark.parametrize("mode", ["0644", "0666", "0700", "0400", "640x", "", "0o640", 640])
def test_a_file_mode_others_could_read_or_no_mode_is_refused(tmp_path: Path, mode: object) -> None:
    with pytest.raises(ValidationError, match="file_mode"):
        make_sync(tmp_path, file_mode=mode)


@pytest.mark.abuse
def test_a_file_that_cannot_be_opened_is_skipped_with_one_warning_and_the_others_load(
    tmp_path: Path, hooks: Hooks, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """One inbox file the node may not read does not stop the files after it, nor ``check`` (#14 round 15 M5)."""
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    locked = inbox / "a-locked.csv"
    locked.write_text("cuenta;nombre;telefono1;saldo\nU-1;Ana;3001234567;1000\n", encoding="utf-8")
    (inbox / "b-good.csv").write_text("cuenta;nombre;telefono1;saldo\nB-1;Ana;3001234567;1000\n", encoding="utf-8")

    def refusing_open(path: Path, inbox: Path) -> BinaryIO:
        if path == locked:
            raise PermissionError(13, "Permission denied", str(path))
        return open_entry(path, inbox)

    monkeypatch.setattr(csv_dir_plugin, "open_entry", refusing_open)
    sync = make_sync(tmp_path)
    sync.start()
    db = Database(f"sqlite:///{tmp_path / 'store.db'}")
    db.migrate()
    job = CreditorSync(
        sync, AssignmentImporter("t", "CO", db, SimulatedClock(NOW, 1.0), hooks), ActivityExporter("t", db, sync)
    )
    caplog.set_level(logging.WARNING)
    try:
        assert sync.check().detail.startswith(f"inbox {inbox} readable, 1 file(s) waiting")
        first, second = job.run_once(), job.run_once()
    finally:
        db.dispose()
    assert (first.failed, [report.new for report in first.imports]) == ([], [1])
    assert (second.failed, second.imports, second.rejected) == ([], [], [])
    warnings = [r for r in caplog.records if r.getMessage() == "crm_sync.csv.file_unreadable"]
    assert [r.fields["file"] for r in warnings] == [str(locked)]  # type: ignore[attr-defined]
    assert "Permission denied" in warnings[0].fields["why"]  # type: ignore[attr-defined]
    assert [p.name for p in inbox.iterdir() if p.is_file()] == ["a-locked.csv"]


@pytest.mark.abuse
def test_a_rejection_report_never_overwrites_an_earlier_one_still_in_the_outbox(tmp_path: Path, hooks: Hooks) -> None:
    """Creditors reuse one file name: each delivery's report is kept until the creditor takes it; the same
    report written again (after a crash) is not written twice (#14 round 15 M6)."""
    inbox, outbox = tmp_path / "inbox", tmp_path / "outbox"
    inbox.mkdir()
    sync = make_sync(tmp_path)
    sync.start()
    db = Database(f"sqlite:///{tmp_path / 'store.db'}")
    db.migrate()
    job = CreditorSync(
        sync, AssignmentImporter("t", "CO", db, SimulatedClock(NOW, 1.0), hooks), ActivityExporter("t", db, sync)
    )
    header = "cuenta;nombre;telefono1;saldo\nA-1;Ana;3001234567;1000\n"
    try:
        for bad in ("-5", "abc", "x"):
            (inbox / "asignacion.csv").write_text(f"{header}A-2;Luis;3101234567;{bad}\n", encoding="utf-8")
            (report,) = job.run_once().imports
            assert len(report.quarantined) == 1
    finally:
        db.dispose()
    names = ["asignacion.rechazos.csv", "asignacion-20260302T133000Z.rechazos.csv"]
    names.append("asignacion-20260302T133000Z-1.rechazos.csv")
    assert sorted(p.name for p in outbox.iterdir()) == sorted(names)
    reasons = []
    for name in names:
        with (outbox / name).open(encoding="utf-8-sig", newline="") as stream:
            reasons.append(list(csv.reader(stream, delimiter=";"))[1][2])
    assert ["-5" in reasons[0], "abc" in reasons[1], "'x'" in reasons[2]] == [True] * 3
    assert [oct(p.stat().st_mode & 0o777) for p in outbox.iterdir()] == [oct(0o600)] * 3
    for _ in range(2):
        sync.report_rejections(AssignmentBatch(str(inbox / "asignacion.csv"), "0" * 64, []), [RowError(3, "x", "y")])
    assert len(list(outbox.iterdir())) == 4  # the same report twice: one file
    assert not [p for p in outbox.iterdir() if p.name.startswith(".")]


@pytest.mark.abuse
@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (
            codecs.BOM_UTF16_LE + "cuenta\tnombre\ttelefono1\tsaldo\r\nA-1\tAna\t3001234567\t1\r\n".encode("utf-16-le"),
            'line 1: the file is UTF-16 (a spreadsheet\'s "Unicode text" export), which is not supported: save it '
            'as "CSV UTF-8"',
        ),
        (
            "cuenta;nombre;telefono1;saldo\r\nA-1;Ana;3001234567;1\r\n".encode("utf-16-be"),
            'line 1: the file is UTF-16 (a spreadsheet\'s "Unicode text" export), which is not supported: save it '
            'as "CSV UTF-8"',
        ),
        (
            b"cuenta;nombre;telefono1;saldo\rA-1;Ana;3001234567;1\rA-2;Luis;3101234567;2\r",
            'line 1: line ends are bare CR, without LF (a spreadsheet\'s "CSV (Macintosh)" export), which is not '
            'supported: save it as "CSV UTF-8" (line ends LF or CRLF)',
        ),
    ],
    ids=["utf-16-bom", "utf-16-no-bom", "bare-cr"],
)
def test_a_utf16_or_bare_cr_export_is_refused_saying_what_is_wrong(
    sync: CsvDirSync, tmp_path: Path, content: bytes, expected: str
) -> None:
    """Excel's "Unicode text" and "CSV (Macintosh)" exports loaded nothing (right) with a header of NULs or
    Python's universal-newline message (#14 round 16 L2); CRLF files still load."""
    path = tmp_path / "export.csv"
    path.write_bytes(content)
    with pytest.raises(FileRejected) as rejected:
        list(sync.read_file(path).items)
    assert rejected.value.reason == expected
    path.write_bytes(b"cuenta;nombre;telefono1;saldo\r\nA-1;Ana;3001234567;1\r\n")
    assert [row.account_ref for row in sync.read_file(path).items if isinstance(row, AssignmentRow)] == ["A-1"]


def test_a_kept_file_whose_metadata_alone_changed_is_not_a_new_delivery(tmp_path: Path) -> None:
    """Round 21 A-F7: a chmod (or a restore keeping the time: a new inode) of a kept file changed its identity,
    so it was fetched and applied again, an old withdrawal undoing a later re-assignment. The same size and mtime
    with bytes hashing to the sha256 remembered is the same file: its identity is updated, it is not fetched. A
    changed mtime (the creditor sending it again) is still a new delivery."""
    inbox = tmp_path / "inbox"
    sync, _ = kept_file(tmp_path, (FIXTURES / "plain_comma.csv").read_bytes())
    store = SetAsideFiles(tmp_path / "data" / SET_ASIDE_FILE, logging.getLogger())

    def remembered() -> str:
        return store.sources()[str(inbox / "a.csv")].identity

    (inbox / "a.csv").chmod(0o640)
    assert list(sync.fetch()) == []
    assert remembered() == identity_of(inbox / "a.csv")
    shutil.copy2(inbox / "a.csv", tmp_path / "backup.csv")  # a restore: a new inode, the same bytes and mtime
    (inbox / "a.csv").unlink()
    shutil.copy2(tmp_path / "backup.csv", inbox / "a.csv")
    assert list(make_sync(tmp_path, keep_files=True).fetch()) == []
    assert remembered() == identity_of(inbox / "a.csv")
    status = (inbox / "a.csv").stat()
    os.utime(inbox / "a.csv", ns=(status.st_atime_ns, status.st_mtime_ns + 1_000_000_000))  # sent again
    assert [Path(b.source).name for b in sync.fetch()] == ["a.csv"]


def test_a_kept_file_rewritten_in_place_at_the_same_size_and_time_is_a_new_delivery(tmp_path: Path) -> None:
    inbox = tmp_path / "inbox"
    sync, _ = kept_file(tmp_path, GOOD_DELIVERY.encode())
    status = (inbox / "a.csv").stat()
    (inbox / "a.csv").write_bytes(GOOD_DELIVERY.replace("BCO-000101", "BCO-000109").encode())
    os.utime(inbox / "a.csv", ns=(status.st_atime_ns, status.st_mtime_ns))
    assert [Path(b.source).name for b in sync.fetch()] == ["a.csv"]


def test_a_name_that_is_not_utf8_is_skipped_with_one_warning_and_the_others_load(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Round 21 A-F6: a Windows-1252 ERP's ``asignación-peña.csv`` failed every sync (UnicodeEncodeError storing
    its name), keeping the health line failing. As with sftp_csv it is skipped, named escaped, once."""
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    descriptor = os.open(os.fsencode(inbox) + b"/asignaci\xf3n-pe\xf1a.csv", os.O_WRONLY | os.O_CREAT, 0o644)
    os.write(descriptor, GOOD_DELIVERY.encode())
    os.close(descriptor)
    shutil.copy(FIXTURES / "plain_comma.csv", inbox / "b-good.csv")
    sync = make_sync(tmp_path)
    sync.start()
    for _ in range(2):
        assert [Path(batch.source).name for batch in sync.fetch()] == ["b-good.csv"]
    warned = [r for r in caplog.records if r.getMessage() == "crm_sync.csv.name_not_utf8"]
    assert [r.fields["file"] for r in warned] == [f"{inbox}/asignaci\\xf3n-pe\\xf1a.csv"]  # type: ignore[attr-defined]
    assert sync.check().ok


@pytest.mark.parametrize("folder", ["archive_dir", "rejected_dir"])
def test_a_file_a_refused_folder_left_in_the_inbox_is_moved_once_the_folder_is_fixed(
    tmp_path: Path, folder: str
) -> None:
    """Round 21 A-F8: an imported (rejected) file the archive (rejected) folder refused stayed in the inbox for
    ever, skipped. Each sync retries its move, as sftp_csv does, and forgets it once moved."""
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    if folder == "archive_dir":
        shutil.copy(FIXTURES / "plain_comma.csv", inbox / "a.csv")
    else:
        (inbox / "a.csv").write_text(WRONG_HEADER, encoding="utf-8")
    sync = make_sync(tmp_path)
    target: Path = getattr(sync.config, folder)
    target.write_text("in the way")
    (batch,) = sync.fetch()
    (sync.acknowledge if folder == "archive_dir" else sync.reject)(batch)
    assert sorted(p.name for p in inbox.iterdir()) == ["a.csv", target.name]
    assert list(sync.fetch()) == []
    assert (inbox / "a.csv").exists()
    sync.check()  # counts, moves nothing
    target.unlink()
    assert list(sync.fetch()) == []
    assert not (inbox / "a.csv").exists()
    assert [p.name for p in target.iterdir()] == ["a.csv"]
    assert SetAsideFiles(tmp_path / "data" / SET_ASIDE_FILE, logging.getLogger()).sources() == {}


def counted_sync(
    tmp_path: Path, hooks: Hooks, monkeypatch: pytest.MonkeyPatch, read: dict[str, list[int]], **settings: Any
) -> tuple[CsvDirSync, CreditorSync, Database]:
    """A csv sync job whose every open of an inbox file counts the bytes read from it, by file name."""

    def counted_open(path: Path, inbox: Path) -> BinaryIO:
        stream = open_entry(path, inbox)
        assert isinstance(stream, io.BufferedReader)
        return CountedReads(stream.detach(), read.setdefault(path.name, []))

    monkeypatch.setattr(csv_dir_plugin, "open_entry", counted_open)
    sync = make_sync(tmp_path, **settings)
    sync.start()
    db = Database(f"sqlite:///{tmp_path / 'store.db'}")
    db.migrate()
    importer = AssignmentImporter("t", "CO", db, SimulatedClock(NOW, 1.0), hooks)
    return sync, CreditorSync(sync, importer, ActivityExporter("t", db, sync)), db


@pytest.mark.abuse
def test_a_sparse_file_larger_than_max_file_bytes_is_left_unread_with_one_warning(
    tmp_path: Path, hooks: Hooks, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """Round 21 A-F11: a sparse file (4 KiB on disk, 8 GiB apparent, made with one truncate) held the site's sync
    while every byte of it was hashed, though its header rejected it at line 1. Larger than ``max_file_bytes``
    (default 512 MiB, as sftp_csv), it is skipped by its size, never opened for reading, never rejected nor
    moved: one warning however many syncs; the other files load."""
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    sparse = inbox / "a-grande.csv"
    with sparse.open("wb") as sink:
        sink.write(b"x;y\n")
        sink.truncate(8 << 30)
    shutil.copy(FIXTURES / "plain_comma.csv", inbox / "b-good.csv")
    read: dict[str, list[int]] = {}
    sync, job, db = counted_sync(tmp_path, hooks, monkeypatch, read)
    caplog.set_level(logging.WARNING)
    try:
        first, second = job.run_once(), job.run_once()
        assert sync.check().detail.startswith(f"inbox {inbox} readable, 0 file(s) waiting")
    finally:
        db.dispose()
    assert [Path(report.source).name for report in first.imports] == ["b-good.csv"]
    assert (first.rejected, first.failed, second.imports, second.rejected, second.failed) == ([], [], [], [], [])
    assert sum(read["a-grande.csv"]) == 0
    warned = [r for r in caplog.records if r.getMessage() == "crm_sync.csv.file_too_large"]
    assert [r.fields["file"] for r in warned] == [str(sparse)]  # type: ignore[attr-defined]
    assert warned[0].fields["why"] == f"{sparse}: 8589934592 bytes, more than max_file_bytes (536870912)"  # type: ignore[attr-defined]
    assert sorted(p.name for p in inbox.iterdir() if p.is_file()) == ["a-grande.csv"]
    assert list((tmp_path / "outbox").iterdir()) == []  # no rejection report
    assert sync.config.max_file_bytes == 512 << 20


@pytest.mark.parametrize(("size", "imported"), [(64 << 10, True), ((64 << 10) + 1, False)])
def test_max_file_bytes_is_the_largest_file_read(
    tmp_path: Path, hooks: Hooks, monkeypatch: pytest.MonkeyPatch, size: int, imported: bool
) -> None:
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    content = b"cuenta;nombre;telefono1;saldo\nB-1;Ana;3001234567;1000\n"
    (inbox / "a.csv").write_bytes(content + b"\n" * (size - len(content)))  # blank lines: skipped
    read: dict[str, list[int]] = {}
    _, job, db = counted_sync(tmp_path, hooks, monkeypatch, read, max_file_bytes=64 << 10)
    try:
        run = job.run_once()
    finally:
        db.dispose()
    assert [report.new for report in run.imports] == ([1] if imported else [])
    assert run.rejected == []
    assert sum(read["a.csv"]) == (size if imported else 0)
    if not imported:  # given by hand (import FILE): refused the same way
        with pytest.raises(FileRejected, match=r"a\.csv: 65537 bytes, more than max_file_bytes \(65536\)$"):
            make_sync(tmp_path, max_file_bytes=64 << 10).read_file(inbox / "a.csv")


@pytest.mark.abuse
@pytest.mark.parametrize("head", [b"cuenta;nombre;telefono1;saldo\nB-1;Ana;3001234567;1000\n", b"x;y\n"])
def test_a_file_growing_past_max_file_bytes_while_read_is_read_no_further(
    tmp_path: Path, hooks: Hooks, monkeypatch: pytest.MonkeyPatch, head: bytes
) -> None:
    """A file within ``max_file_bytes`` when fetched that grows past it while the import reads it (here: by 64 MiB
    of zeros at the first read) is read up to the bound and no further, nor hashed beyond it: rejected (the file
    changed), left in the inbox and not read the next sync."""
    limit = 64 << 10
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    path = inbox / "crece.csv"
    path.write_bytes(head)
    read: dict[str, list[int]] = {}

    class GrowingReads(CountedReads):
        def read(self, size: int | None = -1) -> bytes:
            if path.stat().st_size == len(head):
                os.truncate(path, 64 << 20)
            return super().read(size)

    def growing_open(opened: Path, inbox: Path) -> BinaryIO:
        stream = open_entry(opened, inbox)
        assert isinstance(stream, io.BufferedReader)
        return GrowingReads(stream.detach(), read.setdefault(opened.name, []))

    sync, job, db = counted_sync(tmp_path, hooks, monkeypatch, read, max_file_bytes=limit)
    monkeypatch.setattr(csv_dir_plugin, "open_entry", growing_open)
    try:
        first = job.run_once()
        second = job.run_once()
    finally:
        db.dispose()
    assert (first.imports, first.failed) == ([], [])
    assert [reason.split(": ", 1)[0] for reason in first.rejected] == [str(path)]
    assert 0 < sum(read["crece.csv"]) <= limit
    assert (second.imports, second.rejected, second.failed) == ([], [], [])
    assert path.stat().st_size == 64 << 20  # left in the inbox: it changed after it was read
    assert sync.config.max_file_bytes == limit


def test_max_file_bytes_is_shared_with_sftp_csv_and_bounded() -> None:
    shared = SftpCsvConfig.model_fields["max_file_bytes"]
    assert repr(CsvDirConfig.model_fields["max_file_bytes"]) == repr(shared)
    base = {"inbox": "i", "outbox": "o", "creditor": "B", "portfolio": "P"}
    for bad in ((64 << 10) - 1, (64 << 30) + 1, "many"):
        with pytest.raises(ValidationError, match="max_file_bytes"):
            CsvDirConfig.model_validate(base | {"max_file_bytes": bad})
