"""The ``sql`` crm_sync adapter's check reads what the sync reads, and refuses an activities table whose columns
would change what is exported (round 20 F2, F4, F6; round 21 A-F1: every mapped column; A-F2: domains)."""

from __future__ import annotations

import dataclasses
from datetime import date, datetime
from decimal import Decimal
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import CITEXT

from cartera.core.models import Activity, ActivityKind
from cartera.plugin import DEFAULT_EXPORT_COLUMNS, EXPORT_FIELDS
from cartera.plugins.crm_sync.sql.client import EXPECTED_COLUMNS, CreditorDatabaseError
from cartera.plugins.crm_sync.sql.plugin import SqlCrmSync
from tests.plugins.crm_sync import test_sql
from tests.plugins.crm_sync.test_sql import NOW, insert_rows, make_sync, other_view

pytestmark = [pytest.mark.postgres, pytest.mark.abuse]

creditor_db = test_sql.creditor_db  # the fixture: the creditor's schema in a fresh database


def retyped(engine: sa.Engine, column: str, kind: str, *domains: str) -> None:
    """``column`` of the (empty) activities table made of type ``kind``, after creating the ``domains`` (``NAME AS
    TYPE``)."""
    with engine.begin() as connection:
        for domain in domains:
            connection.execute(sa.text(f"CREATE DOMAIN {domain}"))
        connection.execute(
            sa.text(f"ALTER TABLE crm.actividades ALTER COLUMN {column} TYPE {kind} USING CAST(NULL AS {kind})")
        )


def exported(tmp_path: Path, postgres_url: str, creditor_db: sa.Engine, column: str, kind: str) -> None:
    """``column`` retyped ``kind`` (:func:`retyped`): check passes, and one promise is exported."""
    retyped(creditor_db, column, kind)
    sync = make_sync(tmp_path, postgres_url)
    result = sync.check()
    assert result.ok, result.detail
    sync.export([promise(1)])


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
    exported(tmp_path, postgres_url, creditor_db, "monto", kind)
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


def test_every_export_field_has_its_column_judged() -> None:
    assert set(EXPECTED_COLUMNS) == set(EXPORT_FIELDS)


@pytest.mark.parametrize(
    ("column", "kind", "shown"),
    [
        ("fecha_hora", "date", "keeps the day only"),
        ("fecha_hora", "time with time zone", "keeps the time of day only"),
        ("fecha_hora", "varchar(20)", "holds 20 characters"),
        ("fecha_hora", "bigint", "not a timestamp or text column"),
        ("telefono", "bigint", "not a text column"),
        ("telefono", "numeric(20, 0)", "not a text column"),
        ("telefono", "varchar(12)", "holds 12 characters"),
        ("agente", "varchar(12)", "holds 12 characters"),
        ("cuenta", "char(64)", "pads each value with spaces"),
        ("cuenta", "integer", "not a text column"),
        ("tipo", "boolean", "not a text column"),
        ("acreedor", "varchar(10)", "holds 10 characters"),
        ("resultado", "varchar(100)", "holds 100 characters"),
        ("fecha_compromiso", "time", "not a date, timestamp or text column"),
        ("fecha_compromiso", "varchar(8)", "holds 8 characters"),
    ],
)
def test_a_column_that_would_change_what_it_receives_fails_check_and_export(  # noqa: PLR0917 (fixtures and parameters)
    tmp_path: Path, postgres_url: str, creditor_db: sa.Engine, column: str, kind: str, shown: str
) -> None:
    """A call's instant went into a date column as its day, a phone into a bigint without its +, check ok (A-F1)."""
    retyped(creditor_db, column, kind)
    assert shown in refused(make_sync(tmp_path, postgres_url), column)
    with creditor_db.connect() as connection:
        assert connection.scalar(sa.text("SELECT count(*) FROM crm.actividades")) == 0


def test_the_reported_table_is_refused_naming_each_column(
    tmp_path: Path, postgres_url: str, creditor_db: sa.Engine
) -> None:
    """Round 21 A-F1's table: check said ok, the export stored 2026-03-02 and 573001234567."""
    retyped(creditor_db, "fecha_hora", "date")
    retyped(creditor_db, "telefono", "bigint")
    detail = refused(make_sync(tmp_path, postgres_url), "fecha_hora")
    assert "the at column 'fecha_hora' is date, which keeps the day only" in detail, detail
    assert "the phone column 'telefono' is bigint, which is not a text column" in detail, detail


@pytest.mark.parametrize(
    ("column", "kind", "stored"),
    [
        ("fecha_hora", "timestamp with time zone", NOW),
        ("fecha_hora", "timestamp(6) with time zone", NOW),
        ("fecha_hora", "text", None),
        ("fecha_hora", "varchar(32)", None),
        ("telefono", "varchar(20)", "+573001234567"),
        ("telefono", "text", "+573001234567"),
        ("agente", "varchar(64)", "agente-07"),
        ("agente", "varchar", "agente-07"),
        ("tipo", "varchar(14)", "promise_to_pay"),
        ("resultado", "varchar(120)", "promise_to_pay"),
        ("fecha_compromiso", "timestamp", datetime(2026, 3, 16)),
        ("fecha_compromiso", "text", "2026-03-16"),
    ],
)
def test_a_column_keeping_what_it_receives_passes(  # noqa: PLR0917 (fixtures and parameters)
    tmp_path: Path, postgres_url: str, creditor_db: sa.Engine, column: str, kind: str, stored: object
) -> None:
    exported(tmp_path, postgres_url, creditor_db, column, kind)
    with creditor_db.connect() as connection:
        value = connection.scalar(sa.text(f"SELECT {column} FROM crm.actividades"))
    if stored is None:  # the instant as text, in the session's zone
        with creditor_db.connect() as connection:
            assert connection.scalar(sa.text(f"SELECT CAST({column} AS timestamptz) FROM crm.actividades")) == NOW
    else:
        assert value == stored


@pytest.mark.parametrize(("kind", "shown"), [("real", "floating point"), ("date", "not a number or text column")])
def test_an_attempt_column_that_would_change_call_ids_fails_check(
    tmp_path: Path, postgres_url: str, creditor_db: sa.Engine, kind: str, shown: str
) -> None:
    with creditor_db.begin() as connection:
        connection.execute(sa.text(f"ALTER TABLE crm.actividades ADD COLUMN llamada {kind}"))
    columns = dict(DEFAULT_EXPORT_COLUMNS, attempt="llamada")
    assert shown in refused(make_sync(tmp_path, postgres_url, activity_columns=columns), "llamada")


@pytest.mark.parametrize("kind", ["bigint", "numeric", "text"])
def test_an_attempt_column_of_whole_numbers_or_text_passes(
    tmp_path: Path, postgres_url: str, creditor_db: sa.Engine, kind: str
) -> None:
    with creditor_db.begin() as connection:
        connection.execute(sa.text(f"ALTER TABLE crm.actividades ADD COLUMN llamada {kind}"))
    columns = dict(DEFAULT_EXPORT_COLUMNS, attempt="llamada")
    sync = make_sync(tmp_path, postgres_url, activity_columns=columns)
    result = sync.check()
    assert result.ok, result.detail
    sync.export([dataclasses.replace(promise(1), attempt=4321)])
    with creditor_db.connect() as connection:
        assert str(connection.scalar(sa.text("SELECT llamada FROM crm.actividades"))) == "4321"


def test_seq_and_amount_columns_of_domains_pass_as_their_base_types(
    tmp_path: Path, postgres_url: str, creditor_db: sa.Engine
) -> None:
    """A domain over bigint (seq) and over numeric(14, 2) (amount) were refused as "domain" (A-F2); so are domains
    over a domain, and over the other fields' types."""
    retyped(creditor_db, "secuencia", "crm.seqt", "crm.seqt AS bigint")
    retyped(creditor_db, "monto", "crm.dinero", "crm.dinero_base AS numeric(14, 2)", "crm.dinero AS crm.dinero_base")
    retyped(creditor_db, "fecha_hora", "crm.instante", "crm.instante AS timestamp(3) with time zone")
    retyped(creditor_db, "telefono", "crm.telefono", "crm.telefono AS varchar(20)")
    sync = make_sync(tmp_path, postgres_url)
    result = sync.check()
    assert result.ok, result.detail
    sync.export([promise(1)])
    with creditor_db.connect() as connection:
        stored = connection.execute(sa.text("SELECT secuencia, monto, telefono FROM crm.actividades")).one()
    assert tuple(stored) == (1, Decimal("350000.50"), "+573001234567")


@pytest.mark.parametrize(
    ("column", "domains", "shown"),
    [
        ("monto", ("crm.d AS numeric(14, 1)",), "is domain crm.d over numeric(14,1), which keeps 1 decimal only"),
        ("monto", ("crm.b AS integer", "crm.d AS crm.b"), "is domain crm.d over integer, which holds whole numbers"),
        ("secuencia", ("crm.d AS numeric(20, 2)",), "is domain crm.d over numeric(20,2), which is not of integers"),
        ("telefono", ("crm.d AS varchar(12)",), "is domain crm.d over character varying(12), which holds 12"),
        ("telefono", ("crm.d AS bigint",), "is domain crm.d over bigint, which is not a text column"),
        ("fecha_hora", ("crm.d AS date",), "is domain crm.d over date, which keeps the day only"),
    ],
)
def test_a_domain_whose_base_type_would_change_what_it_receives_fails_check_naming_it(  # noqa: PLR0917 (fixtures and parameters)
    tmp_path: Path, postgres_url: str, creditor_db: sa.Engine, column: str, domains: tuple[str, ...], shown: str
) -> None:
    retyped(creditor_db, column, "crm.d", *domains)
    detail = refused(make_sync(tmp_path, postgres_url), column)
    assert shown in detail, detail


@pytest.mark.parametrize(
    ("column", "kind", "domains", "shown"),
    [
        ("cuenta", "name", (), "the account_ref column 'cuenta' is name, which holds 63 bytes only"),
        ("acreedor", "name", (), "the creditor column 'acreedor' is name, which holds 63 bytes only"),
        ("resultado", "name", (), "the outcome column 'resultado' is name, which holds 63 bytes only"),
        ("agente", "name", (), "the agent column 'agente' is name, which holds 63 bytes only"),
        ("tipo", '"char"', (), "the kind column 'tipo' is \"char\", which holds 1 byte only"),
        ("telefono", '"char"', (), "holds 1 byte only"),
        ("fecha_hora", '"char"', (), "holds 1 byte only"),
        ("fecha_compromiso", '"char"', (), "holds 1 byte only"),
        ("monto", '"char"', (), "the amount column 'monto' is \"char\", which holds 1 byte only"),
        ("cuenta", "crm.d", ("crm.d AS name",), "is domain crm.d over name, which holds 63 bytes only"),
        ("tipo", "crm.d", ('crm.d AS "char"',), 'is domain crm.d over "char", which holds 1 byte only'),
    ],
)
def test_a_name_or_char_column_that_would_cut_what_it_receives_fails_check_and_export_naming_its_type(  # noqa: PLR0917 (fixtures and parameters)
    tmp_path: Path,
    postgres_url: str,
    creditor_db: sa.Engine,
    column: str,
    kind: str,
    domains: tuple[str, ...],
    shown: str,
) -> None:
    """PostgreSQL's name (63 bytes) and "char" (1 byte), which SQLAlchemy reflects as a bare String, passed as text
    columns: a 64-character account was stored as another 63-character one, promise_to_pay as 'p' (round 23 A-F4)."""
    retyped(creditor_db, column, kind, *domains)
    detail = refused(make_sync(tmp_path, postgres_url), column)
    assert shown in detail, detail
    with creditor_db.connect() as connection:
        assert connection.scalar(sa.text("SELECT count(*) FROM crm.actividades")) == 0


def test_the_reported_table_of_name_and_char_columns_is_refused_and_nothing_is_cut(
    tmp_path: Path, postgres_url: str, creditor_db: sa.Engine
) -> None:
    """Round 23 A-F4's table: check said ok, and a 64-character account and a 100-character payment reference were
    stored cut to 63, promise_to_pay as 'p'."""
    retyped(creditor_db, "tipo", '"char"')
    for each in ("acreedor", "cartera", "cuenta", "resultado", "agente"):
        retyped(creditor_db, each, "name")
    sync = make_sync(tmp_path, postgres_url)
    detail = refused(sync, "tipo")
    for field, each in [("kind", "tipo"), ("account_ref", "cuenta"), ("outcome", "resultado"), ("agent", "agente")]:
        assert f"the {field} column {each!r} is " in detail, detail
    long = dataclasses.replace(promise(2), account_ref="BCO-" + "0" * 60, outcome="PAGO-" + "9" * 95)
    with pytest.raises(CreditorDatabaseError, match="holds 63 bytes only"):
        sync.export([long])
    with creditor_db.connect() as connection:
        assert connection.scalar(sa.text("SELECT count(*) FROM crm.actividades")) == 0


@pytest.mark.parametrize(
    ("column", "kind", "stored"),
    [
        ("tipo", "name", "promise_to_pay"),  # a kind's 14 ASCII characters fit in 63 bytes
        ("telefono", "name", "+573001234567"),
        ("fecha_compromiso", "name", "2026-03-16"),
        ("monto", "name", "350000.50"),
    ],
)
def test_a_name_column_wide_enough_for_its_field_passes(  # noqa: PLR0917 (fixtures and parameters)
    tmp_path: Path, postgres_url: str, creditor_db: sa.Engine, column: str, kind: str, stored: str
) -> None:
    exported(tmp_path, postgres_url, creditor_db, column, kind)
    with creditor_db.connect() as connection:
        assert connection.scalar(sa.text(f"SELECT CAST({column} AS text) FROM crm.actividades")) == stored


@pytest.mark.parametrize(
    ("kind", "accepted"),
    [
        (sa.String(), False),  # a text type SQLAlchemy knows by no class of its own: its width is unknown
        (sa.Unicode(), False),
        (sa.TEXT(), True),
        (sa.Text(), True),
        (sa.VARCHAR(), True),
        (sa.NVARCHAR(), True),
        (CITEXT(), True),
        (sa.Enum("promise_to_pay", "call", name="kinds"), True),
    ],
)
def test_text_columns_are_accepted_by_their_class_not_as_any_string(
    kind: sa.types.TypeEngine[str], accepted: bool
) -> None:
    problem = EXPECTED_COLUMNS["kind"].problem(kind)
    assert (problem is None) is accepted, problem
    if not accepted:
        assert problem == "is a text type whose width the node does not know (a value may be cut)"
