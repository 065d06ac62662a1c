"""An amount in another currency than its account's (round 18 M3): a payment row in USD on a COP account was
subtracted from the balance as COP (100 USD lowered it by 100 COP). A payment, or a row restating the balance,
whose currency is not the account's is quarantined (field ``currency``), no conversion guessed; the rest of the
delivery loads. Both the file and the creditor API channels."""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal
from pathlib import Path

import pytest
from sqlalchemy import select

from cartera.core.store.schema import Account, ActivityRow
from cartera.node import Node
from cartera.plugins.crm_sync.http.models import BatchIn
from cartera.plugins.crm_sync.http.plugin import HttpCrmSync
from tests.conftest import write_sites
from tests.plugins.crm_sync.test_http import batch, http_site, row

pytestmark = pytest.mark.abuse

ASSIGN = "cuenta;nombre;telefono1;saldo;moneda\nA-1;Ana;3001234567;1000;COP\nA-2;Bo;3001234568;1000;USD\n"
PAY_HEADER = "cuenta;nombre;telefono1;saldo;moneda;accion;referencia_pago\n"


def accounts(node: Node) -> dict[str, tuple[Decimal, str, str]]:
    with node.db.session() as session:
        return {a.ref: (a.balance, a.currency, a.status) for a in session.scalars(select(Account))}


def payments(node: Node) -> list[Decimal | None]:
    with node.db.session() as session:
        return list(
            session.scalars(select(ActivityRow.amount).where(ActivityRow.kind == "payment").order_by(ActivityRow.seq))
        )


def test_csv_a_payment_in_another_currency_is_quarantined_and_the_rest_loads(
    tmp_path: Path, open_node: Callable[..., Node]
) -> None:
    node = open_node(write_sites(tmp_path))
    inbox = tmp_path / "inbox"
    (inbox / "a1.csv").write_text(ASSIGN, encoding="utf-8")
    assert [report.new for report in node.creditor_sync().run_once().imports] == [2]
    (inbox / "a2.csv").write_text(
        f"{PAY_HEADER}A-1;Ana;3001234567;100;USD;pago;PAY-USD-1\n"
        "A-2;Bo;3001234568;40;USD;pago;PAY-USD-2\n"
        "A-1;Ana;3001234567;150;COP;pago;PAY-COP-1\n",
        encoding="utf-8",
    )
    run = node.creditor_sync().run_once()
    assert not run.failed
    (report,) = run.imports
    assert report.payments == 2
    assert [(e.line, e.field, e.reason) for e in report.quarantined] == [
        (2, "currency", "an amount in USD for an account in COP: not applied (no conversion is guessed)")
    ]
    assert accounts(node) == {
        "A-1": (Decimal("850.00"), "COP", "active"),
        "A-2": (Decimal("960.00"), "USD", "active"),
    }
    assert payments(node) == [Decimal("40.00"), Decimal("150.00")]


def test_csv_a_file_without_the_currency_column_does_not_restate_a_usd_account_in_cop(
    tmp_path: Path, open_node: Callable[..., Node]
) -> None:
    """The file's default currency (COP) is the row's currency: a payment or a balance of a USD account read from
    a file without ``moneda`` is not taken as COP, nor does it turn the account into a COP one."""
    node = open_node(write_sites(tmp_path))
    inbox = tmp_path / "inbox"
    (inbox / "a1.csv").write_text(ASSIGN, encoding="utf-8")
    node.creditor_sync().run_once()
    (inbox / "a2.csv").write_text(
        "cuenta;nombre;telefono1;saldo;accion\nA-2;Bo;3001234568;5;pago\nA-2;Bo;3001234568;700;\n"
        "A-1;Ana;3001234567;900;\n",
        encoding="utf-8",
    )
    (report,) = node.creditor_sync().run_once().imports
    assert (report.payments, report.updated) == (0, 1)
    assert [(e.line, e.field) for e in report.quarantined] == [(2, "currency"), (3, "currency")]
    assert accounts(node) == {
        "A-1": (Decimal("900.00"), "COP", "active"),
        "A-2": (Decimal("1000.00"), "USD", "active"),
    }
    assert payments(node) == []


def test_http_a_payment_in_another_currency_is_quarantined_and_the_rest_loads(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, open_node: Callable[..., Node]
) -> None:
    node = open_node(http_site(tmp_path, monkeypatch))
    sync = node.adapter("crm_sync", HttpCrmSync)
    assigned = [row("A-1", "3001234567", "1000"), row("A-2", "3001234568", "1000", currency="USD")]
    sync.spool.save(BatchIn.model_validate(batch("b-1", assigned, creditor="BANCO")))
    assert [r.new for r in node.creditor_sync().run_once().imports] == [2]
    paid = [
        row("A-1", "3001234567", "1000", action="payment", payment_amount="100", currency="USD", payment_ref="U-1"),
        row("A-2", "3001234568", "1000", action="payment", payment_amount="40", currency="USD", payment_ref="U-2"),
        row("A-2", "3001234568", "1000", action="payment", payment_amount="7", payment_ref="C-1"),  # site's COP
        row("A-1", "3001234567", "1000", action="payment", payment_amount="150", payment_ref="C-2"),
    ]
    sync.spool.save(BatchIn.model_validate(batch("b-2", paid, creditor="BANCO")))
    run = node.creditor_sync().run_once()
    assert not run.failed
    (report,) = run.imports
    assert report.payments == 2
    assert [(e.line, e.field, e.reason) for e in report.quarantined] == [
        (1, "currency", "an amount in USD for an account in COP: not applied (no conversion is guessed)"),
        (3, "currency", "an amount in COP for an account in USD: not applied (no conversion is guessed)"),
    ]
    assert accounts(node) == {
        "A-1": (Decimal("850.00"), "COP", "active"),
        "A-2": (Decimal("960.00"), "USD", "active"),
    }
    assert payments(node) == [Decimal("40.00"), Decimal("150.00")]
    assert list(sync.spool.pending()) == []
