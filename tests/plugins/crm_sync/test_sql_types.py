"""The ``sql`` crm_sync adapter's check reads what the sync reads, and refuses an activities table whose columns
would change what is exported (round 20 F2, F4, F6)."""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from pathlib import Path

import pytest
import sqlalchemy as sa

from cartera.core.models import Activity, ActivityKind
from cartera.plugins.crm_sync.sql.client import CreditorDatabaseError
from cartera.plugins.crm_sync.sql.plugin import SqlCrmSync
from tests.plugins.crm_sync import test_sql
from tests.plugins.crm_sync.test_sql import NOW, insert_rows, make_sync, other_view

pytestmark = [pytest.mark.postgres, pytest.mark.abuse]

creditor_db = test_sql.creditor_db  # the fixture: the creditor's schema in a fresh database


def retyped(engine: sa.Engine, column: str, kind: str) -> None:
    with engine.begin() as connection:
        connection.execute(sa.text(f"ALTER TABLE crm.actividades ALTER COLUMN {column} TYPE {kind}"))


def refused(sync: SqlCrmSync, column: str) -> str:
    """check's detail, which refuses the activities table's ``column``; an export is refused likewise."""
    result = sync.check()
    assert not result.ok
    assert "table crm.actividades" in result.detail
    assert f"{column!r}" in result.detail
    with pytest.raises(CreditorDatabaseError, match=f"{column!r}"):
        sync.export([promise(1)])
    return result.detail


def promise(seq: int) -> Activity:
    return Activity(
        seq, ActivityKind.PROMISE_TO_PAY, NOW, "BCO", "TARJETAS", f"A-{seq}", "+573001234567", "promise_to_pay",
        Decimal("350000.50"), date(2026, 3, 16), "agente-07",
    )  # fmt: skip


@pytest.mark.parametrize("value", ["infinity", "-infinity", "10000-01-01"])
def test_a_date_the_driver_cannot_load_passes_check_as_the_sync_reads_it(
    tmp_path: Path, postgres_url: str, creditor_db: sa.Engine, value: str
) -> None:
    """A first row's payment date 'infinity' (or past year 9999) failed check (and /healthz) for ever, while the
    sync imported the row (F2); the watermark and the activities table too."""
    row = {"nombre": "Ana", "telefono1": "3001234567", "saldo": 10, "accion": "pago", "referencia_pago": "P"}
    other_view(
        creditor_db,
        "accion text, fecha_pago date, referencia_pago text, updated_at timestamptz",
        [row | {"cuenta": "A-1", "fecha_pago": None, "updated_at": NOW}],
    )
    with creditor_db.begin() as connection:
        connection.execute(sa.text("UPDATE crm.otra SET fecha_pago = CAST(:v AS date), updated_at = CAST(:v AS "
                                   "timestamptz)"), {"v": value})  # fmt: skip
        connection.execute(
            sa.text("INSERT INTO crm.actividades (secuencia, tipo, fecha_hora, fecha_compromiso) VALUES "
                    "(-1, 'x', CAST(:v AS timestamptz), CAST(:v AS date))"), {"v": value}
        )  # fmt: skip
    sync = make_sync(tmp_path, postgres_url, view="crm.otra", watermark="updated_at")
    result = sync.check()
    assert result.ok, result.detail


def test_a_probe_that_fails_names_the_table_and_the_column(
    tmp_path: Path, postgres_url: str, creditor_db: sa.Engine
) -> None:
    """A column the database cannot compute fails check naming the view and the column."""
    insert_rows(creditor_db, [("A-1", "Ana", "3001234567", None, "10", "COP", None, 1)])
    with creditor_db.begin() as connection:
        connection.execute(sa.text("DROP VIEW crm.asignaciones"))
        connection.execute(
            sa.text("CREATE VIEW crm.asignaciones AS SELECT cuenta, nombre, telefono1, telefono2, "
                    "CAST(1 / (version - 1) AS numeric) AS saldo, moneda, accion, fecha_pago, referencia_pago, "
                    "version, updated_at FROM crm.cartera")
        )  # fmt: skip
    result = make_sync(tmp_path, postgres_url).check()
    assert not result.ok
    assert "crm.asignaciones" in result.detail, result.detail
    assert "'saldo'" in result.detail, result.detail
    assert "DivisionByZero" in result.detail


@pytest.mark.parametrize(
    ("kind", "shown"),
    [
        ("integer", "whole numbers"),
        ("bigint", "whole numbers"),
        ("numeric(14, 0)", "whole numbers"),
        ("numeric(14, 1)", "1 decimal"),
        ("real", "floating point"),
        ("double precision", "floating point"),
    ],
)
def test_an_amount_column_that_would_round_or_cannot_hold_amounts_fails_check_and_export(
    tmp_path: Path, postgres_url: str, creditor_db: sa.Engine, kind: str, shown: str
) -> None:
    """A promise of 350000.50 was stored 350001 in an integer column, silently (F4)."""
    retyped(creditor_db, "monto", kind)
    assert shown in refused(make_sync(tmp_path, postgres_url), "monto")
    with creditor_db.connect() as connection:
        assert connection.scalar(sa.text("SELECT count(*) FROM crm.actividades")) == 0


@pytest.mark.parametrize("kind", ["numeric(18, 2)", "numeric", "numeric(20, 4)", "text", "varchar(40)"])
def test_an_amount_column_holding_every_amount_exactly_passes(
    tmp_path: Path, postgres_url: str, creditor_db: sa.Engine, kind: str
) -> None:
    retyped(creditor_db, "monto", kind)
    sync = make_sync(tmp_path, postgres_url)
    result = sync.check()
    assert result.ok, result.detail
    sync.export([promise(1)])
    with creditor_db.connect() as connection:
        assert Decimal(connection.scalar(sa.text("SELECT monto FROM crm.actividades"))) == Decimal("350000.50")


@pytest.mark.parametrize("kind", ["text", "numeric(20, 2)", "real"])
def test_a_seq_column_not_of_integers_fails_check_naming_it(
    tmp_path: Path, postgres_url: str, creditor_db: sa.Engine, kind: str
) -> None:
    """A text seq column passed check, then every export failed (text >= integer) (F6)."""
    retyped(creditor_db, "secuencia", kind)
    assert "must be an integer column" in refused(make_sync(tmp_path, postgres_url), "secuencia")


@pytest.mark.parametrize("kind", ["integer", "smallint", "numeric(20, 0)"])
def test_an_integer_seq_column_passes(tmp_path: Path, postgres_url: str, creditor_db: sa.Engine, kind: str) -> None:
    retyped(creditor_db, "secuencia", kind)
    result = make_sync(tmp_path, postgres_url).check()
    assert result.ok, result.detail
