"""A portfolio is (creditor, code): a grant of one creditor's portfolio shows nothing of another creditor's
portfolio with the same code, in searches, playback, downloads, KPIs, the audit view and the command line."""

from __future__ import annotations

import random
import sqlite3
from datetime import timedelta
from decimal import Decimal
from pathlib import Path

import pytest

from cartera.core.models import ActivityKind, Recording
from cartera.core.store.database import Database
from cartera.core.store.schema import Account, ActivityRow, ContactAttempt, Creditor, Debtor, Portfolio
from cartera.node import Node
from cartera.plugins.dialers.simulator.audio import RATE, conversation, write_wav
from cartera.users.directory import UserDirectory
from tests import test_web_pages
from tests.browser.seed import DAY, PASSWORD
from tests.conftest import run_site
from tests.test_web_pages import Site, rows, sign_in

site = test_web_pages.site  # the seeded site fixture

pytestmark = pytest.mark.abuse


def add_otro_recording(node: Node, spool: Path) -> int:
    """Creditor OTRO's account in its own portfolio TARJETAS, called and answered with a promise, the call's
    recording archived; returns the recording's id."""
    assert node.archiver is not None
    with node.db.session() as session:
        account = Account(
            portfolio=Portfolio(creditor=Creditor(code="OTRO"), code="TARJETAS", site="t", country="CO"),
            ref="OTRO-9",
            debtor=Debtor(name="Deudor de OTRO"),
            balance=Decimal(900000),
            currency="COP",
            status="active",
            updated_at=DAY,
        )
        attempt = ContactAttempt(
            site="t",
            account=account,
            phone="+573009990000",
            state="finished",
            requested_at=DAY,
            outcome="answered",
            started_at=DAY,
            answered_at=DAY,
            ended_at=DAY + timedelta(seconds=5),
            agent="agent-09",
            disposition="promise_to_pay",
        )
        session.add(attempt)
        session.add(ActivityRow(site="t", kind=ActivityKind.PAYMENT.value, at=DAY, account=account, amount=777))
        session.flush()
        attempt_id = attempt.id
    path = spool / "otro.wav"
    write_wav(path, conversation(random.Random(3), 5 * RATE))
    recording_id = node.archiver.catalog(Recording(path, attempt_id, DAY, 5.0, agent="agent-09"))
    node.archiver.run_once()
    archived = node.library.view(recording_id)
    assert archived is not None
    assert archived.state == "verified"
    return recording_id


def add_user(site: Site, name: str, *grants: str, role: str = "supervisor") -> None:
    args = [arg for code in grants for arg in ("--portfolio", code)]
    added = run_site(site.config, "users", "add", name, "--role", role, *args, env={"CARTERA_USER_PASSWORD": PASSWORD})
    assert added.returncode == 0, added.stderr


def test_a_grant_of_one_creditors_portfolio_shows_nothing_of_anothers(site: Site, tmp_path: Path) -> None:
    add_user(site, "dora", "TARJETAS")  # only BANCO has a portfolio TARJETAS now: the grant is BANCO's
    otro = add_otro_recording(site.node, tmp_path / "spool")  # then creditor OTRO pushes its own TARJETAS
    client = sign_in(site.client(), "dora")
    ids = {ref: str(recording) for ref, recording in site.seeded.recordings.items()}
    page = client.get("/recordings")
    assert rows(page.text) == [ids["BCO-2"], ids["BCO-1"]]
    assert "BANCO/TARJETAS" in page.text
    assert "OTRO/TARJETAS" not in page.text
    assert rows(client.get("/recordings?portfolio=TARJETAS").text) == [ids["BCO-2"], ids["BCO-1"]]
    assert rows(client.get("/recordings?portfolio=OTRO/TARJETAS").text) == []
    assert rows(client.get("/recordings?account=OTRO-9").text) == []
    assert rows(client.get("/recordings?agent=agent-09").text) == []
    for path in ("", "/audio", "/download"):
        answer = client.get(f"/recordings/{otro}{path}", headers={"Range": "bytes=0-99"})
        assert answer.status_code == 404, (path, answer.status_code)
    kpi = client.get("/kpi?since=2026-11-23&until=2026-11-30").text
    assert "BANCO/TARJETAS" in kpi
    assert "OTRO" not in kpi
    assert "777" not in kpi
    assert client.get(f"/recordings/{ids['BCO-1']}/audio").status_code == 200
    assert site.audits("recordings.play")[-1].details["portfolio"] == "BANCO/TARJETAS"
    searched = site.audits("recordings.search")[-1]
    assert searched.details["filters"]["within"] == "BANCO/TARJETAS"
    assert [e.details["reason"] for e in site.audits("web.rejected")[-3:]] == [
        "no such recording within the viewer's reach"
    ] * 3


def test_a_portfolio_limited_auditor_does_not_read_the_whole_sites_audit_log(site: Site) -> None:
    add_user(site, "eva", "BANCO/VEHICULOS", role="auditor")
    client = sign_in(site.client(), "eva")
    assert client.get("/audit").status_code == 403
    assert sign_in(site.client(), "carla").get("/audit").status_code == 200  # granted the whole site


def test_users_add_refuses_a_bare_code_two_creditors_share(site: Site, tmp_path: Path) -> None:
    add_otro_recording(site.node, tmp_path / "spool")
    env = {"CARTERA_USER_PASSWORD": PASSWORD}
    refused = run_site(site.config, "users", "add", "fede", "--role", "supervisor", "--portfolio", "TARJETAS", env=env)
    assert refused.returncode == 2
    assert "BANCO/TARJETAS, OTRO/TARJETAS" in refused.stderr
    unknown = run_site(site.config, "users", "add", "fede", "--role", "supervisor", "--portfolio", "NADA", env=env)
    assert unknown.returncode == 2
    assert "CREDITOR/CODE" in unknown.stderr
    assert UserDirectory(site.node.db).everyone()[-1].name != "fede"
    added = run_site(
        site.config, "users", "add", "fede", "--role", "supervisor", "--portfolio", "OTRO/TARJETAS", env=env
    )
    assert added.returncode == 0, added.stderr
    assert "t:OTRO/TARJETAS" in added.stdout
    assert "t:OTRO/TARJETAS" in run_site(site.config, "users", "list").stdout


def test_cli_search_shows_and_filters_creditor_and_portfolio(site: Site, tmp_path: Path) -> None:
    add_otro_recording(site.node, tmp_path / "spool")
    listed = run_site(site.config, "recordings", "search", "--portfolio", "OTRO/TARJETAS")
    assert listed.returncode == 0, listed.stderr
    assert [line.split()[3] for line in listed.stdout.splitlines()[1:]] == ["OTRO/TARJETAS"]
    both = run_site(site.config, "recordings", "search", "--portfolio", "TARJETAS").stdout
    assert "OTRO/TARJETAS" in both
    assert "BANCO/TARJETAS" in both


def legacy_store(path: Path) -> Database:
    """A store at revision 0007 with grants of bare codes: VEHICULOS (one creditor's) and TARJETAS (two)."""
    db = Database(f"sqlite:///{path}")
    db.migrate("0007_contact_prefs")
    with sqlite3.connect(path) as conn:
        conn.executescript(
            """
            INSERT INTO creditors (id, code) VALUES (1, 'BANCO'), (2, 'OTRO');
            INSERT INTO portfolios (creditor_id, code, site, country)
                VALUES (1, 'TARJETAS', 't', 'CO'), (1, 'VEHICULOS', 't', 'CO'), (2, 'TARJETAS', 't', 'CO');
            INSERT INTO web_users (id, name, password_hash, role, disabled, created_at)
                VALUES (1, 'beto', 'x', 'supervisor', 0, '2026-11-23 00:00:00'),
                       (2, 'dora', 'x', 'supervisor', 0, '2026-11-23 00:00:00');
            INSERT INTO web_grants (user_id, site, portfolio) VALUES (1, 't', 'VEHICULOS'), (2, 't', 'TARJETAS');
            """
        )
    return db


def test_migration_completes_an_unambiguous_bare_grant_and_keeps_an_ambiguous_one_granting_nothing(
    tmp_path: Path,
) -> None:
    db = legacy_store(tmp_path / "t.db")
    try:
        db.migrate()
        users = {user.name: user for user in UserDirectory(db).everyone()}
    finally:
        db.dispose()
    assert [str(key) for key in users["beto"].portfolios("t") or ()] == ["BANCO/VEHICULOS"]
    assert users["dora"].portfolios("t") == frozenset()
    assert users["dora"].unresolved("t") == ("TARJETAS",)


def test_a_user_with_a_grant_naming_no_creditor_is_refused_with_the_reason(site: Site) -> None:
    with sqlite3.connect(site.config.parent / "var" / "t.db") as conn:
        conn.execute("UPDATE web_grants SET creditor = NULL WHERE portfolio = 'VEHICULOS'")
    client = sign_in(site.client(), "beto")
    answer = client.get("/recordings")
    assert answer.status_code == 403
    assert "CREDITOR/PORTFOLIO" in client.get("/lang/en", follow_redirects=True).text
    assert site.audits("web.rejected")[-1].details["reason"] == "portfolio grant VEHICULOS names no creditor"
    regranted = run_site(site.config, "users", "grant", "beto", "--portfolio", "BANCO/VEHICULOS")
    assert regranted.returncode == 0, regranted.stderr
    assert rows(client.get("/recordings").text) == [str(site.seeded.recordings["VEH-7"])]


def test_the_search_page_takes_qualified_refs_and_refuses_what_the_import_quarantines(site: Site) -> None:
    client = sign_in(site.client(), "ana")
    qualified = client.get("/recordings?account=BANCO/TARJETAS/BCO-1")
    assert rows(qualified.text) == [str(site.seeded.recordings["BCO-1"])]
    assert rows(client.get("/recordings?account=VEHICULOS/BCO-1").text) == []
    for ref in ("BCO 1", "-BCO", "é1", "A/B/C/D", "x" * 65):
        assert client.get("/recordings", params={"account": ref}).status_code == 400, ref
