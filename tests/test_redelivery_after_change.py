"""Red-team round 19 G1: a file delivered again after a later delivery changed its portfolio is applied.

A creditor withdrew BCO-1 (``retiro.csv``), assigned it again (``asignacion_marzo.csv``), then withdrew it again
by re-sending ``retiro.csv``: the node skipped the last file as "already imported" (same sha256) and kept calling
an account the creditor had withdrawn. A delivery is an instruction: the same bytes right after themselves are a
duplicate (skipped), but once a later delivery touched the file's portfolio they are applied again (rows are
idempotent; a payment without a reference nor a day, which cannot be recognised, is quarantined instead of applied
twice). Which one happened is logged (``assignments.duplicate_skipped`` / ``assignments.redelivered``).
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from decimal import Decimal
from pathlib import Path

import pytest
from sqlalchemy import select

from cartera.core.models import AssignmentBatch, AssignmentRow
from cartera.core.store.schema import Account, ImportBatch
from cartera.node import Node
from cartera.plugin import CrmSync
from cartera.portfolio.importer import ImportReport
from tests.conftest import write_sites

pytestmark = pytest.mark.abuse

HEADER = "cuenta;nombre;telefono1;telefono2;saldo;moneda;accion;fecha_pago;referencia_pago\n"
ASSIGN_JAN = HEADER + "BCO-1;Ana Perez;3001234567;;100000;COP;asignar;;\n"
WITHDRAW = HEADER + "BCO-1;Ana Perez;3001234567;;100000;COP;retirar;;\n"
ASSIGN_MAR = HEADER + "BCO-1;Ana Perez;3001234567;;90000;COP;asignar;;\n"


def accounts(node: Node) -> dict[str, tuple[str, str]]:
    with node.db.session() as session:
        return {a.ref: (a.status, str(a.balance)) for a in session.scalars(select(Account).order_by(Account.ref))}


def deliver(node: Node, inbox: Path, name: str, text: str) -> ImportReport:
    (inbox / name).write_text(text, encoding="utf-8")
    result = node.creditor_sync().run_once()
    assert len(result.imports) == 1, result
    return result.imports[0]


def events(caplog: pytest.LogCaptureFixture, name: str) -> list[dict[str, object]]:
    return [getattr(r, "fields", {}) for r in caplog.records if r.getMessage() == name]


def test_a_withdrawal_resent_after_a_new_assignment_withdraws_again(
    tmp_path: Path, open_node: Callable[..., Node], caplog: pytest.LogCaptureFixture
) -> None:
    withdraw_assign_withdraw(open_node(write_sites(tmp_path)), tmp_path / "inbox", caplog)


@pytest.mark.postgres
def test_a_withdrawal_resent_withdraws_again_on_postgresql(
    tmp_path: Path, open_node: Callable[..., Node], caplog: pytest.LogCaptureFixture, postgres_url: str
) -> None:
    withdraw_assign_withdraw(open_node(write_sites(tmp_path, database=postgres_url)), tmp_path / "inbox", caplog)


def withdraw_assign_withdraw(node: Node, inbox: Path, caplog: pytest.LogCaptureFixture) -> None:
    """January's assignment, a withdrawal, it again (skipped), March's assignment, the withdrawal again (applied)."""
    caplog.set_level(logging.INFO, logger="cartera.assignments")
    assert not deliver(node, inbox, "asignacion_enero.csv", ASSIGN_JAN).already_imported
    assert not deliver(node, inbox, "retiro.csv", WITHDRAW).already_imported
    assert accounts(node) == {"BCO-1": ("withdrawn", "100000.00")}
    # the same bytes right after themselves: a duplicate, skipped as before
    again = deliver(node, inbox, "retiro.csv", WITHDRAW)
    assert again.already_imported
    assert [e["source"] for e in events(caplog, "assignments.duplicate_skipped")] == [str(inbox / "retiro.csv")]
    assert not deliver(node, inbox, "asignacion_marzo.csv", ASSIGN_MAR).already_imported
    assert accounts(node) == {"BCO-1": ("active", "90000.00")}
    resent = deliver(node, inbox, "retiro.csv", WITHDRAW)
    assert not resent.already_imported
    assert resent.withdrawn == 1
    assert accounts(node) == {"BCO-1": ("withdrawn", "90000.00")}
    [logged] = events(caplog, "assignments.redelivered")
    assert logged["source"] == str(inbox / "retiro.csv")
    assert logged["after"] == str(inbox / "asignacion_marzo.csv")
    # and right after itself again: skipped
    assert deliver(node, inbox, "retiro.csv", WITHDRAW).already_imported
    assert len(events(caplog, "assignments.duplicate_skipped")) == 2
    with node.db.session() as session:  # one batch row per sha256, the newest application's
        assert session.scalar(select(ImportBatch.source).order_by(ImportBatch.id.desc()).limit(1)) == str(
            inbox / "retiro.csv"
        )


def test_an_older_assignment_resent_restates_its_balance(tmp_path: Path, open_node: Callable[..., Node]) -> None:
    node = open_node(write_sites(tmp_path))
    inbox = tmp_path / "inbox"
    deliver(node, inbox, "dia1.csv", ASSIGN_JAN)
    deliver(node, inbox, "dia2.csv", ASSIGN_MAR)
    report = deliver(node, inbox, "dia3.csv", ASSIGN_JAN)
    assert not report.already_imported
    assert report.updated == 1
    assert accounts(node) == {"BCO-1": ("active", "100000.00")}


def test_a_payment_that_cannot_be_recognised_is_not_applied_twice(
    tmp_path: Path, open_node: Callable[..., Node]
) -> None:
    node = open_node(write_sites(tmp_path))
    inbox = tmp_path / "inbox"
    payments = (
        HEADER
        + "BCO-1;Ana Perez;3001234567;;1000;COP;pago;;\n"  # neither day nor reference
        + "BCO-1;Ana Perez;3001234567;;2000;COP;pago;;REF-7\n"
        + "BCO-1;Ana Perez;3001234567;;3000;COP;pago;2026-11-20;\n"
    )
    deliver(node, inbox, "asignacion.csv", ASSIGN_JAN)
    first = deliver(node, inbox, "pagos.csv", payments)
    assert first.payments == 3
    assert accounts(node) == {"BCO-1": ("active", "94000.00")}
    deliver(node, inbox, "otro.csv", HEADER + "BCO-2;Luis Gomez;3001234568;;5000;COP;asignar;;\n")
    resent = deliver(node, inbox, "pagos.csv", payments)
    assert not resent.already_imported
    assert (resent.payments, resent.unchanged) == (0, 2)
    [quarantined] = resent.quarantined
    assert quarantined.line == 2
    assert quarantined.field == "payment_ref"
    assert "delivered again" in quarantined.reason
    assert accounts(node)["BCO-1"] == ("active", "94000.00")


def test_a_later_delivery_of_another_portfolio_leaves_the_resend_a_duplicate(
    tmp_path: Path, open_node: Callable[..., Node], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="cartera.assignments")
    node = open_node(write_sites(tmp_path))
    inbox = tmp_path / "inbox"
    deliver(node, inbox, "asignacion.csv", ASSIGN_JAN)
    other = AssignmentRow(1, "OTRO", "CARTERA", "OT-1", "Luis", ("3001234568",), Decimal("5000"), "COP")
    assert node.importer.import_batch(AssignmentBatch("api", "0" * 64, [other]), "test").new == 1
    assert deliver(node, inbox, "asignacion.csv", ASSIGN_JAN).already_imported
    assert events(caplog, "assignments.redelivered") == []


def test_a_file_the_archive_refused_is_not_fetched_again(tmp_path: Path, open_node: Callable[..., Node]) -> None:
    """A file left in the inbox because its archive folder is a symlink would otherwise be applied again after
    every later delivery (and that one after it, each sync): the csv plugin remembers it by its identity."""
    node = open_node(write_sites(tmp_path))
    inbox = tmp_path / "inbox"
    (tmp_path / "elsewhere").mkdir()
    (inbox / "imported").symlink_to(tmp_path / "elsewhere", target_is_directory=True)
    deliver(node, inbox, "enero.csv", ASSIGN_JAN)
    assert (inbox / "enero.csv").exists()  # not archived
    deliver(node, inbox, "marzo.csv", ASSIGN_MAR)
    assert accounts(node) == {"BCO-1": ("active", "90000.00")}
    for _ in range(2):
        assert node.creditor_sync().run_once().imports == []
    assert accounts(node) == {"BCO-1": ("active", "90000.00")}
    assert sorted(p.name for p in inbox.glob("*.csv")) == ["enero.csv", "marzo.csv"]
    assert list((tmp_path / "elsewhere").iterdir()) == []


@contextmanager
def folder_elsewhere(tmp_path: Path, key: str) -> Iterator[tuple[Path, Path]]:
    """Site ``t`` whose csv ``key`` folder (archive, rejected) is on another filesystem (/dev/shm): a rename into
    it fails (EXDEV)."""
    if os.stat("/dev/shm").st_dev == tmp_path.stat().st_dev:
        pytest.skip("/dev/shm is on the same filesystem as the test's directory")
    folder = Path(tempfile.mkdtemp(dir="/dev/shm", prefix=f"cartera-{key}-"))
    try:
        sites = write_sites(tmp_path)
        sites.write_text(sites.read_text().replace('inbox = "inbox"', f'inbox = "inbox"\n{key} = "{folder}"'))
        yield sites, folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def test_a_file_the_archive_cannot_take_is_not_fetched_again(tmp_path: Path, open_node: Callable[..., Node]) -> None:
    """Round 20 I-F1: an archive folder on another filesystem (the rename fails with EXDEV) left each imported file
    in the inbox unremembered: every sync applied it again, an older file undoing the newer delivery. Any archive
    failure is now remembered as a symlinked archive is; ``check`` names the archive folder."""
    with folder_elsewhere(tmp_path, "archive") as (sites, archive):
        node = open_node(sites)
        inbox = tmp_path / "inbox"
        deliver(node, inbox, "b_enero.csv", ASSIGN_JAN)
        assert (inbox / "b_enero.csv").exists()  # not archived
        deliver(node, inbox, "a_marzo.csv", ASSIGN_MAR)
        assert accounts(node) == {"BCO-1": ("active", "90000.00")}
        for _ in range(2):
            assert node.creditor_sync().run_once().imports == []
        assert accounts(node) == {"BCO-1": ("active", "90000.00")}
        with node.db.session() as session:
            assert len(session.scalars(select(ImportBatch)).all()) == 2
        result = node.adapter("crm_sync", CrmSync).check()
        assert not result.ok
        assert str(archive) in result.detail


def test_a_rejected_file_the_rejected_folder_cannot_take_is_not_rejected_again(
    tmp_path: Path, open_node: Callable[..., Node]
) -> None:
    """Round 20 I-F1, the rejected folder: refused by it (another filesystem), a rejected file stayed in the inbox
    and was read and rejected again every sync, a new rejection report each time; it is remembered instead."""
    with folder_elsewhere(tmp_path, "rejected") as (sites, rejected):
        node = open_node(sites)
        (tmp_path / "inbox" / "malo.csv").write_text("no;es;una;cabecera\n1;2;3;4\n", encoding="utf-8")
        runs = [node.creditor_sync().run_once() for _ in range(3)]
        assert [len(run.rejected) for run in runs] == [1, 0, 0]
        assert (tmp_path / "inbox" / "malo.csv").exists()
        assert list(rejected.iterdir()) == []
