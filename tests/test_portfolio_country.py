"""A portfolio's country (its law pack, how its national numbers read) is the site's, never a creditor row's."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import select

from cartera.core.clock import SimulatedClock
from cartera.core.hooks import Hooks
from cartera.core.store.database import Database
from cartera.core.store.schema import Account, Creditor, Portfolio
from cartera.portfolio.importer import AssignmentImporter
from tests.test_assignments import NOW, accounts, batch, database, row


@pytest.fixture
def db(tmp_path: Path) -> Iterator[Database]:
    store = database(f"sqlite:///{tmp_path / 'store.db'}")
    yield store
    store.dispose()


@pytest.fixture
def importer(db: Database, hooks: Hooks) -> AssignmentImporter:
    return AssignmentImporter("t", "CO", db, SimulatedClock(NOW, 1.0), hooks)


def portfolio_countries(db: Database) -> dict[str, str]:
    with db.session() as session:
        return dict(session.execute(select(Portfolio.code, Portfolio.country)).all())


@pytest.mark.abuse
def test_the_first_rows_country_does_not_choose_the_portfolios_country(
    importer: AssignmentImporter, db: Database
) -> None:
    """A creditor sending ``"country": "MX"`` first got a Colombian site's portfolio the mx law pack."""
    report = importer.import_batch(batch("mx", row(1, "A", "+57 300 123 9999", country="MX")), "t")
    assert (report.new, report.quarantined) == (1, [])
    assert portfolio_countries(db) == {"TARJETAS": "CO"}
    later = importer.import_batch(batch("co", row(1, "B", "300 123 8888")), "t")
    assert later.new == 1
    assert accounts(db)["B"][2] == ["+573001238888"]  # a national number reads as the site's country's


@pytest.mark.abuse
def test_a_row_with_an_unknown_country_is_quarantined(importer: AssignmentImporter, db: Database) -> None:
    report = importer.import_batch(
        batch("zz", row(1, "A", "+57 300 123 9999", country="ZZ"), row(2, "B", "55 5512 3456", country="MX")), "t"
    )
    assert [(error.line, error.field) for error in report.quarantined] == [(1, "country")]
    assert "unknown country 'ZZ'" in report.quarantined[0].reason
    assert accounts(db)["B"][2] == ["+525555123456"]  # a row's country is how its phones read
    assert portfolio_countries(db) == {"TARJETAS": "CO"}


def test_an_existing_portfolio_keeps_its_country(importer: AssignmentImporter, db: Database) -> None:
    with db.session() as session:
        creditor = Creditor(code="BCO")
        session.add(Portfolio(creditor=creditor, code="TARJETAS", site="t", country="PE"))
        session.commit()
    assert importer.import_batch(batch("pe", row(1, "A", "987 654 321")), "t").new == 1
    assert portfolio_countries(db) == {"TARJETAS": "PE"}
    with db.session() as session:
        assert session.scalars(select(Account.ref)).all() == ["A"]


def test_a_portfolio_the_site_holds_to_another_countrys_law_gets_that_country(db: Database, hooks: Hooks) -> None:
    configured = {"BCO/TARJETAS": "CL"}
    importer = AssignmentImporter("t", "CO", db, SimulatedClock(NOW, 1.0), hooks, law_country=configured.get)
    report = importer.import_batch(batch("cl", row(1, "A", "2 2123 4567", currency="CLP")), "t")
    assert report.quarantined == []
    assert portfolio_countries(db) == {"TARJETAS": "CL"}
    assert accounts(db)["A"][2] == ["+56221234567"]  # its national numbers read as Chile's
