"""The engine on a real store: history read from stored attempts and texts (so a restart or a second node keeps
counting), scheduling at the next allowed time, the creditor's address, and ``explain`` for auditors."""

from __future__ import annotations

import getpass
import sqlite3
import threading
from collections.abc import Callable
from datetime import date, datetime
from decimal import Decimal
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
import sqlalchemy as sa

from cartera.contact.compliance import Reason
from cartera.contact.targets import Denied
from cartera.core.models import ActivityKind, AssignmentBatch, AssignmentRow, CallRequest, Channel, RowError
from cartera.core.store.schema import Account, AuditEntry, ContactAttempt, SmsRow
from cartera.node import Node
from cartera.portfolio.export import add_activity
from tests.conftest import run_site, write_portfolio, write_sites

BOGOTA = ZoneInfo("America/Bogota")
ANA = "+573001234567"
TWO_CALLS_A_DAY = """
[[sites.t.compliance.rules]]
kind = "frequency"
channels = ["call"]
max = 2
days = 1
"""


def site(tmp_path: Path, *, extra: str = "", database: str | None = None, dialer: str = "") -> Path:
    path = write_sites(tmp_path, database=database)
    text = path.read_text().replace("seed = 7", f'seed = 7\nscripted = {{ "{ANA}" = "busy" }}\n{dialer}')
    path.write_text(text.replace("[sites.t.campaign]", extra + "\n[sites.t.campaign]"))
    write_portfolio(tmp_path / "inbox", ["BCO-1;Ana Gómez;300 123 4567;;1.250.000,00;COP"])
    return path


def call(node: Node) -> CallRequest:
    request = node.calls.place_call(phone=None, account="BCO-1", actor="test")
    assert node.calls.wait_for_call(request.attempt_id, timeout=10) is not None
    return request


def test_history_is_read_from_the_store(tmp_path: Path, open_node: Callable[..., Node]) -> None:
    node = open_node(site(tmp_path))
    node.creditor_sync().run_once()
    now = node.clock.now()
    with node.db.session() as session:
        account = session.scalars(sa.select(Account)).one()
        session.add_all(
            [
                ContactAttempt(
                    site="t",
                    account_id=account.id,
                    phone=ANA,
                    state="finished",
                    requested_at=now,
                    answered_at=now,
                    outcome="answered",
                    disposition="wrong_party",
                    right_party=False,  # as the workspace stores it (cartera.workspace.dispositions)
                ),
                ContactAttempt(
                    site="t",
                    account_id=account.id,
                    phone=ANA,
                    state="finished",
                    requested_at=now,
                    answered_at=now,
                    outcome="answered",
                    disposition="right_party_contact",
                    right_party=True,
                ),
                SmsRow(
                    site="t", account_id=None, phone=ANA, text="x", state="delivered", created_at=now, updated_at=now
                ),
            ]
        )
        add_activity(
            session,
            site="t",
            kind=ActivityKind.PROMISE_TO_PAY,
            at=now,
            account=account,
            amount=Decimal("100000"),
            due_date=date(2026, 11, 30),
        )
    decision, subject = node.explainer.explain(phone=None, account="BCO-1", channel=Channel.CALL, at=now, actor="t")
    history = subject.history
    assert sorted((c.channel, c.same_account, c.conversation) for c in history.contacts) == [
        (Channel.CALL, True, False),  # answered by the wrong person: no conversation
        (Channel.CALL, True, True),
        (Channel.SMS, False, False),  # to the same number, about no account
    ]
    assert history.last_conversation == now.timestamp()
    assert history.promise_due == date(2026, 11, 30)
    assert {Reason.FREQUENCY_CAP, Reason.PROMISE_TO_PAY_PENDING} <= set(decision.reasons)  # Ley 2300: once a day
    assert decision.next_allowed_at == datetime(2026, 12, 1, 7, 0, tzinfo=BOGOTA)


def test_counts_survive_a_restart(tmp_path: Path, open_node: Callable[..., Node]) -> None:
    path = site(tmp_path, extra=TWO_CALLS_A_DAY)
    first = open_node(path)
    first.creditor_sync().run_once()
    call(first)
    call(first)
    first.close()
    again = Node.open(path, "t", first.hooks)
    try:
        with pytest.raises(Denied) as denied:
            again.calls.place_call(phone=None, account="BCO-1", actor="test")
        assert denied.value.decision.rules == ("site.rules.1",)
        assert denied.value.decision.next_allowed_at == datetime(2026, 11, 24, 7, 0, tzinfo=BOGOTA)
    finally:
        again.close()


@pytest.mark.postgres
def test_two_nodes_on_one_postgres_store_share_the_count(
    tmp_path: Path, open_node: Callable[..., Node], postgres_url: str
) -> None:
    one_call = TWO_CALLS_A_DAY.replace("max = 2", "max = 1")
    path = site(tmp_path, extra=one_call, database=postgres_url)
    a, b = open_node(path), open_node(path)
    a.creditor_sync().run_once()
    placed: list[int] = []
    refused: list[Denied] = []
    start = threading.Barrier(2)

    def dial(node: Node) -> None:
        start.wait()
        try:
            placed.append(node.calls.place_call(phone=None, account="BCO-1", actor="test").attempt_id)
        except Denied as denied:
            refused.append(denied)

    threads = [threading.Thread(target=dial, args=(node,)) for node in (a, b)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert len(placed) == 1, "the account's row lock must let only one node pass the cap"
    assert [d.decision.reasons for d in refused] == [(Reason.FREQUENCY_CAP,)]
    assert a.calls.wait_for_call(placed[0], 10) or b.calls.wait_for_call(placed[0], 10)


def test_after_a_conversation_the_account_waits_for_the_law_not_for_a_poll(
    tmp_path: Path, open_node: Callable[..., Node]
) -> None:
    quiet = '\n[[sites.t.compliance.rules]]\nkind = "quiet_after_conversation"\nchannels = ["call"]\ndays = 3\n'
    path = site(tmp_path, extra=quiet, dialer="disposition_weights = { right_party_contact = 1 }")
    path.write_text(path.read_text().replace(f'"{ANA}" = "busy"', f'"{ANA}" = "answered"'))
    node = open_node(path)
    node.creditor_sync().run_once()
    call(node)  # Monday
    with node.db.session() as session:
        account = session.scalars(sa.select(Account)).one()
        # the campaign would retry a day later; the law lets it call again on the fourth day's window
        assert account.next_contact_at == datetime(2026, 11, 26, 7, 0, tzinfo=BOGOTA)
        assert session.scalar(sa.select(sa.func.count()).where(AuditEntry.action == "compliance.deny")) == 0


def test_the_creditors_address_gives_zone_region_and_law(tmp_path: Path, open_node: Callable[..., Node]) -> None:
    chile = '\n[sites.t.compliance.portfolios."BANCO/CHILE"]\nlaw_pack = "cl"\n'  # the site's say, not a row's
    path = site(tmp_path, extra=chile)
    path.write_text(path.read_text().replace('start = "07:00"', 'start = "08:00"'))  # within cl's hours too
    node = open_node(path)
    rows = [
        AssignmentRow(
            1,
            "BANCO",
            "CHILE",
            "CL-1",
            "Rosa Díaz",
            ("+56 2 2123 4567",),
            Decimal("1000"),
            "CLP",
            country="CL",
            region="cl-ap",
            timezone="America/Santiago",
        ),
        AssignmentRow(
            2,
            "BANCO",
            "CHILE",
            "CL-2",
            "Juan Soto",
            ("+56 2 2123 4568",),
            Decimal("1000"),
            "CLP",
            country="CL",
            timezone="Mars/Base",
        ),
    ]
    report = node.importer.import_batch(AssignmentBatch("api", "sha", rows), actor="test")
    assert report.new == 1
    assert report.quarantined == [
        RowError(2, "timezone", "time zone 'Mars/Base' is not an IANA name like 'America/Tijuana'")
    ]
    arica_holiday = datetime(2027, 6, 7, 10, 0, tzinfo=ZoneInfo("America/Santiago"))  # a Monday
    decision, subject = node.explainer.explain(
        phone=None, account="CL-1", channel=Channel.CALL, at=arica_holiday, actor="test"
    )
    assert (subject.region, subject.timezone, subject.country) == ("CL-AP", "America/Santiago", "CL")
    assert decision.pack == "cl"  # a Chilean portfolio, as the site configured it, gets Chile's law at a Colombian site
    assert decision.reasons == (Reason.PUBLIC_HOLIDAY,)


def test_explain_prints_the_rules_and_is_audited(tmp_path: Path) -> None:
    path = site(tmp_path)
    assert run_site(path, "import", str(tmp_path / "inbox" / "asignacion.csv")).returncode == 0
    saturday = run_site(path, "explain", "--account", "BCO-1", "--at", "2026-11-28T16:00")
    assert saturday.returncode == 0, saturday.stderr
    out = saturday.stdout
    assert "decision: DENIED" in out
    assert "DENY  co.ley2300.art3.horario (outside_contact_window)" in out
    assert "Ley 2300 de 2023, art. 3 (2023-07-10)" in out
    assert "next allowed: Mon 30 Nov 2026 07:00 America/Bogota" in out
    monday = run_site(path, "explain", "--phone", "300 123 4567", "--channel", "sms", "--at", "2026-11-30T10:00")
    assert "decision: ALLOWED" in monday.stdout
    assert run_site(path, "explain").returncode == 2
    with sqlite3.connect(tmp_path / "var" / "t.db") as db:
        rows = db.execute("select action, actor from audit_log where action like 'compliance.%'").fetchall()
        attempts = db.execute("select count(*) from contact_attempts").fetchone()
    assert rows == [("compliance.explain", f"os:{getpass.getuser()}")] * 2
    assert attempts == (0,)


def test_test_numbers_are_the_only_bypass_and_audited_as_such(tmp_path: Path, open_node: Callable[..., Node]) -> None:
    sunday_night = write_sites(tmp_path, start="2026-11-29T23:00:00-05:00")
    allow_list = f'test_numbers = ["{ANA}"]\n[sites.t.campaign]'
    sunday_night.write_text(sunday_night.read_text().replace("[sites.t.campaign]", allow_list))
    node = open_node(sunday_night)
    request = node.calls.place_call(phone="300 123 4567", account=None, actor="os:it")
    assert request.phone == ANA
    with pytest.raises(Denied):
        node.calls.place_call(phone="310 123 4567", account=None, actor="os:it")
    with node.db.session() as session:
        entries = session.execute(
            sa.select(AuditEntry.action, AuditEntry.subject).where(AuditEntry.action.like("compliance.%"))
        ).all()
    assert [tuple(e) for e in entries] == [
        ("compliance.test_number", f"call:{ANA}"),
        ("compliance.deny", "call:+573101234567"),
    ]
