"""Payment references and float cells from creditors (round 18 G3, G4, G5): a payment reference has one bound on
every channel, which the store holds whole; a longer one quarantines its row (field ``payment_ref``) while the rest
of the delivery loads, and two references are never cut to one. A float cell (a ``double precision`` column, a
pandas float column in a CSV file) never becomes another person's phone number."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from decimal import Decimal
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy import select

from cartera.contact.phones import InvalidPhone
from cartera.core.models import PAYMENT_REF_MAX, AssignmentAction, AssignmentRow
from cartera.core.store.schema import Account, ActivityRow, Debtor, Phone, ReportedPayment
from cartera.node import Node
from cartera.plugins.crm_sync.http.models import AssignmentIn, BatchIn
from cartera.plugins.crm_sync.http.plugin import HttpCrmSync
from cartera.plugins.crm_sync.sql.client import cells
from cartera.portfolio.files.phones import PhoneNormalizer
from cartera.portfolio.row_rules import _payment_key as payment_key
from tests.conftest import write_sites
from tests.plugins.crm_sync.test_http import batch, http_site, row
from tests.plugins.crm_sync.test_sql import GOOD_ROWS, SQL_SITE, creditor_db, insert_rows, with_password  # noqa: F401

pytestmark = pytest.mark.abuse

ASSIGN = "cuenta;nombre;telefono1;saldo;moneda\nA-1;Ana;3001234567;1000;COP\nA-2;Bo;3001234568;1000;COP\n"
PAY_HEADER = "cuenta;nombre;telefono1;saldo;moneda;accion;referencia_pago\n"
STORES = [pytest.param("sqlite", id="sqlite"), pytest.param("postgres", id="postgres", marks=pytest.mark.postgres)]


def store_url(request: pytest.FixtureRequest, store: str) -> str | None:
    return str(request.getfixturevalue("postgres_url")) if store == "postgres" else None


def csv_node(tmp_path: Path, open_node: Callable[..., Node], database: str | None) -> Node:
    node = open_node(write_sites(tmp_path, database=database))
    (tmp_path / "inbox" / "a1.csv").write_text(ASSIGN, encoding="utf-8")
    assert [report.new for report in node.creditor_sync().run_once().imports] == [2]
    return node


def sql_node(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, open_node: Callable[..., Node], creditor_url: str, **site: str
) -> Node:
    """Site ``t`` reading the tests' creditor view (``site``: settings of its crm_sync), on the store ``database``."""
    monkeypatch.setenv("CARTERA_TEST_CREDITOR_DB", with_password(creditor_url))
    config = write_sites(tmp_path, database=site.pop("database", None))
    text = config.read_text(encoding="utf-8")
    settings = "".join(f"{name} = {value}\n" for name, value in site.items())
    config.write_text(text[: text.index("[sites.t.crm_sync]")] + SQL_SITE.format() + settings, encoding="utf-8")
    return open_node(config)


def balances(node: Node) -> dict[str, Decimal]:
    with node.db.session() as session:
        return {a.ref: a.balance for a in session.scalars(select(Account).order_by(Account.ref))}


def payment_outcomes(node: Node) -> list[str | None]:
    with node.db.session() as session:
        return list(
            session.scalars(select(ActivityRow.outcome).where(ActivityRow.kind == "payment").order_by(ActivityRow.seq))
        )


@pytest.mark.parametrize("store", STORES)
def test_a_payment_ref_over_the_bound_quarantines_its_row_and_one_at_the_bound_is_kept_whole(
    tmp_path: Path, open_node: Callable[..., Node], request: pytest.FixtureRequest, store: str
) -> None:
    """On PostgreSQL a reference over activities.outcome's 32 characters failed the whole delivery on every run;
    on SQLite one of any length was applied (G3)."""
    node = csv_node(tmp_path, open_node, store_url(request, store))
    at_bound = "R" * PAYMENT_REF_MAX
    (tmp_path / "inbox" / "a2.csv").write_text(
        f"{PAY_HEADER}A-1;Ana;3001234567;100;COP;pago;{'R' * (PAYMENT_REF_MAX + 1)}\n"
        f"A-2;Bo;3001234568;50;COP;pago;{at_bound}\n",
        encoding="utf-8",
    )
    run = node.creditor_sync().run_once()
    assert not run.failed
    (report,) = run.imports
    assert report.payments == 1
    assert [(e.line, e.field) for e in report.quarantined] == [(2, "payment_ref")]
    assert report.quarantined[0].reason == (
        f"a payment reference of {PAYMENT_REF_MAX + 1} characters: at most {PAYMENT_REF_MAX}"
    )
    assert balances(node) == {"A-1": Decimal("1000.00"), "A-2": Decimal("950.00")}
    assert payment_outcomes(node) == [at_bound]
    assert not node.creditor_sync().run_once().failed


def test_payments_whose_refs_share_all_but_their_last_character_are_two_payments(
    tmp_path: Path, open_node: Callable[..., Node]
) -> None:
    """The key was ``ref:`` and the reference cut to 128 characters: a second payment whose reference shared the
    first 124 characters was silently ``unchanged`` (G4). Longer ones are now refused, and the rest are keyed
    whole."""
    node = csv_node(tmp_path, open_node, None)
    inbox, same = tmp_path / "inbox", "X" * (PAYMENT_REF_MAX - 1)
    for name, amount, last in (("a2.csv", 100, "A"), ("a3.csv", 200, "B")):
        (inbox / name).write_text(f"{PAY_HEADER}A-1;Ana;3001234567;{amount};COP;pago;{same}{last}\n", encoding="utf-8")
        (report,) = node.creditor_sync().run_once().imports
        assert (report.payments, report.unchanged) == (1, 0)
    long = "X" * 124
    (inbox / "a4.csv").write_text(
        f"{PAY_HEADER}A-1;Ana;3001234567;100;COP;pago;{long}A\nA-1;Ana;3001234567;200;COP;pago;{long}B\n",
        encoding="utf-8",
    )
    (report,) = node.creditor_sync().run_once().imports
    assert (report.payments, report.unchanged) == (0, 0)
    assert [(e.line, e.field) for e in report.quarantined] == [(2, "payment_ref"), (3, "payment_ref")]
    assert balances(node)["A-1"] == Decimal("700.00")
    assert payment_outcomes(node) == [f"{same}A", f"{same}B"]


def test_a_payment_key_is_the_whole_reference_and_fits_the_store() -> None:
    ref = "Z" * PAYMENT_REF_MAX
    paying = AssignmentRow(
        1, "BCO", "P", "A-1", "Ana", (), Decimal(0), "COP", AssignmentAction.PAYMENT, payment_ref=ref
    )
    key = payment_key(paying, Decimal(1))
    assert key == f"ref:{ref}"
    assert len(key) <= ReportedPayment.__table__.c.key.type.length  # type: ignore[attr-defined]
    assert ActivityRow.__table__.c.outcome.type.length >= PAYMENT_REF_MAX  # type: ignore[attr-defined]
    with pytest.raises(ValueError, match="at most 120"):
        payment_key(replace(paying, payment_ref=ref + "Z"), Decimal(1))


def test_the_creditor_api_documents_the_same_bound() -> None:
    schema = AssignmentIn.model_json_schema()["properties"]["payment_ref"]["anyOf"][0]
    assert schema["maxLength"] == PAYMENT_REF_MAX


@pytest.mark.postgres
def test_http_payment_refs_up_to_the_documented_bound_load_on_postgresql(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, open_node: Callable[..., Node], postgres_url: str
) -> None:
    """The API answered 202 to a reference of 33 to 120 characters, which then failed the batch on every run."""
    node = open_node(http_site(tmp_path, monkeypatch, database=postgres_url))
    sync = node.adapter("crm_sync", HttpCrmSync)
    accounts = [row("A-1", "3001234567", "1000"), row("A-2", "3001234568", "1000"), row("A-3", "3001234569", "1000")]
    sync.spool.save(BatchIn.model_validate(batch("b-1", accounts, creditor="BANCO")))
    assert [r.new for r in node.creditor_sync().run_once().imports] == [3]
    ref = "R" * PAYMENT_REF_MAX
    payments = [
        row("A-1", "3001234567", "1000", action="payment", payment_amount="100", payment_ref=ref),
        row("A-2", "3001234568", "1000", action="payment", payment_amount="50", payment_ref="OK-1"),
        row("A-3", "3001234569", "1000", action="payment", payment_amount="10", payment_ref=ref + "R"),
    ]
    sync.spool.save(BatchIn.model_validate(batch("b-2", payments, creditor="BANCO")))
    run = node.creditor_sync().run_once()
    assert not run.failed
    (report,) = run.imports
    assert report.payments == 2
    assert [(e.line, e.field) for e in report.quarantined] == [(3, "payment_ref")]
    assert balances(node) == {"A-1": Decimal("900.00"), "A-2": Decimal("950.00"), "A-3": Decimal("1000.00")}
    assert payment_outcomes(node) == [ref, "OK-1"]
    assert list(sync.spool.pending()) == []


@pytest.mark.postgres
def test_sql_an_over_long_payment_ref_no_longer_holds_the_sync(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    open_node: Callable[..., Node],
    postgres_url: str,
    creditor_db: sa.Engine,  # noqa: F811
) -> None:
    """The page holding a reference over 32 characters failed on every run on a PostgreSQL store: the withdrawal
    beside it and the payment on the next page were never applied (G3)."""
    insert_rows(creditor_db, GOOD_ROWS)
    node = sql_node(tmp_path, monkeypatch, open_node, postgres_url, page_rows="2", database=postgres_url)
    assert not node.creditor_sync().run_once().failed
    ref = "R" * PAYMENT_REF_MAX
    with creditor_db.begin() as connection:
        for cuenta, accion, ref_sql, version in (
            ("BCO-000101", "pago", f"repeat('R', {PAYMENT_REF_MAX + 1})", 10),
            ("BCO-000102", "retirar", "NULL", 11),
            ("BCO-000103", "pago", f"repeat('R', {PAYMENT_REF_MAX})", 12),
        ):
            connection.execute(
                sa.text(
                    f"UPDATE crm.cartera SET accion = :a, saldo = 100, referencia_pago = {ref_sql}, version = :v"
                    " WHERE cuenta = :c"
                ),
                {"a": accion, "v": version, "c": cuenta},
            )
    run = node.creditor_sync().run_once()
    assert not run.failed
    assert sum(r.payments for r in run.imports) == 1
    assert sum(r.withdrawn for r in run.imports) == 1
    assert [(e.field, e.reason) for r in run.imports for e in r.quarantined] == [
        ("payment_ref", f"a payment reference of {PAYMENT_REF_MAX + 1} characters: at most {PAYMENT_REF_MAX}")
    ]
    with node.db.session() as session:
        states = {a.ref: (a.balance, a.status) for a in session.scalars(select(Account))}
    assert states["BCO-000101"] == (Decimal("1250000.50"), "active")
    assert states["BCO-000102"][1] == "withdrawn"
    assert states["BCO-000103"] == (Decimal("12499900.00"), "active")
    assert payment_outcomes(node) == [ref]


# --- G5: float cells ------------------------------------------------------------------------------------------


def test_an_integral_float_cell_is_written_as_its_integer() -> None:
    assert cells([300123456.0, 3001234567.0, 12345.0, 1e30, 0.5, 2.25, -0.0]) == [
        "300123456",
        "3001234567",
        "12345",
        "1000000000000000000000000000000",
        "0.5",
        "2.25",
        "-0",
    ]


@pytest.mark.parametrize("raw", ["300123456.0", "3001234567.0", "3001234567.00", "+573001234567.0"])
def test_a_phone_written_as_a_float_is_refused_not_read_as_a_digit_more(raw: str) -> None:
    with pytest.raises(InvalidPhone, match="floating-point"):
        PhoneNormalizer("CO")(raw)


def test_the_usual_separators_still_read() -> None:
    normalize = PhoneNormalizer("CO")
    assert normalize("300.123.4567") == "+573001234567"
    assert normalize("601 555 0123") == "+576015550123"


def test_a_csv_float_phone_column_quarantines_its_rows(tmp_path: Path, open_node: Callable[..., Node]) -> None:
    """pandas writes a float column as ``3001234567.0``: ``300123456.0`` (a digit short) loaded as +573001234560,
    another person's valid number."""
    node = open_node(write_sites(tmp_path))
    (tmp_path / "inbox" / "a.csv").write_text(
        "cuenta;nombre;telefono1;saldo;moneda\nA-1;Ana;300123456.0;10;COP\nA-2;Bo;3001234567.0;10;COP\n"
        "A-3;Cy;3001234568;10;COP\n",
        encoding="utf-8",
    )
    (report,) = node.creditor_sync().run_once().imports
    assert report.new == 1
    assert [(e.line, e.field) for e in report.quarantined] == [(2, "phone1"), (3, "phone1")]
    assert "floating-point" in report.quarantined[0].reason
    with node.db.session() as session:
        assert list(session.scalars(select(Phone.e164))) == ["+573001234568"]


@pytest.mark.postgres
def test_sql_float_phone_and_account_columns_read_as_their_integers(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    open_node: Callable[..., Node],
    postgres_url: str,
    creditor_db: sa.Engine,  # noqa: F811
) -> None:
    with creditor_db.begin() as connection:
        connection.execute(
            sa.text(
                "CREATE TABLE crm.f (cuenta double precision, nombre text, telefono1 double precision,"
                " saldo numeric, version bigint)"
            )
        )
        connection.execute(
            sa.text(
                "INSERT INTO crm.f VALUES (101, 'Ana', 3001234567, 10, 1), (102, 'Bo', 300123456, 10, 2),"
                " (103, 'Cy', 6015550123, 10, 3)"
            )
        )
        connection.execute(sa.text("DROP VIEW crm.asignaciones"))
        connection.execute(sa.text("CREATE VIEW crm.asignaciones AS SELECT * FROM crm.f"))
    node = sql_node(tmp_path, monkeypatch, open_node, postgres_url)
    run = node.creditor_sync().run_once()
    assert not run.failed
    assert [(e.line, e.field) for r in run.imports for e in r.quarantined] == [(3, "phone1")]
    assert "'300123456' is not a valid number" in run.imports[0].quarantined[0].reason
    with node.db.session() as session:
        numbers = session.execute(
            select(Account.ref, Phone.e164)
            .join(Debtor, Account.debtor_id == Debtor.id)
            .join(Phone)
            .order_by(Account.ref)
        ).all()
    assert [tuple(n) for n in numbers] == [("101", "+573001234567"), ("103", "+576015550123")]
