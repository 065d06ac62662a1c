"""The debtor's requested hours (Ley 2300 art. 3) and phone line types (940 CMR 7.04(1)(f)): calendar cases on
the engine, then stored and set through ``run_site.py contact-prefs`` on a real store, audited."""

from __future__ import annotations

import getpass
import json
import sqlite3
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa

from cartera.contact.compliance import DebtorHours, PolicyError, Reason, validate
from cartera.contact.compliance.packs import WindowRule, week_hours
from cartera.contact.compliance.settings import ComplianceConfig
from cartera.core.models import Channel
from cartera.core.store.schema import Account, ContactAttempt
from cartera.node import Node
from tests.conftest import run_site, write_portfolio, write_sites
from tests.test_compliance import BOGOTA, CO_MOBILE, MEXICO, MX_CDMX, denied, gate, subject

ANA, ANA_WORK = CO_MOBILE, "+576015550123"


def asked(hours: dict[str, str], instrument: str | None = "grabación 2026-11-20 #4411") -> DebtorHours:
    return DebtorHours(tuple(hours.items()), week_hours(hours), instrument)


EVENINGS = {"mon-fri": "19:00-21:00", "sun": "10:00-12:00"}
MONDAY = datetime(2026, 11, 23, 0, 0, tzinfo=BOGOTA)


def test_colombia_a_request_in_an_instrument_replaces_the_law_hours() -> None:
    request = asked(EVENINGS)
    assert gate().evaluate(subject(requested_hours=request), MONDAY.replace(hour=20)).allowed
    assert gate().evaluate(subject(requested_hours=request), datetime(2026, 11, 29, 11, 0, tzinfo=BOGOTA)).allowed
    decision = gate().evaluate(subject(requested_hours=request), MONDAY.replace(hour=10))
    denied(decision, Reason.OUTSIDE_REQUESTED_HOURS, until=MONDAY.replace(hour=19))
    assert decision.rules == ("co.ley2300.art3.horario",)
    # public holidays stay closed: Tuesday 8 December 2026 (Immaculate Conception)
    holiday = gate().evaluate(subject(requested_hours=request), datetime(2026, 12, 8, 20, 0, tzinfo=BOGOTA))
    denied(holiday, Reason.PUBLIC_HOLIDAY, until=datetime(2026, 12, 9, 19, 0, tzinfo=BOGOTA))


def test_colombia_a_request_without_instrument_only_narrows() -> None:
    request = asked(EVENINGS, instrument=None)
    evening = gate().evaluate(subject(requested_hours=request), MONDAY.replace(hour=20))
    denied(evening, Reason.OUTSIDE_CONTACT_WINDOW, until=None)  # the law's hours and the debtor's never meet
    narrow = asked({"mon-fri": "09:00-12:00"}, instrument=None)
    afternoon = gate().evaluate(subject(requested_hours=narrow), MONDAY.replace(hour=14))
    denied(afternoon, Reason.OUTSIDE_REQUESTED_HOURS, until=MONDAY.replace(hour=9) + timedelta(days=1))
    assert afternoon.rules == ("debtor.requested_hours",)
    assert gate().evaluate(subject(requested_hours=narrow), MONDAY.replace(hour=10)).allowed


def test_elsewhere_a_request_narrows_even_with_an_instrument() -> None:
    wide = asked({"mon-sun": "05:00-23:59"})
    night = datetime(2026, 11, 23, 22, 30, tzinfo=MEXICO)
    denied(
        gate("mx").evaluate(subject(MX_CDMX, requested_hours=wide), night),
        Reason.OUTSIDE_CONTACT_WINDOW,
        until=datetime(2026, 11, 24, 7, 0, tzinfo=MEXICO),
    )
    narrow = asked({"sat": "10:00-11:00"})
    monday = gate("mx").evaluate(subject(MX_CDMX, channel=Channel.SMS, requested_hours=narrow), night)
    assert monday.rules == ("mx.condusef.horario", "debtor.requested_hours")
    assert monday.next_allowed_at == datetime(2026, 11, 28, 10, 0, tzinfo=MEXICO)


def test_a_site_window_still_holds_a_widened_request() -> None:
    site = WindowRule(kind="window", hours={"mon-fri": "08:00-18:00"})
    decision = gate(local=[("site.contact_window", site)]).evaluate(
        subject(requested_hours=asked(EVENINGS)), MONDAY.replace(hour=20)
    )
    assert decision.rules == ("site.contact_window",)


def test_a_site_cannot_let_the_debtor_widen_its_rules() -> None:
    rule = {"kind": "window", "hours": {"mon-sun": "07:00-19:00"}, "debtor_request": "replace"}
    config = ComplianceConfig.model_validate({"authorised_channels": ["call"], "rules": [rule]})
    with pytest.raises(PolicyError, match="only a law pack may let the debtor's request replace hours"):
        validate(config, "CO")


# --- on a store, through the command line ----------------------------------------------------------------


def prefs_site(tmp_path: Path, compliance: str = "") -> Path:
    path = write_sites(tmp_path)
    text = path.read_text()
    window = 'contact_window = { start = "07:00", end = "19:00", days = ["mon", "tue", "wed", "thu", "fri"] }'
    path.write_text(text.replace(window, compliance))
    # international numbers: a site held to a foreign law pack reads national ones in that pack's country
    write_portfolio(tmp_path / "inbox", ["BCO-1;Ana Gómez;+57 300 123 4567;+57 601 555 0123;1.250.000,00;COP"])
    assert run_site(path, "import", str(tmp_path / "inbox" / "asignacion.csv")).returncode == 0
    return path


def audited(tmp_path: Path, action: str) -> list[tuple[str, dict[str, object]]]:
    with sqlite3.connect(tmp_path / "var" / "t.db") as db:
        rows = db.execute("select actor, details from audit_log where action = ? order by id", (action,)).fetchall()
    return [(actor, json.loads(details)) for actor, details in rows]


def test_requested_hours_are_stored_audited_and_honoured(tmp_path: Path) -> None:
    path = prefs_site(tmp_path)
    hours = ["--hours", "mon-fri=19:00-21:00", "--hours", "sun=10:00-12:00"]
    done = run_site(path, "contact-prefs", "hours", "--account", "BCO-1", *hours, "--instrument", "grabación #4411")
    assert done.returncode == 0, done.stderr
    assert "replaces the law's hours (not its holidays): co.ley2300.art3.horario (Ley 2300 de 2023, art. 3)" in (
        done.stdout
    )
    evening = run_site(path, "explain", "--account", "BCO-1", "--at", "2026-11-30T20:00")
    assert "decision: ALLOWED" in evening.stdout, evening.stdout
    assert "debtor's requested hours: mon-fri 19:00-21:00, sun 10:00-12:00 (instrument: grabación #4411)" in (
        evening.stdout
    )
    morning = run_site(path, "explain", "--account", "BCO-1", "--at", "2026-11-30T10:00")
    assert "DENY  co.ley2300.art3.horario (outside_requested_hours)" in morning.stdout
    assert "next allowed: Mon 30 Nov 2026 19:00 America/Bogota" in morning.stdout

    plain = run_site(path, "contact-prefs", "hours", "--account", "BCO-1", "--hours", "mon-fri=19:00-21:00")
    assert "only narrows the law's hours; hours on mon 19:00-21:00 are looser (the law: 07:00-19:00)" in plain.stdout
    assert "record the request's --instrument" in plain.stdout
    evening = run_site(path, "explain", "--account", "BCO-1", "--at", "2026-11-30T20:00")
    assert "DENY  co.ley2300.art3.horario (outside_contact_window)" in evening.stdout
    assert "DENY  debtor.requested_hours (outside_requested_hours)" not in evening.stdout

    assert run_site(path, "contact-prefs", "hours", "--account", "BCO-1", "--clear").returncode == 0
    shown = run_site(path, "contact-prefs", "show", "--account", "BCO-1")
    assert "BCO-1: requested hours none" in shown.stdout
    bad = run_site(path, "contact-prefs", "hours", "--account", "BCO-1", "--hours", "mon-fri=19:00-18:00")
    assert bad.returncode == 2
    assert "--hours: " in bad.stderr
    user = f"os:{getpass.getuser()}"
    entries = audited(tmp_path, "compliance.contact_hours")
    assert [actor for actor, _ in entries] == [user] * 3
    assert entries[0][1]["before"] is None
    assert entries[1][1]["after"] == "mon-fri 19:00-21:00 (no instrument on file)"
    assert entries[2][1]["after"] is None
    decisions = audited(tmp_path, "compliance.explain")  # each decision names the request it was held to
    assert decisions[0][1]["requested_hours"] == "mon-fri 19:00-21:00, sun 10:00-12:00 (instrument: grabación #4411)"


MA = 'law_pack = "us-ma"'


def two_calls_ten_days_ago(node: Node, phone: str) -> datetime:
    now = datetime(2026, 11, 23, 10, 0, tzinfo=BOGOTA)
    with node.db.session() as session:
        account = session.scalars(sa.select(Account)).one()
        for day in (10, 11):
            at = now - timedelta(days=day)
            session.add(ContactAttempt(site="t", account_id=account.id, phone=phone, state="finished", requested_at=at))
    return now


def test_line_types_decide_which_massachusetts_cap_counts(tmp_path: Path, open_node: Callable[..., Node]) -> None:
    path = prefs_site(tmp_path, MA)
    node = open_node(path)
    now = two_calls_ten_days_ago(node, ANA)

    def decide(phone: str) -> tuple[str, ...]:
        decision, _ = node.explainer.explain(phone=phone, account="BCO-1", channel=Channel.CALL, at=now, actor="t")
        return decision.rules

    assert decide(ANA) == ("ma.940cmr.7_04_1_f.other",)  # unknown: two in 30 days already
    assert decide(ANA_WORK) == ("ma.940cmr.7_04_1_f.other",)  # calls to a number of unknown type count for it too
    personal = run_site(
        path, "contact-prefs", "line", "--account", "BCO-1", "--phone", "+57 300 123 4567", "--type", "personal"
    )
    assert personal.returncode == 0, personal.stderr
    assert decide(ANA) == ()  # a personal number: two a week, and the last week is clear
    assert decide(ANA_WORK) == ()  # the personal number's calls do not count for the other
    done = run_site(
        path, "contact-prefs", "line", "--account", "BCO-1", "--phone", "+57 601 555 0123", "--type", "work"
    )
    assert done.stdout.strip() == f"BCO-1: {ANA_WORK} is work"
    shown = run_site(path, "contact-prefs", "show", "--account", "BCO-1").stdout
    assert f"{ANA}: personal" in shown
    assert f"{ANA_WORK}: work" in shown
    other = run_site(
        path, "contact-prefs", "line", "--account", "BCO-1", "--phone", "+57 310 000 0000", "--type", "work"
    )
    assert other.returncode == 2
    assert "is not a number of the debtor of account 'BCO-1'" in other.stderr
    unknown = run_site(
        path, "contact-prefs", "line", "--account", "BCO-1", "--phone", "+57 300 123 4567", "--type", "unknown"
    )
    assert unknown.returncode == 0, unknown.stderr
    assert decide(ANA) == ("ma.940cmr.7_04_1_f.other",)
    entries = audited(tmp_path, "compliance.line_type")
    assert len(entries) == 3
    assert (entries[2][1]["before"], entries[2][1]["after"]) == ("personal", "unknown")


def test_a_capped_line_does_not_hold_back_the_debtors_other_line(
    tmp_path: Path, open_node: Callable[..., Node]
) -> None:
    path = prefs_site(tmp_path, MA)
    for phone, kind in (("+57 300 123 4567", "work"), ("+57 601 555 0123", "personal")):
        done = run_site(path, "contact-prefs", "line", "--account", "BCO-1", "--phone", phone, "--type", kind)
        assert done.returncode == 0, done.stderr
    node = open_node(path)
    now = two_calls_ten_days_ago(node, ANA)  # the work line's two calls in 30 days are used up
    with node.db.session() as session:
        account = session.scalars(sa.select(Account)).one()
        for day in (20, 21, 22):  # tried more often, but not in the last seven days
            at = now - timedelta(days=day)
            session.add(
                ContactAttempt(site="t", account_id=account.id, phone=ANA_WORK, state="finished", requested_at=at)
            )
    decision, picked = node.explainer.explain(phone=None, account="BCO-1", channel=Channel.CALL, at=now, actor="t")
    assert picked.phone == ANA_WORK
    assert decision.allowed, decision.rules


@pytest.mark.abuse
@pytest.mark.parametrize(
    ("instrument", "why"),
    [("carta\x1b]0;pwned\x07\x1b[2J", "control character"), ("carta \u202eX", "bidi"), ("x" * 513, "513 characters")],
)
def test_an_instrument_no_store_or_terminal_should_hold_is_refused(tmp_path: Path, instrument: str, why: str) -> None:
    """Round 21 C-F3: terminal escapes were stored and printed back to whoever showed the account later; over 512
    characters PostgreSQL answered a raw SQL error while SQLite kept it all. Refused alike, before anything is
    stored."""
    path = prefs_site(tmp_path)
    hours = ("contact-prefs", "hours", "--account", "BCO-1", "--hours", "mon-fri=19:00-21:00")
    refused = run_site(path, *hours, "--instrument", instrument)
    assert refused.returncode == 2, refused.stderr
    assert "error: instrument: " in refused.stderr
    assert why in refused.stderr
    assert "\x1b" not in refused.stdout + refused.stderr
    assert "BCO-1: requested hours none" in run_site(path, "contact-prefs", "show", "--account", "BCO-1").stdout
    assert run_site(path, *hours, "--instrument", "x" * 512).returncode == 0
