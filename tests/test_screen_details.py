"""What the agent's screen shows once the right party is confirmed: each account's days past due, from the day its
debt fell due, and the portfolio's own script where the site sets one (the page's generic text otherwise)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import date
from pathlib import Path

from sqlalchemy import update

from cartera.contact.segments import days_past_due
from cartera.core.store.schema import Account
from cartera.node import Node
from tests.conftest import write_sites
from tests.workspace_seed import seed_calls

SCRIPT = "Buenos días, habla Cobranzas Andina en nombre de Banco Tarjetas."


def test_days_past_due_count_from_the_due_day_and_are_unknown_without_it() -> None:
    today = date(2026, 11, 23)
    assert days_past_due(date(2026, 10, 24), today) == 30
    assert days_past_due(date(2026, 12, 1), today) == 0  # not due yet
    assert days_past_due(None, today) is None


def test_the_details_show_days_past_due_and_the_portfolios_script(
    tmp_path: Path, open_node: Callable[[Path], Node]
) -> None:
    extra = f'\n[sites.t.workspace.portfolios."BANCO/TARJETAS"]\nscript = "{SCRIPT}"\n'
    node = open_node(write_sites(tmp_path, extra=extra))
    calls = seed_calls(node)
    with node.db.session() as session:
        session.execute(update(Account).where(Account.ref == "BCO-1").values(due_on=date(2026, 8, 25)))
    screens = node.workspace.screens
    colombian = screens.details(calls.colombian, "ana", None)
    lines = {line.ref: line.days_past_due for line in colombian.accounts}
    assert lines == {"BCO-1": 90, "VEH-1": None}  # the site's clock is at 2026-11-23
    assert colombian.script == SCRIPT
    assert colombian.as_json()["accounts"][0]["days_past_due"] == 90  # type: ignore[index]
    american = screens.details(calls.american, "ana", None)
    assert american.script is None  # the page shows its generic script


def test_days_past_due_count_the_sites_days_not_utcs(tmp_path: Path, open_node: Callable[[Path], Node]) -> None:
    node = open_node(write_sites(tmp_path, start="2026-11-23T20:30:00-05:00"))  # already the 24th in UTC
    calls = seed_calls(node)
    with node.db.session() as session:
        session.execute(update(Account).where(Account.ref == "BCO-1").values(due_on=date(2026, 8, 25)))
    (line, *_) = node.workspace.screens.details(calls.colombian, "ana", None).accounts
    assert (line.ref, line.days_past_due) == ("BCO-1", 90)
