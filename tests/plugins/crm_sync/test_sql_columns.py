"""The sql plugin maps the view's columns as the CSV reader maps a header: every field, one rule."""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from pathlib import Path

import pytest
import sqlalchemy as sa
from pydantic import ValidationError

from cartera.plugin import AmbiguousColumn, AssignmentReader, CsvFormatConfig, FileRejected, find_column, read_local
from cartera.plugins.crm_sync.sql.config import SqlSyncConfig
from tests.plugins.crm_sync.test_sql import creditor_db, make_sync, split, with_password  # noqa: F401


def csv_reader(columns: dict[str, str]) -> AssignmentReader:
    """The CSV importer's reader of a creditor's files with these column names."""
    fmt = {"creditor": "BCO", "portfolio": "TARJETAS", "delimiter": ";", "columns": columns}
    return AssignmentReader(CsvFormatConfig.model_validate(fmt))


def view_over_table(engine: sa.Engine, view: str, columns: str, rows: str) -> None:
    """The creditor's ``view`` over a table of ``columns`` holding ``rows`` (SQL text of each)."""
    with engine.begin() as connection:
        connection.exec_driver_sql(f"CREATE TABLE {view}_t ({columns})")
        connection.exec_driver_sql(f"INSERT INTO {view}_t VALUES {rows}")
        connection.exec_driver_sql(f"CREATE VIEW {view} AS SELECT * FROM {view}_t")


@pytest.mark.postgres
def test_due_date_days_past_due_and_risk_score_are_read_from_the_view_as_from_csv(
    tmp_path: Path,
    postgres_url: str,
    creditor_db: sa.Engine,  # noqa: F811
) -> None:
    view_over_table(
        creditor_db,
        "crm.mora",
        "cuenta text, nombre text, telefono1 text, saldo numeric(14, 2), vence date, mora int, "
        "puntaje_riesgo numeric, version int",
        "('A1', 'Ana', '3001234567', 1500, '2025-01-01', NULL, 720, 1), "
        "('A2', 'Luis', '3001234568', 900, NULL, 45, 310.5, 2)",
    )
    # the creditor's own names for two of them, the default name (puntaje_riesgo) for the third
    columns = {"due_date": "VENCE", "days_past_due": "mora"}
    sync = make_sync(tmp_path, postgres_url, view="crm.mora", columns=columns)
    sync.start()
    try:
        (batch,) = sync.fetch()
        rows, errors = split(batch)
    finally:
        sync.stop()
    assert errors == []
    via_sql = [(r.account_ref, r.due_on, r.days_past_due, r.risk_score) for r in rows]
    assert via_sql == [("A1", date(2025, 1, 1), None, 720.0), ("A2", None, 45, 310.5)]
    csv_file = tmp_path / "mora.csv"
    csv_file.write_text(
        "cuenta;nombre;telefono1;saldo;vence;mora;puntaje_riesgo;version\n"
        "A1;Ana;3001234567;1500;2025-01-01;;720;1\nA2;Luis;3001234568;900;;45;310.5;2\n"
    )
    csv_rows = split(read_local(csv_reader(columns), csv_file))[0]
    via_csv = [(r.account_ref, r.due_on, r.days_past_due, r.risk_score) for r in csv_rows]
    assert via_csv == via_sql


@pytest.mark.abuse
@pytest.mark.postgres
def test_view_columns_equal_ignoring_case_take_the_exact_spelling_or_are_refused(
    tmp_path: Path,
    postgres_url: str,
    creditor_db: sa.Engine,  # noqa: F811
) -> None:
    view_over_table(
        creditor_db,
        "crm.nv",
        'cuenta text, nombre text, telefono1 text, "Saldo" numeric, saldo numeric, "Version" int, version int',
        "('C1', 'n', '3001234567', 111, 222, 1, 20), ('C2', 'n', '3001234568', 333, 444, 2, 10)",
    )
    sync = make_sync(tmp_path, postgres_url, view="crm.nv", watermark="Version", columns={"balance": "Saldo"})
    sync.start()
    try:
        (batch,) = sync.fetch()
        assert [(r.account_ref, r.balance) for r in split(batch)[0]] == [("C1", Decimal(111)), ("C2", Decimal(333))]
    finally:
        sync.stop()
    # neither spelled exactly: refused by check and sync, naming both columns
    sync = make_sync(tmp_path / "b", postgres_url, view="crm.nv", watermark="VERSION", columns={"balance": "Saldo"})
    sync.start()
    try:
        result = sync.check()
        assert not result.ok
        assert "'Version', 'version'" in result.detail
        with pytest.raises(FileRejected, match="'Version', 'version'"):
            list(sync.fetch())
    finally:
        sync.stop()


@pytest.mark.abuse
def test_csv_header_columns_equal_ignoring_case_follow_the_same_rule(tmp_path: Path) -> None:
    header = "cuenta;nombre;telefono1;Saldo;saldo\n"
    path = tmp_path / "a.csv"
    path.write_text(header + "C1;n;3001234567;111;222\n")
    assert [r.balance for r in split(read_local(csv_reader({"balance": "saldo"}), path))[0]] == [Decimal(222)]
    with pytest.raises(FileRejected, match="'Saldo', 'saldo'"):
        split(read_local(csv_reader({"balance": "SALDO"}), path))
    assert find_column("Saldo", ["saldo"]) == 0
    with pytest.raises(AmbiguousColumn):
        find_column("SALDO", ["Saldo", " saldo"])


@pytest.mark.abuse
@pytest.mark.parametrize(
    ("setting", "fields"),
    [
        ({"activity_columns": {"seq": "s", "kind": "tipo", "at": "t", "account_ref": "tipo"}}, "kind and account_ref"),
        ({"rejection_columns": {"field": "motivo"}}, "field and reason"),
    ],
)
def test_two_fields_mapped_to_one_column_are_refused(setting: dict[str, object], fields: str) -> None:
    settings = {
        "url": with_password("postgresql+psycopg://postgres@127.0.0.1/x"),
        "view": "crm.asignaciones",
        "creditor": "BCO",
        "portfolio": "TARJETAS",
        "activities_table": "crm.actividades",
    }
    with pytest.raises(ValidationError, match=fields):
        SqlSyncConfig.model_validate(settings | setting)
