"""The day a debt fell due, from the creditor's due date or days past due column: read, stored, kept."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import select

from cartera.core.clock import SimulatedClock
from cartera.core.hooks import Hooks
from cartera.core.models import AssignmentBatch, AssignmentRow, RowError
from cartera.core.store.database import Database
from cartera.core.store.schema import Account
from cartera.portfolio.files.config import CsvFormatConfig
from cartera.portfolio.files.reader import AssignmentReader, read_local
from cartera.portfolio.importer import AssignmentImporter

NOW = datetime(2026, 3, 2, 13, 30, tzinfo=UTC)


def _read(tmp_path: Path, text: str, **settings: Any) -> list[AssignmentRow | RowError]:
    path = tmp_path / "asignacion.csv"
    path.write_text(text, encoding="utf-8")
    reader = AssignmentReader(CsvFormatConfig.model_validate({"creditor": "BCO", "portfolio": "T"} | settings))
    return list(read_local(reader, path).items)


def test_the_due_date_or_the_days_past_due_are_read(tmp_path: Path) -> None:
    items = _read(
        tmp_path,
        "cuenta;nombre;telefono1;saldo;fecha_vencimiento;dias_mora\n"
        "A1;Ana;3001234567;100;15/01/2026;99\n"
        "A2;Beto;3001234568;100;;45\n"
        "A3;Caro;3001234569;100;;\n"
        "A4;Dani;3001234570;100;ayer;\n"
        "A5;Eva;3001234571;100;;-3\n",
    )
    first, second, third, bad_date, bad_days = items
    assert isinstance(first, AssignmentRow)
    assert (first.due_on, first.days_past_due) == (date(2026, 1, 15), None)
    assert isinstance(second, AssignmentRow)
    assert (second.due_on, second.days_past_due) == (None, 45)
    assert isinstance(third, AssignmentRow)
    assert (third.due_on, third.days_past_due) == (None, None)
    assert bad_date == RowError(
        5, "due_date", "column 'fecha_vencimiento': 'ayer' is not %Y-%m-%d or %d/%m/%Y or %d-%m-%Y"
    )
    assert bad_days == RowError(6, "days_past_due", "column 'dias_mora': '-3' is not a number of days")


def test_the_creditors_own_headers_are_mapped(tmp_path: Path) -> None:
    (item,) = _read(
        tmp_path,
        "cuenta;nombre;telefono1;saldo; Fecha_Mora \nA1;Ana;3001234567;100;2026-02-01\n",
        columns={"due_date": "fecha_mora"},
    )
    assert isinstance(item, AssignmentRow)
    assert item.due_on == date(2026, 2, 1)


@pytest.fixture
def db(tmp_path: Path) -> Iterator[Database]:
    store = Database(f"sqlite:///{tmp_path / 'store.db'}")
    store.migrate()
    yield store
    store.dispose()


def _row(line: int, ref: str, **extra: Any) -> AssignmentRow:
    return AssignmentRow(line, "BCO", "T", ref, f"Deudor {ref}", ("3001234567",), Decimal("1000"), "COP", **extra)


def _import(importer: AssignmentImporter, name: str, *rows: AssignmentRow) -> None:
    importer.import_batch(AssignmentBatch(name, hashlib.sha256(repr(rows).encode()).hexdigest(), rows), "test")


def _due(db: Database) -> dict[str, date | None]:
    with db.session() as session:
        return dict(session.execute(select(Account.ref, Account.due_on)).all())


def test_the_due_day_is_stored_days_past_due_count_back_from_the_import_and_a_file_without_it_keeps_it(
    db: Database, hooks: Hooks
) -> None:
    importer = AssignmentImporter("t", "CO", db, SimulatedClock(NOW, 1.0), hooks)
    _import(
        importer, "one.csv", _row(1, "A1", due_on=date(2026, 1, 15)), _row(2, "A2", days_past_due=30), _row(3, "A3")
    )
    assert _due(db) == {"A1": date(2026, 1, 15), "A2": date(2026, 1, 31), "A3": None}
    _import(importer, "two.csv", _row(1, "A1"), _row(2, "A2", due_on=date(2025, 12, 1)), _row(3, "A3", days_past_due=0))
    assert _due(db) == {"A1": date(2026, 1, 15), "A2": date(2025, 12, 1), "A3": date(2026, 3, 2)}


def test_days_past_due_count_back_from_the_sites_day(db: Database, hooks: Hooks) -> None:
    evening = datetime(2026, 3, 1, 20, 30, tzinfo=ZoneInfo("America/Bogota"))  # already 2 March in UTC
    importer = AssignmentImporter("t", "CO", db, SimulatedClock(evening, 1.0), hooks, zone=ZoneInfo("America/Bogota"))
    _import(importer, "one.csv", _row(1, "A1", days_past_due=30))
    assert _due(db) == {"A1": date(2026, 1, 30)}
