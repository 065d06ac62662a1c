"""The crm_sync adapter's fetch itself failing: the run records it (health fails, the reason masked) and the
export still runs."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from cartera.core.models import AssignmentBatch
from cartera.core.redaction import MASK, register_secret
from cartera.node import Node
from tests.conftest import write_portfolio, write_sites

pytestmark = pytest.mark.abuse

SECRET = "fetch-secret-7"


def test_a_failing_fetch_is_recorded_and_the_export_still_runs(
    tmp_path: Path, open_node: Callable[[Path], Node], monkeypatch: pytest.MonkeyPatch
) -> None:
    node = open_node(write_sites(tmp_path))
    sync = node.creditor_sync()
    write_portfolio(tmp_path / "inbox", ["BCO-1;Ana Gómez;300 123 4567;;1.250.000,00;COP"])
    assert len(sync.run_once().imports) == 1
    payment = tmp_path / "pago.csv"
    payment.write_text("cuenta;nombre;telefono1;saldo;accion;referencia_pago\nBCO-1;;;250,50;pago;R-1\n")
    sync.import_file(payment, actor="operator")  # one activity waiting for the export
    register_secret(SECRET)

    def failing_fetch() -> Iterator[AssignmentBatch]:
        raise ValueError(f"invalid input syntax for type numeric: {SECRET!r}")
        yield  # a generator, as the adapters' fetch is

    monkeypatch.setattr(sync.crm, "fetch", failing_fetch)
    run = sync.run_once()
    assert run.failed == [f"fetch: ValueError: invalid input syntax for type numeric: {SECRET!r}"]
    assert run.exported == 1
    (line,) = [line for line in node.check() if line.what == "creditor sync"]
    assert not line.result.ok
    assert "ValueError: invalid input syntax" in line.result.detail
    assert sync.failures is not None
    text = sync.failures.read_text(encoding="utf-8")  # what check, in another process, reads
    assert MASK in text
    assert SECRET not in text
