"""The ``sftp_csv`` adapter against a real OpenSSH sshd: the conformance suite and the monthly cycle."""

from __future__ import annotations

import codecs
import csv
import hashlib
import json
import logging
import os
import posixpath
import subprocess
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any, ClassVar

import pytest
from pydantic import ValidationError
from sqlalchemy import select

from cartera.core.adapters import CrmSync
from cartera.core.clock import SimulatedClock
from cartera.core.hooks import Hooks
from cartera.core.models import Activity, ActivityKind, AssignmentBatch, CheckResult, RowError
from cartera.core.store.database import Database
from cartera.core.store.schema import Account
from cartera.core.testing.context import CapturingContext
from cartera.core.testing.crm_sync import CrmSyncConformance, Delivery, RejectedDelivery
from cartera.plugins.crm_sync.sftp_csv.client import FileTooLarge, RemoteFile, SftpError, SftpSession, _describe
from cartera.plugins.crm_sync.sftp_csv.config import SftpCsvConfig
from cartera.plugins.crm_sync.sftp_csv.plugin import REHASH_SECONDS, SftpCsvSync
from cartera.portfolio.export import ActivityExporter
from cartera.portfolio.importer import AssignmentImporter
from cartera.portfolio.sync import CreditorSync
from tests.peers.sshd import Sshd, running_sshd
from tests.plugins.crm_sync.sftp_in_process import InProcessSftp, files_folder
from tests.plugins.crm_sync.test_csv_dir import GOOD_DELIVERY, WRONG_HEADER

pytestmark = pytest.mark.sftp
NOW = datetime(2026, 3, 2, 13, 30, tzinfo=UTC)


@pytest.fixture(scope="module")
def sshd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sshd]:
    with running_sshd(tmp_path_factory.mktemp("sshd")) as server:
        yield server


@pytest.fixture(autouse=True)
def empty_folders(sshd: Sshd) -> None:
    for folder in sshd.jail.iterdir():
        for item in sorted(folder.rglob("*"), reverse=True):
            item.rmdir() if item.is_dir() else item.unlink()


def settings(sshd: Sshd, **overrides: Any) -> dict[str, Any]:
    return {
        "host": "127.0.0.1",
        "port": sshd.port,
        "username": sshd.user,
        "private_key": sshd.private_key,
        "known_hosts": sshd.known_hosts,
        "inbox": "/inbox",
        "outbox": "/outbox",
        "creditor": "BCO",
        "portfolio": "TARJETAS",
        "settle_seconds": 0,  # files are dropped and fetched at once (unless a test sets it)
    } | overrides


@pytest.fixture
def make_sync(sshd: Sshd, tmp_path: Path) -> Iterator[Callable[..., SftpCsvSync]]:
    """Builds started adapters on the test's server; stops them (closing their sessions) at teardown."""
    started: list[SftpCsvSync] = []

    def build(**overrides: Any) -> SftpCsvSync:
        config = SftpCsvConfig.model_validate(settings(sshd, **overrides))
        sync = SftpCsvSync(config, CapturingContext(tmp_path / "data", clock=SimulatedClock(NOW, 1e-6)))
        sync.start()
        started.append(sync)
        return sync

    yield build
    for sync in started:
        sync.stop()


def outbox_rows(sshd: Sshd, pattern: str = "activities-*.csv") -> list[dict[str, str]]:
    rows: list[dict[str, str]] = []
    for path in sorted((sshd.jail / "outbox").glob(pattern)):
        with path.open(encoding="utf-8-sig", newline="") as stream:
            rows.extend(csv.DictReader(stream, delimiter=";"))
    return rows


def deliver(sshd: Sshd, name: str, text: str, encoding: str = "utf-8-sig") -> Path:
    path = sshd.jail / "inbox" / name
    path.write_bytes(text.encode(encoding))
    return path


class TestSftpCsvConformance(CrmSyncConformance):
    login: ClassVar[str] = "key"

    @pytest.fixture
    def context(self, tmp_path: Path) -> CapturingContext:
        return CapturingContext(tmp_path / "data", clock=SimulatedClock(NOW, 1e-6))

    @pytest.fixture
    def crm(self, sshd: Sshd, context: CapturingContext) -> Iterator[CrmSync[Any]]:
        login = {"password": sshd.password, "private_key": None} if self.login == "password" else {}
        sync = SftpCsvSync(SftpCsvConfig.model_validate(settings(sshd, **login)), context)
        sync.start()
        yield sync
        sync.stop()

    @pytest.fixture
    def good_delivery(self, sshd: Sshd) -> Delivery:
        path = deliver(sshd, "asignacion-20260302.csv", GOOD_DELIVERY)
        refs = ("BCO-000101", "BCO-000102", "BCO-000103", "BCO-000105")
        return Delivery(path=path, account_refs=refs, rejected_line=5, creditor="BCO", portfolio="TARJETAS")

    @pytest.fixture
    def bad_header_file(self, tmp_path: Path) -> Path:
        path = tmp_path / "wrong-header.csv"
        path.write_text("account;name;phone;amount\nBCO-1;Ana;3001234567;1000\n", encoding="utf-8")
        return path

    @pytest.fixture
    def rejected_delivery(self, sshd: Sshd) -> RejectedDelivery:
        deliver(sshd, "asignacion-rota.csv", WRONG_HEADER)
        folder = sshd.jail / "inbox" / "rejected"
        return RejectedDelivery(lambda: [p.read_bytes() for p in sorted(folder.iterdir())] if folder.exists() else [])

    @pytest.fixture
    def exported_seqs(self, sshd: Sshd) -> Callable[[], list[int]]:
        return lambda: [int(row["secuencia"]) for row in outbox_rows(sshd)]


class TestSftpCsvPasswordConformance(TestSftpCsvConformance):
    login: ClassVar[str] = "password"


@pytest.fixture
def db(tmp_path: Path) -> Iterator[Database]:
    store = Database(f"sqlite:///{tmp_path / 'store.db'}")
    store.migrate()
    yield store
    store.dispose()


def cycle(sync: SftpCsvSync, db: Database, hooks: Hooks) -> CreditorSync:
    importer = AssignmentImporter("t", "CO", db, SimulatedClock(NOW, 1.0), hooks)
    return CreditorSync(sync, importer, ActivityExporter("t", db, sync))


def test_fetch_import_archive_and_rejection_report(
    sshd: Sshd, tmp_path: Path, db: Database, hooks: Hooks, make_sync: Callable[..., SftpCsvSync]
) -> None:
    deliver(sshd, "asignacion.csv", GOOD_DELIVERY)
    deliver(sshd, "notas.txt", "not an assignment")
    sync = make_sync()
    run = cycle(sync, db, hooks).run_once()
    assert [(r.new, len(r.quarantined)) for r in run.imports] == [(4, 1)]
    assert sorted(p.name for p in (sshd.jail / "inbox").iterdir()) == ["imported", "notas.txt"]
    assert [p.name for p in (sshd.jail / "inbox" / "imported").iterdir()] == ["asignacion.csv"]
    report = sshd.jail / "outbox" / "asignacion.rechazos.csv"
    assert report.read_bytes().startswith(codecs.BOM_UTF8)
    with report.open(encoding="utf-8-sig", newline="") as stream:
        assert list(csv.reader(stream, delimiter=";")) == [
            ["linea", "campo", "motivo"],
            ["5", "balance", "column 'saldo': 'mil pesos' is not an amount"],
        ]
    assert not [p for p in (sshd.jail / "outbox").iterdir() if p.name.startswith(".")]
    assert list(sync.fetch()) == []
    assert list((tmp_path / "data" / "incoming").iterdir()) == []


def test_redelivered_file_changes_nothing_and_is_archived(
    sshd: Sshd, db: Database, hooks: Hooks, make_sync: Callable[..., SftpCsvSync]
) -> None:
    sync = make_sync()
    job = cycle(sync, db, hooks)
    deliver(sshd, "asignacion.csv", GOOD_DELIVERY)
    job.run_once()
    deliver(sshd, "asignacion.csv", GOOD_DELIVERY)
    (again,) = job.run_once().imports
    assert again.already_imported
    assert [e.line for e in again.quarantined] == [5]
    assert sorted(p.name for p in (sshd.jail / "inbox" / "imported").iterdir()) == [
        "asignacion-20260302T133000Z.csv",
        "asignacion.csv",
    ]


def test_a_file_still_being_uploaded_is_read_once_listed_unchanged_for_settle_seconds(
    sshd: Sshd, db: Database, hooks: Hooks, make_sync: Callable[..., SftpCsvSync], caplog: pytest.LogCaptureFixture
) -> None:
    """Round 21 A-F12: a file caught while the creditor was still writing it under its final name was imported
    with its last row cut (a balance of 1,250,000 stored as 12), and the rest of the upload landed in the archive.
    Its size and mtime, listed by the server, must hold for settle_seconds of the node's own clock."""
    inbox = sshd.jail / "inbox"
    job = cycle(make_sync(settle_seconds=0.5), db, hooks)
    header = "cuenta;nombre;telefono1;telefono2;saldo;moneda\n"
    full = (header + "BCO-1;Ana;3001234567;;1000;COP\nBCO-2;Eva;3001234568;;1250000;COP\n").encode()
    cut = full.index(b"1250000") + 2
    caplog.set_level(logging.INFO)
    with (inbox / "asignacion.csv").open("wb", buffering=0) as upload:  # as sftp-server writes it
        upload.write(full[:cut])
        os.utime(inbox / "asignacion.csv", (1, 1))  # an old time is no sign of a finished upload on a server
        during = job.run_once()
        upload.write(full[cut:])
    listed = job.run_once()  # the size changed since: listed anew
    time.sleep(0.6)
    after = job.run_once()
    assert (during.imports, during.failed, listed.imports, listed.failed) == ([], [], [], [])
    assert [r.new for r in after.imports] == [2]
    with db.session() as session:
        assert dict(session.execute(select(Account.ref, Account.balance)).all()) == {
            "BCO-1": Decimal("1000.00"),
            "BCO-2": Decimal("1250000.00"),
        }
    assert (inbox / "imported" / "asignacion.csv").read_bytes() == full
    settling = [r for r in caplog.records if r.getMessage() == "crm_sync.sftp.settling"]
    assert len(settling) == 1


@pytest.mark.abuse
def test_a_file_resent_after_a_later_delivery_is_applied_again(
    sshd: Sshd, db: Database, hooks: Hooks, make_sync: Callable[..., SftpCsvSync]
) -> None:
    """Round 19 G1: a withdrawal re-sent after the account was assigned again withdraws it again; the same file
    right after itself is still a duplicate."""
    header = "cuenta;nombre;telefono1;saldo;moneda;accion\n"
    withdraw = header + "BCO-1;Ana Perez;3001234567;100000;COP;retirar\n"
    job = cycle(make_sync(), db, hooks)
    runs: list[tuple[bool, int]] = []
    for name, text in [
        ("enero.csv", header + "BCO-1;Ana Perez;3001234567;100000;COP;asignar\n"),
        ("retiro.csv", withdraw),
        ("retiro.csv", withdraw),
        ("marzo.csv", header + "BCO-1;Ana Perez;3001234567;90000;COP;asignar\n"),
        ("retiro.csv", withdraw),
    ]:
        deliver(sshd, name, text)
        (report,) = job.run_once().imports
        runs.append((report.already_imported, report.withdrawn))
    assert runs == [(False, 0), (False, 1), (True, 0), (False, 0), (False, 1)]
    with db.session() as session:
        assert session.execute(select(Account.status, Account.balance)).all() == [("withdrawn", Decimal("90000.00"))]
    assert not list((sshd.jail / "inbox").glob("*.csv"))  # every delivery archived


@pytest.mark.abuse
def test_a_server_listing_its_inbox_empty_once_forgets_no_stuck_file(
    sshd: Sshd, db: Database, hooks: Hooks, make_sync: Callable[..., SftpCsvSync]
) -> None:
    """Round 22 A-F8: a server listing its inbox empty for one sync (its storage not mounted yet) made the node
    forget every stuck file (archive rename refused); listed again, each was applied again, the older delivery
    (named later) over the later one. One empty listing forgets nothing (forgotten once unlisted for FORGET_AFTER)."""
    header = "cuenta;nombre;telefono1;saldo;moneda;accion\n"
    inbox = sshd.jail / "inbox"
    job = cycle(make_sync(), db, hooks)

    def sync() -> tuple[int, tuple[str, Decimal]]:
        run = job.run_once()
        with db.session() as session:
            ((status, balance),) = session.execute(select(Account.status, Account.balance)).all()
        return len(run.failed), (status, balance)

    (inbox / "imported").write_text("not a folder")  # the archive rename is refused: the files stay, stuck
    deliver(sshd, "viejo.csv", header + "BCO-1;Ana Perez;3001234567;1250000;COP;asignar\n")
    assert sync() == (1, ("active", Decimal("1250000.00")))  # imported, not archived
    deliver(sshd, "nuevo.csv", header + "BCO-1;Ana Perez;3001234567;99;COP;asignar\n")  # a later delivery
    assert sync() == (1, ("active", Decimal("99.00")))
    assert sync() == (0, ("active", Decimal("99.00")))
    away = sshd.jail / "unmounted"
    away.mkdir()
    for name in ("viejo.csv", "nuevo.csv"):
        (inbox / name).rename(away / name)
    assert sync() == (0, ("active", Decimal("99.00")))  # listed empty once
    for name in ("viejo.csv", "nuevo.csv"):
        (away / name).rename(inbox / name)
    assert sync() == (0, ("active", Decimal("99.00")))  # neither fetched nor applied again


@pytest.mark.abuse
def test_a_file_whose_archive_was_refused_is_not_applied_again_after_a_later_delivery(
    sshd: Sshd, db: Database, hooks: Hooks, make_sync: Callable[..., SftpCsvSync], caplog: pytest.LogCaptureFixture
) -> None:
    """Follow-up of round 19 G1: a withdrawal imported but left on the server (its archive rename refused) is
    remembered by name, size, mtime and SHA-256 and not fetched again while unchanged, so it never undoes a later
    re-assignment; the rename is retried every sync (logged) and succeeds once the archive is fixed. The file
    changed on the server is a new delivery."""
    caplog.set_level(logging.INFO)
    header = "cuenta;nombre;telefono1;saldo;moneda;accion\n"
    inbox = sshd.jail / "inbox"
    job = cycle(make_sync(), db, hooks)

    def sync() -> tuple[int, int, int, tuple[str, Decimal]]:
        run = job.run_once()
        with db.session() as session:
            ((status, balance),) = session.execute(select(Account.status, Account.balance)).all()
        return len(run.imports), sum(r.withdrawn for r in run.imports), len(run.failed), (status, balance)

    deliver(sshd, "enero.csv", header + "BCO-1;Ana Perez;3001234567;100000;COP;asignar\n")
    assert sync() == (1, 0, 0, ("active", Decimal("100000.00")))
    (inbox / "imported").rename(inbox / "archivo-viejo")
    (inbox / "imported").write_text("not a folder")  # the archive rename is refused
    deliver(sshd, "retiro.csv", header + "BCO-1;Ana Perez;3001234567;100000;COP;retirar\n")
    assert sync() == (0, 0, 1, ("withdrawn", Decimal("100000.00")))  # imported, not archived: delivery_failed
    deliver(sshd, "marzo.csv", header + "BCO-1;Ana Perez;3001234567;90000;COP;asignar\n")
    assert sync() == (0, 0, 1, ("active", Decimal("90000.00")))  # marzo stuck too; retiro not applied again
    job = cycle(make_sync(), db, hooks)  # a restarted node remembers them too (unarchived.json)
    assert [sync() for _ in range(2)] == [(0, 0, 0, ("active", Decimal("90000.00")))] * 2
    logged = [r.getMessage() for r in caplog.records]
    assert logged.count("crm_sync.sftp.archive_failed") == 1 + 2 + 2 * 2  # each import, then each sync's retry
    assert sorted(p.name for p in inbox.glob("*.csv")) == ["marzo.csv", "retiro.csv"]
    deliver(sshd, "retiro.csv", header + "BCO-1;Ana Perez;3001234567;90000;COP;retirar\n")  # changed: new delivery
    assert sync() == (0, 0, 1, ("withdrawn", Decimal("90000.00")))
    assert sync() == (0, 0, 0, ("withdrawn", Decimal("90000.00")))
    (inbox / "imported").unlink()
    (inbox / "archivo-viejo").rename(inbox / "imported")
    assert sync() == (0, 0, 0, ("withdrawn", Decimal("90000.00")))  # both archived by the retry
    assert not list(inbox.glob("*.csv"))
    assert sorted(p.name for p in (inbox / "imported").iterdir()) == ["enero.csv", "marzo.csv", "retiro.csv"]
    assert [sync() for _ in range(2)] == [(0, 0, 0, ("withdrawn", Decimal("90000.00")))] * 2


@pytest.mark.abuse
def test_a_connection_drop_between_the_import_and_the_archive_rename_leaves_the_file_remembered(
    sshd: Sshd, db: Database, hooks: Hooks, make_sync: Callable[..., SftpCsvSync], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Round 20 I-F6: a withdrawal imported, then the link dropped in the check before its archive rename (the
    server's sha256): it was not remembered, so it was fetched again and undid a later re-assignment."""
    header = "cuenta;nombre;telefono1;saldo;moneda;accion\n"
    job = cycle(make_sync(), db, hooks)
    real_sha256 = SftpSession.sha256
    dropped: list[str] = []

    def sha256_then_drop(session: SftpSession, remote: RemoteFile) -> str | None:
        if remote.path.endswith("retiro.csv") and not dropped:
            dropped.append(remote.path)
            raise SftpError("connection lost")
        return real_sha256(session, remote)

    monkeypatch.setattr(SftpSession, "sha256", sha256_then_drop)

    def sync() -> tuple[int, int, tuple[str, Decimal]]:
        run = job.run_once()
        with db.session() as session:
            ((status, balance),) = session.execute(select(Account.status, Account.balance)).all()
        return len(run.imports), len(run.failed), (status, balance)

    deliver(sshd, "enero.csv", header + "BCO-1;Ana Perez;3001234567;100000;COP;asignar\n")
    assert sync() == (1, 0, ("active", Decimal("100000.00")))
    deliver(sshd, "retiro.csv", header + "BCO-1;Ana Perez;3001234567;100000;COP;retirar\n")
    assert sync() == (0, 1, ("withdrawn", Decimal("100000.00")))  # imported; the drop fails the delivery
    assert dropped
    deliver(sshd, "marzo.csv", header + "BCO-1;Ana Perez;3001234567;90000;COP;asignar\n")
    assert [sync() for _ in range(3)] == [(1, 0, ("active", Decimal("90000.00")))] + [
        (0, 0, ("active", Decimal("90000.00")))
    ] * 2
    assert not list((sshd.jail / "inbox").glob("*.csv"))  # retiro archived by the next sync's retry


@pytest.mark.abuse
def test_a_node_upgraded_in_place_fetches_no_file_its_unarchived_json_remembered(
    sshd: Sshd, db: Database, hooks: Hooks, make_sync: Callable[..., SftpCsvSync], caplog: pytest.LogCaptureFixture
) -> None:
    """An earlier version remembered an imported file whose archive rename failed in unarchived.json (remote name,
    size, mtime, sha256): the new plugin takes it over once, so the withdrawal left on the server is not applied
    again after the upgrade (it would undo the later re-assignment); its rename is retried instead."""
    caplog.set_level(logging.INFO)
    header = "cuenta;nombre;telefono1;saldo;moneda;accion\n"
    sync = make_sync()
    job = cycle(sync, db, hooks)
    deliver(sshd, "marzo.csv", header + "BCO-1;Ana Perez;3001234567;90000;COP;asignar\n")
    assert len(job.run_once().imports) == 1
    retiro = deliver(sshd, "retiro.csv", header + "BCO-1;Ana Perez;3001234567;90000;COP;retirar\n")
    status = retiro.stat()
    state = sync.context.data_dir / "unarchived.json"
    state.write_text(
        json.dumps(
            [
                {
                    "source": f"{sync._session.where}/inbox/retiro.csv",
                    "path": "/inbox/retiro.csv",
                    "size": status.st_size,
                    "mtime": int(status.st_mtime),
                    "sha256": hashlib.sha256(retiro.read_bytes()).hexdigest(),
                }
            ]
        )
    )
    job = cycle(make_sync(), db, hooks)
    assert not state.exists()
    run = job.run_once()
    assert (run.imports, run.failed) == ([], [])
    with db.session() as session:
        assert session.execute(select(Account.status)).scalars().all() == ["active"]
    assert sorted(p.name for p in (sshd.jail / "inbox" / "imported").iterdir()) == ["marzo.csv", "retiro.csv"]
    logged = [r.getMessage() for r in caplog.records]
    assert "crm_sync.set_aside.upgraded" in logged
    assert logged.count("crm_sync.sftp.archived") == 2  # marzo at its import, retiro by the retry


def test_bad_file_is_reported_once_set_aside_and_a_corrected_one_imports(
    sshd: Sshd, db: Database, hooks: Hooks, make_sync: Callable[..., SftpCsvSync], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    bad = deliver(
        sshd, "roto.csv", "cuenta;nombre;telefono1;saldo\nCR-1;Ana;3001234567;1\nCR-2;Jos\x81;3;1\n", "latin-1"
    )
    content = bad.read_bytes()
    job = cycle(make_sync(rejected="/outbox/rechazados"), db, hooks)
    runs = [job.run_once(), job.run_once()]
    assert [run.imports for run in runs] == [[], []]
    assert [len(run.rejected) for run in runs] == [1, 0]
    assert (
        runs[0]
        .rejected[0]
        .endswith("/inbox/roto.csv: line 3: byte 0x81 at column 9 is not valid UTF-8 or Windows-1252")
    )
    logged = [r.getMessage() for r in caplog.records]
    assert (logged.count("sync.file_rejected"), logged.count("crm_sync.sftp.rejections_uploaded")) == (1, 1)
    assert list((sshd.jail / "inbox").iterdir()) == []
    assert (sshd.jail / "outbox" / "rechazados" / "roto.csv").read_bytes() == content
    with (sshd.jail / "outbox" / "roto.rechazos.csv").open(encoding="utf-8-sig", newline="") as stream:
        assert list(csv.reader(stream, delimiter=";"))[1:] == [
            ["3", "file", "byte 0x81 at column 9 is not valid UTF-8 or Windows-1252"]
        ]
    deliver(sshd, "roto.csv", GOOD_DELIVERY)  # corrected, under the same name
    (report,) = job.run_once().imports
    assert (report.new, [e.line for e in report.quarantined]) == (4, [5])
    deliver(sshd, "roto.csv", WRONG_HEADER)
    assert len(job.run_once().rejected) == 1
    assert sorted(p.name for p in (sshd.jail / "outbox" / "rechazados").iterdir()) == [
        "roto-20260302T133000Z.csv",
        "roto.csv",
    ]
    assert (sshd.jail / "outbox" / "rechazados" / "roto.csv").read_bytes() == content


@pytest.mark.abuse
def test_only_regular_remote_files_are_fetched_a_symlink_skipped_with_one_warning(
    sshd: Sshd, make_sync: Callable[..., SftpCsvSync], caplog: pytest.LogCaptureFixture
) -> None:
    theirs = sshd.jail / "outbox" / "theirs.csv"
    theirs.write_text(GOOD_DELIVERY, encoding="utf-8")
    deliver(sshd, "a.csv", GOOD_DELIVERY)
    (sshd.jail / "inbox" / "env.csv").symlink_to("../outbox/theirs.csv")
    (sshd.jail / "inbox" / "folder.csv").mkdir()
    sync = make_sync()
    caplog.set_level(logging.WARNING)
    for _ in range(2):
        assert [batch.source.rsplit("/", 1)[1] for batch in sync.fetch()] == ["a.csv"]
    warnings = [r for r in caplog.records if r.getMessage() == "crm_sync.sftp.not_a_regular_file"]
    skipped = [r.fields["file"] for r in warnings]  # type: ignore[attr-defined]
    assert [name.rsplit("/", 1)[1] for name in skipped] == ["env.csv", "folder.csv"]
    assert sync.check().detail.endswith("lists 1 file(s) waiting")


@pytest.mark.abuse
def test_a_remote_file_swapped_for_a_symlink_after_listing_is_dropped(
    sshd: Sshd, make_sync: Callable[..., SftpCsvSync], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    (sshd.jail / "outbox" / "theirs.csv").write_text(GOOD_DELIVERY, encoding="utf-8")
    inbox_file = deliver(sshd, "a.csv", WRONG_HEADER)
    sync = make_sync()
    listed = sync._session.waiting()
    inbox_file.unlink()
    inbox_file.symlink_to("../outbox/theirs.csv")
    monkeypatch.setattr(sync._session, "waiting", lambda: listed)
    assert list(sync.fetch()) == []
    assert list((tmp_path / "data" / "incoming").iterdir()) == []


def test_export_upload_is_incremental(
    sshd: Sshd, db: Database, hooks: Hooks, make_sync: Callable[..., SftpCsvSync]
) -> None:
    deliver(sshd, "a.csv", "cuenta;nombre;telefono1;saldo\nA-1;Ana;3001234567;1.000\n")
    job = cycle(make_sync(), db, hooks)
    job.run_once()
    deliver(sshd, "b.csv", "cuenta;nombre;telefono1;saldo;accion;referencia_pago\nA-1;;;250,50;pago;R-1\n")
    assert job.run_once().exported == 1
    assert job.run_once().exported == 0
    (row,) = outbox_rows(sshd)
    assert (row["tipo"], row["cuenta"], row["monto"], row["resultado"]) == ("payment", "A-1", "250,50", "R-1")


def test_changed_host_key_is_refused(sshd: Sshd, tmp_path: Path, make_sync: Callable[..., SftpCsvSync]) -> None:
    sync = make_sync(known_hosts=sshd.other_host_key(tmp_path))
    result = sync.check()
    assert not result.ok
    assert "host key CHANGED" in result.detail
    with pytest.raises(SftpError, match="host key CHANGED"):
        list(sync.fetch())


def test_unknown_host_key_and_wrong_password_are_refused(
    sshd: Sshd, tmp_path: Path, make_sync: Callable[..., SftpCsvSync]
) -> None:
    empty = tmp_path / "known_hosts.empty"
    empty.write_text("")
    unknown = make_sync(known_hosts=empty).check()
    assert not unknown.ok
    assert f"host key UNKNOWN: [127.0.0.1]:{sshd.port} is not in {empty}" in unknown.detail
    wrong = make_sync(private_key=None, password="not-the-password").check()
    assert wrong == CheckResult(
        False, f"sftp://{sshd.user}@127.0.0.1:{sshd.port}: authentication failed (password refused)"
    )
    assert "not-the-password" not in wrong.detail


def test_check_lists_the_inbox(sshd: Sshd, make_sync: Callable[..., SftpCsvSync]) -> None:
    deliver(sshd, "a.csv", GOOD_DELIVERY)
    result = make_sync(password=sshd.password, private_key=None).check()
    assert result.ok
    assert result.detail.endswith("logged in, inbox /inbox lists 1 file(s) waiting")


def test_session_closed_by_the_server_is_reopened(sshd: Sshd, make_sync: Callable[..., SftpCsvSync]) -> None:
    sync = make_sync()
    assert sync.check().ok
    sshd.drop_sessions()
    deadline = time.monotonic() + 10
    while subprocess.run(["pgrep", "-P", str(sshd.pid)], capture_output=True, check=False).returncode == 0:
        assert time.monotonic() < deadline, "the session did not end"
        time.sleep(0.05)
    time.sleep(0.2)
    assert sync.check().ok


def test_config_needs_a_login(sshd: Sshd) -> None:
    with pytest.raises(ValidationError, match="set password or private_key"):
        SftpCsvConfig.model_validate(settings(sshd, private_key=None))


@pytest.mark.postgres
def test_cycle_into_a_postgresql_store(
    sshd: Sshd, postgres_url: str, hooks: Hooks, make_sync: Callable[..., SftpCsvSync]
) -> None:
    store = Database(postgres_url)
    store.migrate()
    try:
        deliver(sshd, "asignacion.csv", GOOD_DELIVERY)
        job = cycle(make_sync(), store, hooks)
        (report,) = job.run_once().imports
        assert (report.new, [e.line for e in report.quarantined]) == (4, [5])
        deliver(sshd, "asignacion.csv", GOOD_DELIVERY)
        assert job.run_once().imports[0].already_imported
        assert len(list((sshd.jail / "inbox" / "imported").iterdir())) == 2
    finally:
        store.dispose()


@pytest.mark.abuse
def test_a_file_larger_than_max_file_bytes_stays_on_the_server_with_one_warning(
    sshd: Sshd, make_sync: Callable[..., SftpCsvSync], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    enormous = deliver(sshd, "enorme.csv", GOOD_DELIVERY + "X" * (100 << 10))
    deliver(sshd, "normal.csv", GOOD_DELIVERY)
    sync = make_sync(max_file_bytes=64 << 10)
    caplog.set_level(logging.WARNING)
    for _ in range(2):
        assert [batch.source.rsplit("/", 1)[1] for batch in sync.fetch()] == ["normal.csv"]
    warnings = [record for record in caplog.records if record.getMessage() == "crm_sync.sftp.file_too_large"]
    assert len(warnings) == 1
    assert enormous.exists()
    assert not list((tmp_path / "data").rglob("*enorme*"))


@pytest.mark.abuse
def test_a_download_is_cut_once_it_passes_max_file_bytes(sshd: Sshd, tmp_path: Path) -> None:
    growing = deliver(sshd, "crece.csv", "x" * (60 << 10), encoding="ascii")
    session = SftpSession(SftpCsvConfig.model_validate(settings(sshd, max_file_bytes=64 << 10)))
    try:
        (remote,) = session.waiting()  # listed under the limit, then it grows (or the server lied)
        with growing.open("ab") as sink:
            sink.write(b"x" * (4 << 20))
        with pytest.raises(FileTooLarge, match=r"crece\.csv: more than 65536 bytes \(max_file_bytes\)$"):
            session.download(remote, tmp_path / "crece.csv")
    finally:
        session.close()
    assert list(tmp_path.iterdir()) == []


@pytest.mark.abuse
@pytest.mark.parametrize(("setting", "expected"), [({}, 0o600), ({"file_mode": "0640"}, 0o640)])
def test_uploaded_exports_and_rejection_reports_get_the_configured_mode(
    sshd: Sshd, make_sync: Callable[..., SftpCsvSync], setting: dict[str, str], expected: int
) -> None:
    """Not the server's umask: only the mode the operator chose for the creditor's pick-up (#14 round 8, H2)."""
    sync = make_sync(**setting)
    at = datetime(2026, 3, 2, 14, 5, 30, tzinfo=UTC)
    sync.export([Activity(7, ActivityKind.CALL_ATTEMPT, at, "BCO", "TARJETAS", "BCO-1", "+573001234567", "busy")])
    sync.report_rejections(AssignmentBatch("/inbox/a.csv", "0" * 64, []), [RowError(2, "saldo", "not a number")])
    written = sorted((sshd.jail / "outbox").iterdir())
    assert len(written) == 2
    assert [oct(path.stat().st_mode & 0o777) for path in written] == [oct(expected)] * 2


@pytest.mark.abuse
def test_a_file_that_cannot_be_downloaded_is_skipped_with_one_warning_and_the_others_load(
    sshd: Sshd,
    db: Database,
    hooks: Hooks,
    make_sync: Callable[..., SftpCsvSync],
    caplog: pytest.LogCaptureFixture,
) -> None:
    """One file the server refuses (mode 000) or whose name is too long for a local temporary name does not stop
    the files after it, on any run (#14 round 15 M5)."""
    locked = deliver(sshd, "a-unreadable.csv", "cuenta;nombre;telefono1;saldo\nU-1;Ana;3001234567;1000\n")
    locked.chmod(0)
    long_name = "a" + "x" * 240 + ".csv"
    deliver(sshd, long_name, "cuenta;nombre;telefono1;saldo\nL-1;Ana;3001234567;1000\n")
    deliver(sshd, "b-good.csv", "cuenta;nombre;telefono1;saldo\nB-1;Ana;3001234567;1000\n")
    sync = make_sync()
    job = cycle(sync, db, hooks)
    caplog.set_level(logging.WARNING)
    first, second = job.run_once(), job.run_once()
    assert (first.failed, [report.new for report in first.imports]) == ([], [1, 1])
    assert (second.failed, second.imports) == ([], [])
    warnings = [r for r in caplog.records if r.getMessage() == "crm_sync.sftp.file_unreadable"]
    assert [r.fields["file"].rsplit("/", 1)[1] for r in warnings] == ["a-unreadable.csv"]  # type: ignore[attr-defined]
    assert "Permission denied" in warnings[0].fields["why"]  # type: ignore[attr-defined]
    assert locked.exists()
    assert sorted(p.name for p in (sshd.jail / "inbox" / "imported").iterdir()) == [long_name, "b-good.csv"]
    assert list(sync._incoming.iterdir()) == []


@pytest.mark.abuse
def test_a_rejection_report_never_overwrites_an_earlier_one_still_in_the_outbox(
    sshd: Sshd, db: Database, hooks: Hooks, make_sync: Callable[..., SftpCsvSync]
) -> None:
    """Creditors reuse one file name: each delivery's report is kept until the creditor takes it; the same
    report sent again (after a crash) is not written twice (#14 round 15 M6)."""
    sync = make_sync()
    job = cycle(sync, db, hooks)
    header = "cuenta;nombre;telefono1;saldo\nA-1;Ana;3001234567;1000\n"
    for bad in ("-5", "abc", "x"):
        deliver(sshd, "asignacion.csv", f"{header}A-2;Luis;3101234567;{bad}\n")
        (report,) = job.run_once().imports
        assert len(report.quarantined) == 1
    outbox = sshd.jail / "outbox"
    names = ["asignacion.rechazos.csv", "asignacion-20260302T133000Z.rechazos.csv"]
    names.append("asignacion-20260302T133000Z-1.rechazos.csv")
    assert sorted(p.name for p in outbox.iterdir()) == sorted(names)
    reasons = []
    for name in names:
        with (outbox / name).open(encoding="utf-8-sig", newline="") as stream:
            reasons.append(list(csv.reader(stream, delimiter=";"))[1][2])
    assert ["-5" in reasons[0], "abc" in reasons[1], "'x'" in reasons[2]] == [True] * 3
    for _ in range(2):
        sync.report_rejections(AssignmentBatch("/inbox/asignacion.csv", "0" * 64, []), [RowError(3, "x", "y")])
    assert len(list(outbox.iterdir())) == 4  # the same report twice: one file
    assert not [p for p in outbox.iterdir() if p.name.startswith(".")]


@pytest.mark.abuse
def test_a_file_rewritten_in_place_within_the_second_at_the_same_size_is_not_archived_unimported(
    sshd: Sshd, db: Database, hooks: Hooks, make_sync: Callable[..., SftpCsvSync], caplog: pytest.LogCaptureFixture
) -> None:
    """SFTP's mtime has whole seconds: the corrected bytes, not the attributes, show the rewrite; they stay in
    the inbox and are imported next run (#14 round 15 L1)."""
    path = deliver(sshd, "d.csv", "cuenta;nombre;telefono1;saldo\nD-1;Ana;3001234561;1000\n")
    sync = make_sync()
    importer = AssignmentImporter("t", "CO", db, SimulatedClock(NOW, 1.0), hooks)
    (batch,) = sync.fetch()
    before = path.stat()
    with path.open("r+b") as stream:  # in place: same inode, same size, same whole-second mtime
        stream.write(b"cuenta;nombre;telefono1;saldo\nD-1;Ana;3001234561;9000\n")
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))
    assert path.stat().st_size == before.st_size
    caplog.set_level(logging.WARNING)
    assert importer.import_batch(batch, actor="sync", scope=sync.delivers()).new == 1
    sync.acknowledge(batch)
    assert path.exists()
    assert not (sshd.jail / "inbox" / "imported").exists()
    assert [r.getMessage() for r in caplog.records] == ["crm_sync.sftp.changed_after_import"]
    (again,) = cycle(sync, db, hooks).run_once().imports
    assert (again.updated, again.new) == (1, 0)
    assert [p.name for p in (sshd.jail / "inbox" / "imported").iterdir()] == ["d.csv"]


@pytest.mark.abuse
@pytest.mark.parametrize("also_listed", [True, False])
def test_a_host_key_marked_revoked_in_known_hosts_is_refused(
    sshd: Sshd, tmp_path: Path, make_sync: Callable[..., SftpCsvSync], also_listed: bool
) -> None:
    """OpenSSH's ``@revoked`` marker is honoured: that key is refused even where a plain line lists it, before
    logging in (#14 round 15 L4)."""
    good = sshd.known_hosts.read_text()
    known = tmp_path / "known_hosts.revoked"
    known.write_text((good if also_listed else "") + f"@revoked [127.0.0.1]:{sshd.port} {good.split(' ', 1)[1]}")
    result = make_sync(known_hosts=known).check()
    assert not result.ok
    assert "host key REVOKED: the server presented ssh-ed25519 SHA256:" in result.detail
    assert result.detail.endswith(f"marked @revoked in {known}; refusing to connect")
    other = sshd.other_host_key(tmp_path).read_text().split(" ", 1)[1]
    known.write_text(f"{good}@revoked * {other}")  # another key revoked: this server's is still good
    assert make_sync(known_hosts=known).check().ok


@pytest.mark.abuse
def test_a_cert_authority_line_in_known_hosts_fails_closed_naming_the_line(
    sshd: Sshd, tmp_path: Path, make_sync: Callable[..., SftpCsvSync]
) -> None:
    """Host certificates are not checked: a ``@cert-authority`` line says so, naming the file and line, instead of
    paramiko's raw InvalidHostKey (#14 round 15 L4)."""
    good = sshd.known_hosts.read_text()
    known = tmp_path / "known_hosts.ca"
    known.write_text(f"# the creditor's CA\n{good}@cert-authority *.example.com {good.split(' ', 1)[1]}")
    result = make_sync(known_hosts=known).check()
    assert not result.ok
    assert f"known_hosts {known} line 3: markers are not supported ('@cert-authority'" in result.detail
    with pytest.raises(SftpError, match="markers are not supported"):
        list(make_sync(known_hosts=known).fetch())
    known.write_text(f"{good}[127.0.0.1]:{sshd.port} ssh-ed25519 not*base64\n")
    assert (
        make_sync(known_hosts=known).check().detail.endswith(f"known_hosts {known} line 2: not a valid host key line")
    )


@pytest.mark.abuse
def test_a_name_that_is_not_utf8_is_skipped_with_one_warning_and_the_other_folders_still_list(
    sshd: Sshd, db: Database, hooks: Hooks, make_sync: Callable[..., SftpCsvSync], caplog: pytest.LogCaptureFixture
) -> None:
    """A Windows-1252 ERP's ``caf\\xe9.csv`` in the inbox, the archive, the rejected folder or the outbox: the
    inbox entry is skipped with one warning naming it escaped, and the good file is imported, archived and
    reported on (paramiko's strict decoding failed the whole listing, #14 round 16 M4)."""
    inbox = sshd.jail / "inbox"
    for made in ("imported", "rejected"):
        (inbox / made).mkdir()
        (inbox / made).chmod(0o777)  # the server's login is another user
    for folder in (b"", b"imported/", b"rejected/"):
        with open(os.path.join(os.fsencode(inbox), folder + b"caf\xe9.csv"), "wb") as stream:
            stream.write(GOOD_DELIVERY.encode())
    with open(os.path.join(os.fsencode(sshd.jail / "outbox"), b"good-rechaz\xe9.csv"), "wb") as stream:
        stream.write(b"x")
    deliver(sshd, "good.csv", GOOD_DELIVERY)
    deliver(sshd, "roto.csv", WRONG_HEADER)
    sync = make_sync()
    assert sync.check().detail.endswith("lists 2 file(s) waiting")
    job = cycle(sync, db, hooks)
    caplog.set_level(logging.WARNING)
    first, second = job.run_once(), job.run_once()
    assert (first.failed, [report.new for report in first.imports], len(first.rejected)) == ([], [4], 1)
    assert (second.failed, second.imports, second.rejected) == ([], [], [])
    warnings = [r for r in caplog.records if r.getMessage() == "crm_sync.sftp.name_not_utf8"]
    assert [r.fields["file"] for r in warnings] == [  # type: ignore[attr-defined]
        f"sftp://{sshd.user}@127.0.0.1:{sshd.port}/inbox/caf\\xe9.csv"
    ]
    assert sorted(os.listdir(os.fsencode(inbox))) == [b"caf\xe9.csv", b"imported", b"rejected"]
    assert sorted(os.listdir(os.fsencode(inbox / "imported"))) == [b"caf\xe9.csv", b"good.csv"]
    assert sorted(os.listdir(os.fsencode(inbox / "rejected"))) == [b"caf\xe9.csv", b"roto.csv"]
    assert (sshd.jail / "outbox" / "good.rechazos.csv").exists()


GOOD_FILE = b"cuenta;nombre;telefono1;saldo\nT-1;Ana;3001234567;1000\n"


class _TrickleServer(InProcessSftp):
    """An SFTP server (paramiko, in this process) whose inbox holds ``a-slow.csv``, sent one byte per read every
    0.2 s (each read well within ``timeout_s``), and ``b-good.csv``, sent at once."""

    def __init__(self, tmp_path: Path) -> None:
        files = {"a-slow.csv": b"c" * 100, "b-good.csv": GOOD_FILE}

        def read(name: str, offset: int, length: int) -> bytes:
            if "slow" not in name:
                return files[name][offset : offset + length]
            time.sleep(0.2)
            return b"c" if offset < 100 else b""

        super().__init__(tmp_path, files_folder(files, read))


@pytest.mark.abuse
def test_a_server_sending_a_byte_at_a_time_is_cut_by_download_timeout_s_and_the_other_files_load(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """``timeout_s`` bounds each read only: a server answering every read with one byte held the sync job (and the
    node's stop, which waits for it) for ever. Past ``download_timeout_s`` the download is cut, the file skipped
    with one warning and the fetch ended; the next fetch takes the other files first (#14 round 16 M3)."""
    server = _TrickleServer(tmp_path)
    sync = server.sync(tmp_path / "data", download_timeout_s=1)
    caplog.set_level(logging.WARNING)
    try:
        fetched: list[list[str]] = []
        for _ in range(3):
            began = time.monotonic()
            fetched.append([batch.source.rsplit("/", 1)[1] for batch in sync.fetch()])
            assert time.monotonic() - began < 4  # one cut at 1 s (the file would take 20 s)
    finally:
        sync.stop()
        server.close()
    assert fetched == [[], ["b-good.csv"], ["b-good.csv"]]
    warnings = [r for r in caplog.records if r.getMessage() == "crm_sync.sftp.file_unreadable"]
    assert [r.fields["file"].rsplit("/", 1)[1] for r in warnings] == ["a-slow.csv"]  # type: ignore[attr-defined]
    assert "cut after 1 s (download_timeout_s)" in warnings[0].fields["why"]  # type: ignore[attr-defined]
    assert [p.name for p in (tmp_path / "data" / "incoming").iterdir()] == ["b-good.csv"]


@pytest.mark.abuse
def test_a_listed_name_holding_a_nul_is_skipped_and_the_other_files_load(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Round 22 A-F5: a hostile server listing ``a\\x00b.csv`` (valid UTF-8, no file system's) ended every fetch
    with ``ValueError: embedded null byte`` once downloaded, so the files after it never loaded."""
    files = {"a\x00b.csv": GOOD_FILE, "good.csv": GOOD_FILE}
    server = InProcessSftp(tmp_path, files_folder(files))
    sync = server.sync(tmp_path / "data")
    caplog.set_level(logging.WARNING)
    try:
        fetched = [[batch.source.rsplit("/", 1)[1] for batch in sync.fetch()] for _ in range(2)]
    finally:
        sync.stop()
        server.close()
    assert fetched == [["good.csv"], ["good.csv"]]
    warnings = [r for r in caplog.records if r.getMessage() == "crm_sync.sftp.name_not_utf8"]
    assert [r.fields["file"].rsplit("/", 1)[1] for r in warnings] == ["a\\x00b.csv"]  # type: ignore[attr-defined]


@pytest.mark.abuse
def test_a_servers_error_text_is_cut() -> None:
    """The server writes an SFTP status message (up to a packet, ~256 KiB): it was logged and stored whole (round
    17 M4); an error keeps its first 500 characters and says how long it was."""
    assert _describe(OSError("no such file")) == "no such file"
    assert _describe(OSError("x" * 100_000)) == "x" * 500 + "... (100000 characters)"


def test_a_rejected_file_whose_rejected_folder_refuses_is_remembered_and_its_rename_retried(
    sshd: Sshd, db: Database, hooks: Hooks, make_sync: Callable[..., SftpCsvSync], caplog: pytest.LogCaptureFixture
) -> None:
    """Round 21 A-F5: a rejected file whose rename into the rejected folder failed was downloaded, read and
    rejected again every sync (a failed delivery each time). It is remembered as rejected, as csv does: not
    fetched again while unchanged, its rename retried each sync."""
    caplog.set_level(logging.INFO)
    inbox = sshd.jail / "inbox"
    job = cycle(make_sync(), db, hooks)
    (inbox / "rejected").write_text("not a folder")
    deliver(sshd, "rota.csv", WRONG_HEADER)
    runs = [job.run_once() for _ in range(3)]
    assert [(len(run.rejected), len(run.failed)) for run in runs] == [(1, 1), (0, 0), (0, 0)]
    logged = [r.getMessage() for r in caplog.records]
    assert logged.count("crm_sync.sftp.set_aside_failed") == 3  # the rejection, then each sync's retry
    assert logged.count("sync.file_rejected") == 1
    (inbox / "rejected").unlink()
    assert (len(job.run_once().rejected), len(job.run_once().rejected)) == (0, 0)
    assert [p.name for p in (inbox / "rejected").iterdir()] == ["rota.csv"]
    assert not list(inbox.glob("*.csv"))


class SteppedClock:
    """Time that moves only when told."""

    def __init__(self, start: datetime) -> None:
        self.at = start

    def now(self) -> datetime:
        return self.at

    def sleep(self, seconds: float) -> None:
        self.at += timedelta(seconds=seconds)

    def real_seconds(self, seconds: float) -> float:
        return 0.0


def test_a_stuck_file_is_not_read_again_every_sync_while_its_size_and_time_hold(
    sshd: Sshd, db: Database, hooks: Hooks, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Round 21 A-F10: each stuck file was read whole from the server every sync to hash it before its rename was
    retried. Its bytes are checked once (then again after REHASH_SECONDS); between, its size and mtime decide."""
    header = "cuenta;nombre;telefono1;saldo;moneda;accion\n"
    inbox = sshd.jail / "inbox"
    clock = SteppedClock(NOW)
    sync = SftpCsvSync(SftpCsvConfig.model_validate(settings(sshd)), CapturingContext(tmp_path / "data", clock=clock))
    sync.start()
    job = cycle(sync, db, hooks)
    read: list[str] = []
    real_sha256 = SftpSession.sha256

    def counting(session: SftpSession, remote: RemoteFile) -> str | None:
        read.append(posixpath.basename(remote.path))
        return real_sha256(session, remote)

    monkeypatch.setattr(SftpSession, "sha256", counting)
    (inbox / "imported").write_text("not a folder")
    deliver(sshd, "retiro.csv", header + "BCO-1;Ana Perez;3001234567;100000;COP;retirar\n")
    assert len(job.run_once().failed) == 1
    assert read == ["retiro.csv"]  # before the rename, at the import
    read.clear()
    for _ in range(4):
        assert len(job.run_once().failed) == 0
    assert read == ["retiro.csv"]  # the first retry only
    clock.sleep(REHASH_SECONDS + 1)
    job.run_once()
    assert read == ["retiro.csv"] * 2
    (inbox / "imported").unlink()
    job.run_once()
    sync.stop()
    assert [p.name for p in (inbox / "imported").iterdir()] == ["retiro.csv"]
