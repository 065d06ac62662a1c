"""Money is shown per currency (round 18 M2): the KPI page's "Monto recuperado" added payments of a portfolio's
USD and COP accounts into one number (1,000 USD + 150,000 COP shown as 151.000,00), and the run summary added
every promise into one total. Each currency is now its own figure, with its code. And the wallboard's ringing and
talking of a supervisor limited to some portfolios count those portfolios' calls only (round 18 L2): an agent
talking on another portfolio's call took one off this supervisor's ringing."""

from __future__ import annotations

import re
from datetime import timedelta
from decimal import Decimal
from pathlib import Path

import pytest

from cartera.cli.summary import site_summary
from cartera.core.hooks import load_plugins
from cartera.core.models import ActivityKind
from cartera.core.store.schema import Account, ActivityRow, ContactAttempt, Debtor, Portfolio
from cartera.node import Node
from cartera.portfolio.identity import PortfolioKey
from cartera.runtime.kpis import daily_kpis
from cartera.web.context import Web
from cartera.web.wallboard import board
from tests.browser.seed import DAY, seed
from tests.conftest import write_sites
from tests.test_web_pages import Site, sign_in, site  # noqa: F401

pytestmark = pytest.mark.abuse


def add_usd_account(site: Site) -> None:  # noqa: F811
    """A USD account in BANCO/TARJETAS, paid 1,000.00 USD on the day the seeded COP account paid 150,000.50, and a
    promise of 300 USD beside the seeded 150,000 COP one."""
    with site.node.db.session() as session:
        tarjetas = session.query(Portfolio).filter_by(code="TARJETAS").one()
        account = Account(
            portfolio=tarjetas,
            ref="BCO-USD",
            debtor=Debtor(name="John Doe"),
            balance=Decimal(5000),
            currency="USD",
            status="active",
            updated_at=DAY,
        )
        session.add_all(
            [
                ActivityRow(
                    site="t",
                    kind=ActivityKind.PAYMENT.value,
                    at=DAY + timedelta(days=2),
                    account=account,
                    amount=Decimal("1000.00"),
                ),
                ActivityRow(
                    site="t",
                    kind=ActivityKind.PROMISE_TO_PAY.value,
                    at=DAY,
                    account=account,
                    amount=Decimal(300),
                    due_date=DAY.date() + timedelta(days=5),
                ),
            ]
        )


def test_the_kpis_keep_each_currency_apart(site: Site) -> None:  # noqa: F811
    add_usd_account(site)
    node = site.node
    kpis = daily_kpis(node.db, {"t": None}, node.site.zone, since=DAY.date(), until=DAY.date() + timedelta(days=3))
    (paid,) = [k for k in kpis if k.portfolio == "BANCO/TARJETAS" and k.day == DAY.date() + timedelta(days=2)]
    assert paid.recovered == {"COP": Decimal("150000.50"), "USD": Decimal("1000.00")}

    page = sign_in(site.client(), "ana").get("/kpi?since=2026-11-20&until=2026-11-30")
    assert page.status_code == 200
    row = re.search(r"<td>2026-11-25</td><td>BANCO/TARJETAS</td>.*?</tr>", page.text, re.S)
    assert row is not None
    assert "150.000,50 COP · 1.000,00 USD" in row.group(0)
    assert "151.000,50" not in page.text


def test_the_run_summary_totals_promises_per_currency(site: Site) -> None:  # noqa: F811
    add_usd_account(site)
    figures = site.node.figures.read()
    assert figures.promises == 2
    assert figures.promised == {"COP": Decimal(150000), "USD": Decimal(300)}
    summary = site_summary(site.node, DAY, 1.0)
    assert "2 promises to pay, total 150.000 COP, 300 USD" in summary


def test_a_portfolio_limited_wallboard_counts_its_own_calls_ringing_and_talking(site: Site) -> None:  # noqa: F811
    node = site.node
    now = node.clock.now()
    with node.db.session() as session:
        accounts = {a.ref: a for a in session.query(Account).filter(Account.ref.in_(("BCO-1", "VEH-7")))}
        talking = ContactAttempt(
            site="t", account=accounts["BCO-1"], phone="+573001112233", state="placing", requested_at=now
        )
        ringing = ContactAttempt(
            site="t", account=accounts["VEH-7"], phone="+573007778899", state="placing", requested_at=now
        )
        session.add_all([talking, ringing])
        session.flush()
        talking_id = talking.id
    web = Web(node.web_services())
    roster = web.services.workspace.roster
    roster.sign_in("dora", "agent-01")
    roster.connected("dora", talking_id)  # on TARJETAS's call

    vehiculos = board(web, frozenset({PortfolioKey("BANCO", "VEHICULOS")}))
    assert (vehiculos.ringing, vehiculos.talking) == (1, 0)  # was (0, 1): TARJETAS's call taken off
    tarjetas = board(web, frozenset({PortfolioKey("BANCO", "TARJETAS")}))
    assert (tarjetas.ringing, tarjetas.talking) == (0, 1)
    everyone = board(web, None)
    assert (everyone.ringing, everyone.talking) == (1, 1)


@pytest.mark.postgres
def test_money_per_currency_on_postgresql(tmp_path: Path, postgres_url: str) -> None:
    config = write_sites(tmp_path, database=postgres_url)
    node = Node.open(config, "t", load_plugins(entry_points=False))
    try:
        on_postgres = Site(node, seed(node, tmp_path / "spool"), config)
        add_usd_account(on_postgres)
        kpis = daily_kpis(node.db, {"t": None}, node.site.zone, since=DAY.date(), until=DAY.date() + timedelta(days=3))
        assert {"COP": Decimal("150000.50"), "USD": Decimal("1000.00")} in [k.recovered for k in kpis]
        assert node.figures.read().promised == {"COP": Decimal(150000), "USD": Decimal(300)}
    finally:
        node.close()
