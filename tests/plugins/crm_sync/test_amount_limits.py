"""Creditor amounts the node cannot hold exactly, reports a legacy encoding cannot hold, and deliveries that fail:
the row is quarantined, the report written escaped, the delivery set aside, while the rest of the sync goes on."""

from __future__ import annotations

import errno
import logging
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from cartera.core.clock import SimulatedClock
from cartera.core.hooks import Hooks
from cartera.core.store.database import Database
from cartera.node import Node
from cartera.plugins.crm_sync.csv_dir import plugin as csv_dir_plugin
from cartera.portfolio.export import ActivityExporter
from cartera.portfolio.files.values import parse_amount
from cartera.portfolio.importer import AssignmentImporter
from cartera.portfolio.sync import CreditorSync
from tests.conftest import run_site, write_sites
from tests.plugins.crm_sync.test_csv_dir import NOW, make_sync

pytestmark = pytest.mark.abuse

HEADER = "cuenta;nombre;telefono1;saldo;accion\r\n"


def creditor_sync(tmp_path: Path, hooks: Hooks, **settings: Any) -> CreditorSync:
    (tmp_path / "inbox").mkdir()
    sync = make_sync(tmp_path, **settings)
    sync.start()
    db = Database(f"sqlite:///{tmp_path / 'store.db'}")
    db.migrate()
    importer = AssignmentImporter("t", "CO", db, SimulatedClock(NOW, 1.0), hooks)
    return CreditorSync(sync, importer, ActivityExporter("t", db, sync))


def test_amounts_beyond_the_api_limits_quarantine_their_row(tmp_path: Path, hooks: Hooks) -> None:
    job = creditor_sync(tmp_path, hooks, decimal_comma=False)
    (tmp_path / "inbox" / "a.csv").write_text(
        HEADER
        + f"BCO-1;Ana;3001234567;{'9' * 40};asignar\r\n"
        + "BCO-2;Luis;3101234567;12345678901234567890;asignar\r\n"
        + "BCO-3;Eva;3151234567;99999999999999.99;asignar\r\n"
        + f"BCO-3;Eva;3151234567;{'9' * 40};pago\r\n"
        + "BCO-3;Eva;3151234567;1.5555;pago\r\n",
        encoding="utf-8",
    )
    run = job.run_once()
    (report,) = run.imports
    assert report.new == 1
    assert [(error.line, error.field) for error in report.quarantined] == [
        (2, "balance"),
        (3, "balance"),
        (5, "balance"),
        (6, "balance"),
    ]
    assert "more than 14 digits" in report.quarantined[0].reason
    assert "more than 2 decimals" in report.quarantined[3].reason
    assert not run.failed


def _full_disk(*_: object) -> Path:
    """A rejection report's write on a full disk (a name already taken no longer fails it: another is used)."""
    raise OSError(errno.ENOSPC, "No space left on device")


def test_a_failing_delivery_leaves_the_others_and_the_export_running(
    tmp_path: Path, hooks: Hooks, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    job = creditor_sync(tmp_path, hooks)
    inbox = tmp_path / "inbox"
    (inbox / "a.csv").write_text(HEADER + "BCO-1;Ana;3001234567;mil pesos;asignar\r\n", encoding="utf-8")
    (inbox / "b.csv").write_text(HEADER + "BCO-2;Luis;3101234567;1000;asignar\r\n", encoding="utf-8")
    monkeypatch.setattr(csv_dir_plugin, "write_new", _full_disk)  # a's report cannot be written
    caplog.set_level(logging.INFO)
    run = job.run_once()
    assert [report.new for report in run.imports] == [1]
    (failed,) = run.failed
    assert failed.startswith(f"{inbox / 'a.csv'}: OSError: [Errno 28] No space left on device")
    assert [r.getMessage() for r in caplog.records if r.getMessage() == "sync.delivery_failed"] == [
        "sync.delivery_failed"
    ]
    assert sorted(path.name for path in inbox.glob("*.csv")) == ["a.csv"]  # a waits for the next run


def test_a_report_quoting_characters_the_export_encoding_lacks_is_written_escaped(tmp_path: Path, hooks: Hooks) -> None:
    job = creditor_sync(tmp_path, hooks, export={"encoding": "windows-1252"})
    (tmp_path / "inbox" / "a.csv").write_text(
        "cuenta;nombre;telefono1;saldo;moneda\r\nBCO-1;Ana;3001234567;1000;Ω\U0001f600\r\n", encoding="utf-8"
    )
    run = job.run_once()
    assert not run.failed
    assert [len(report.quarantined) for report in run.imports] == [1]
    report = (tmp_path / "outbox" / "a.rechazos.csv").read_bytes().decode("windows-1252")
    assert "'\\u03a9\\U0001f600' is not an ISO 4217 currency code" in report


@pytest.mark.parametrize("amount", ["1.5555", "1234,5678", "0.004", "000.125", "0,004", "-0.125"])
def test_an_amount_never_changes_silently(tmp_path: Path, hooks: Hooks, amount: str) -> None:
    job = creditor_sync(tmp_path, hooks)
    (tmp_path / "inbox" / "a.csv").write_text(
        f"{HEADER}BCO-1;Ana;3001234567;{amount};asignar\r\nBCO-2;Luis;3101234567;7,999;asignar\r\n", encoding="utf-8"
    )
    (report,) = job.run_once().imports
    assert report.new == 1  # 7,999 with decimal_comma unset: a lone group of 3 digits is thousands, as documented
    assert [(error.line, error.field) for error in report.quarantined] == [(2, "balance")]
    assert "more than 2 decimals" in report.quarantined[0].reason


@pytest.mark.parametrize(
    ("text", "decimal_comma", "expected"),
    [
        ("0.004", False, Decimal("0.004")),  # then quarantined: more than 2 decimals
        ("0,004", False, None),  # a leading 0 group is never thousands: not 4
        ("000.125", True, None),
        ("0.125.000", None, None),
        ("0.004,5", None, None),
        ("7,999", False, Decimal(7999)),  # the declared format decides
        ("7,999", True, Decimal("7.999")),
    ],
)
def test_a_first_group_starting_with_0_is_never_thousands(
    text: str, decimal_comma: bool | None, expected: Decimal | None
) -> None:
    assert parse_amount(text, decimal_comma) == expected


def test_check_shows_a_creditor_sync_whose_last_run_failed_a_delivery(
    tmp_path: Path, open_node: Callable[..., Node]
) -> None:
    config = write_sites(tmp_path)
    node = open_node(config)
    (tmp_path / "inbox" / "a.csv").write_text(HEADER + "BCO-1;Ana;3001234567;mil pesos;asignar\r\n", encoding="utf-8")
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(csv_dir_plugin, "write_new", _full_disk)  # a's report cannot be written
        assert len(node.creditor_sync().run_once().failed) == 1
    (line,) = [line for line in node.check() if line.what == "creditor sync"]
    assert not line.result.ok
    assert line.result.detail.startswith("1 deliveries failed in the last run, left for the next: ")
    checked = run_site(config, "check")  # another process: the operator's check
    assert checked.returncode == 1
    assert "FAIL  creditor sync: 1 deliveries failed" in checked.stdout
    assert not node.creditor_sync().run_once().failed
    (line,) = [line for line in node.check() if line.what == "creditor sync"]
    assert line.result.ok
