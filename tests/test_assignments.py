"""Assignment semantics on a real store: new, updated, withdrawn, payments, re-delivery, quarantine."""

from __future__ import annotations

import hashlib
import sys
import unicodedata
from collections.abc import Callable, Iterator
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select

from cartera.contact.compliance import history as contact_history
from cartera.contact.phones import InvalidPhone, normalize
from cartera.contact.targets import Denied
from cartera.core.adapters import CrmSync
from cartera.core.clock import SimulatedClock
from cartera.core.control_characters import control_problem, escape_controls
from cartera.core.hooks import Hooks
from cartera.core.models import AssignmentAction, AssignmentBatch, AssignmentRow, CallOutcome, FileRejected, RowError
from cartera.core.store.database import Database
from cartera.core.store.schema import (
    Account,
    ActivityRow,
    AuditEntry,
    ContactAttempt,
    Debtor,
    Phone,
    QuarantinedRow,
    ReportedPayment,
)
from cartera.core.testing.context import CapturingContext
from cartera.node import Node
from cartera.plugins.crm_sync.csv_dir.config import CsvDirConfig
from cartera.plugins.crm_sync.csv_dir.plugin import CsvDirSync
from cartera.portfolio.export import ActivityExporter
from cartera.portfolio.files.phones import PhoneNormalizer
from cartera.portfolio.importer import CHUNK_ROWS, AssignmentImporter
from tests.conftest import write_portfolio, write_sites
from tests.plugins.crm_sync.test_csv_dir import exported_rows

NOW = datetime(2026, 3, 2, 13, 30, tzinfo=UTC)


def row(line: int, ref: str, *phones: str, balance: str = "1000", **extra: Any) -> AssignmentRow:
    fields: dict[str, Any] = {"debtor_name": f"Deudor {ref}", "currency": "COP"} | extra
    return AssignmentRow(line, "BCO", "TARJETAS", ref, phones=phones, balance=Decimal(balance), **fields)


def pay(line: int, ref: str, amount: str, **extra: Any) -> AssignmentRow:
    return row(line, ref, balance="0", action=AssignmentAction.PAYMENT, payment_amount=Decimal(amount), **extra)


def batch(name: str, *items: AssignmentRow | RowError) -> AssignmentBatch:
    return AssignmentBatch(name, hashlib.sha256(repr(items).encode()).hexdigest(), items)


def database(url: str) -> Database:
    db = Database(url)
    db.migrate()
    return db


@pytest.fixture
def db(tmp_path: Path) -> Iterator[Database]:
    store = database(f"sqlite:///{tmp_path / 'store.db'}")
    yield store
    store.dispose()


@pytest.fixture
def importer(db: Database, hooks: Hooks) -> AssignmentImporter:
    return AssignmentImporter("t", "CO", db, SimulatedClock(NOW, 1.0), hooks)


def accounts(db: Database) -> dict[str, tuple[Decimal, str, list[str]]]:
    with db.session() as session:
        found = session.scalars(select(Account).order_by(Account.ref)).all()
        return {a.ref: (a.balance, a.status, [p.e164 for p in a.debtor.phones]) for a in found}


def test_new_update_unchanged_withdraw_and_payment(importer: AssignmentImporter, db: Database) -> None:
    first = importer.import_batch(
        batch("m1", row(2, "A", "300 123 4567", "601 5550123"), row(3, "B", "3101234567", balance="500")), "t"
    )
    assert (first.new, first.updated, first.unchanged) == (2, 0, 0)
    second = importer.import_batch(
        batch(
            "m2",
            row(2, "A", "300 123 4567", "601 5550123"),
            row(3, "B", "3151234567", "3101234567", balance="450,5".replace(",", ".")),
            row(4, "C", "+52 55 5512 3456"),
            pay(5, "A", "400", paid_on=date(2026, 2, 27)),
            row(6, "B", balance="0", action=AssignmentAction.WITHDRAW),
        ),
        "t",
    )
    assert second.counts() == {
        "new": 1,
        "updated": 1,
        "unchanged": 1,
        "withdrawn": 1,
        "payments": 1,
        "quarantined": 0,
    }
    assert accounts(db) == {
        "A": (Decimal("600.00"), "active", ["+573001234567", "+576015550123"]),
        "B": (Decimal("450.50"), "withdrawn", ["+573151234567", "+573101234567"]),
        "C": (Decimal("1000.00"), "active", ["+525555123456"]),
    }


def test_redelivery_changes_nothing_and_reports_the_quarantine_again(
    importer: AssignmentImporter, db: Database
) -> None:
    delivery = batch("m1", row(2, "A", "3001234567"), row(3, "B", "12-AB"), RowError(4, "balance", "bad"))
    first = importer.import_batch(delivery, "t")
    again = importer.import_batch(delivery, "t")
    assert again.already_imported
    assert again.quarantined == first.quarantined
    assert [(e.line, e.field) for e in first.quarantined] == [(3, "phone1"), (4, "balance")]
    with db.session() as session:
        assert session.scalar(select(func.count()).select_from(QuarantinedRow)) == 2
        assert session.scalar(select(func.count()).select_from(Account)) == 1


def test_same_payment_in_another_file_is_applied_once(importer: AssignmentImporter, db: Database) -> None:
    importer.import_batch(batch("m1", row(2, "A", "3001234567", balance="1000")), "t")
    by_ref = pay(2, "A", "100", payment_ref="R-1")
    by_day = pay(3, "A", "50", paid_on=date(2026, 3, 1))
    anonymous = pay(4, "A", "10")
    importer.import_batch(batch("m2", by_ref, by_day, anonymous), "t")
    report = importer.import_batch(
        batch("m3", by_ref, by_day, anonymous, pay(5, "A", "50", paid_on=date(2026, 3, 2))), "t"
    )
    assert (report.payments, report.unchanged) == (2, 2)
    assert accounts(db)["A"][0] == Decimal("780.00")  # 1000 - 100 - 50 - 10, then - 10 (no key) - 50
    with db.session() as session:
        assert session.scalar(select(func.count()).select_from(ReportedPayment)) == 5
        kinds = session.scalars(select(ActivityRow.kind)).all()
    assert kinds == ["payment"] * 5


def test_two_installments_of_one_day_and_amount_in_one_file_are_two_payments(
    importer: AssignmentImporter, db: Database
) -> None:
    """Round 21 A-F14: without a reference, the second of two payments of 50,000 on one day was taken for the
    first reported again and dropped silently, leaving the balance 50,000 too high. Within a file the n-th such row
    is the n-th payment; a later (cumulative) file reporting them again changes nothing."""
    importer.import_batch(batch("m1", row(2, "A", "3001234567", balance="200000")), "t")
    day = date(2026, 3, 1)
    both = importer.import_batch(batch("m2", pay(2, "A", "50000", paid_on=day), pay(3, "A", "50000", paid_on=day)), "t")
    assert both.payments == 2
    assert accounts(db)["A"][0] == Decimal("100000.00")
    again = batch("m3", pay(2, "A", "50000", paid_on=day), pay(3, "A", "50000", paid_on=day), pay(4, "A", "1"))
    assert (importer.import_batch(again, "t").payments, accounts(db)["A"][0]) == (1, Decimal("99999.00"))


def test_withdrawn_twice_and_unknown_accounts(importer: AssignmentImporter) -> None:
    importer.import_batch(batch("m1", row(2, "A", "3001234567")), "t")
    withdraw = row(2, "A", balance="0", action=AssignmentAction.WITHDRAW)
    assert importer.import_batch(batch("m2", withdraw), "t").withdrawn == 1
    report = importer.import_batch(
        batch(
            "m3",
            withdraw,
            row(3, "Z", balance="0", action=AssignmentAction.WITHDRAW),
            pay(4, "Z", "5"),
            row(5, "Y", "3001234567", action=AssignmentAction.UPDATE),
        ),
        "t",
    )
    assert (report.withdrawn, report.unchanged) == (0, 1)
    assert [(e.line, e.reason) for e in report.quarantined] == [
        (3, "withdrawal of unknown account 'Z'"),
        (4, "payment for unknown account 'Z'"),
        (5, "update of unknown account 'Y'"),
    ]


@pytest.mark.abuse
def test_a_payment_dated_after_the_day_of_import_is_quarantined(importer: AssignmentImporter, db: Database) -> None:
    importer.import_batch(batch("m1", row(2, "A", "3001234567", balance="1000")), "t")
    report = importer.import_batch(
        batch("m2", pay(2, "A", "5", paid_on=date(2062, 11, 23)), pay(3, "A", "7", paid_on=NOW.date())), "t"
    )
    assert report.payments == 1
    assert [(e.line, e.field, e.reason) for e in report.quarantined] == [
        (2, "paid_on", "payment dated 2062-11-23, after the day of import 2026-03-02")
    ]
    assert accounts(db)["A"][0] == Decimal("993.00")
    with db.session() as session:
        assert session.scalars(select(ReportedPayment.paid_on)).all() == [NOW.date()]


def test_kept_phones_keep_their_flags(importer: AssignmentImporter, db: Database) -> None:
    importer.import_batch(batch("m1", row(2, "A", "3001234567", "3101234567")), "t")
    with db.session() as session:
        session.scalars(select(Phone).where(Phone.e164 == "+573001234567")).one().do_not_call = True
    importer.import_batch(batch("m2", row(2, "A", "3151234567", "3001234567")), "t")
    with db.session() as session:
        phones = session.execute(select(Phone.e164, Phone.position, Phone.do_not_call).order_by(Phone.position)).all()
    assert [tuple(p) for p in phones] == [("+573151234567", 0, False), ("+573001234567", 1, True)]


HOSTILE_TEXT = [
    *("Ana\x00Nul", "\x00", "Ana\x1b[31mRoja", "Ana\u202eGómez", "\x1b]52;c;aGk=\x07", "Ana\x9bGómez"),
    *('Ana\u2028{"gateway_id": "forged"}', "Ana\u2029Gómez", "Ana\u200fGómez", "Ana\u061cGómez"),
    # invisible format characters (Unicode category Cf): zero-width space, word joiner, BOM, a tag, soft hyphen
    *("Ana\u200bGómez", "Ana\u2060Gómez", "Ana\ufeffGómez", "Ana\U000e0041Gómez", "Ana\u00adGómez", "\u200b"),
    # ZWJ/ZWNJ where no script needs them: beside a Latin letter, or at either end
    *("Ana\u200dGómez", "Ana\u200cGómez", "\u200dAna", "\u0645\u062d\u0645\u062f\u200c", "\u0645\u200c\u200d\u0631"),
]
#: Names whose scripts need ZWNJ or ZWJ inside words: Persian Mohammadreza (ZWNJ), Sinhala Sri (ZWJ).
NEEDED_JOINERS = ["\u0645\u062d\u0645\u062f\u200c\u0631\u0636\u0627", "\u0dc1\u0dca\u200d\u0dbb\u0dd3 Perera"]


@pytest.mark.abuse
@pytest.mark.parametrize("hostile", HOSTILE_TEXT)
def test_control_characters_in_free_text_quarantine_the_row(
    hostile: str, importer: AssignmentImporter, db: Database
) -> None:
    report = importer.import_batch(
        batch(
            "m1",
            row(2, "A", "3001234567", debtor_name=hostile),
            row(3, "B", "3101234567"),
            pay(4, "B", "10", payment_ref=hostile),
        ),
        "t",
    )
    assert [(e.line, e.field) for e in report.quarantined] == [(2, "debtor_name"), (4, "payment_ref")]
    for error in report.quarantined:
        assert repr(hostile) in error.reason
        assert error.reason.isprintable()
    assert set(accounts(db)) == {"B"}


def test_joiners_that_scripts_need_load(importer: AssignmentImporter, db: Database) -> None:
    report = importer.import_batch(
        batch(
            "m1",
            *(
                row(line, f"N{line}", f"300123456{line}", debtor_name=name)
                for line, name in enumerate(NEEDED_JOINERS, 2)
            ),
        ),
        "t",
    )
    assert (report.new, report.quarantined) == (len(NEEDED_JOINERS), [])
    with db.session() as session:
        assert sorted(session.scalars(select(Debtor.name))) == sorted(NEEDED_JOINERS)


@pytest.mark.abuse
def test_every_format_character_but_the_joiners_is_refused() -> None:
    """The rule follows Unicode's Cf category (what this Python's Unicode database says), not a list of examples."""
    formats = [chr(c) for c in range(sys.maxunicode + 1) if unicodedata.category(chr(c)) == "Cf"]
    assert [char for char in formats if control_problem(f"\u0645{char}\u0631") is None] == ["\u200c", "\u200d"]
    assert all(control_problem(f"Ana{char}Gómez") for char in formats)
    assert escape_controls("Ana\u200bGómez\U000e0041") == "Ana\\u200bGómez\\U000e0041"


def test_rejected_file_loads_nothing(importer: AssignmentImporter, db: Database) -> None:
    def items() -> Iterator[AssignmentRow]:
        yield from (row(line, f"R{line}", "3001234567") for line in range(2, CHUNK_ROWS + 10))
        raise FileRejected("m1", "line 2010: byte 0x81 at column 3 is not valid UTF-8 or Windows-1252")

    with pytest.raises(FileRejected):
        importer.import_batch(AssignmentBatch("m1", "f" * 64, items()), "t")
    assert accounts(db) == {}


def test_payments_are_exported(importer: AssignmentImporter, db: Database, tmp_path: Path) -> None:
    importer.import_batch(batch("m1", row(2, "A", "3001234567")), "t")
    importer.import_batch(batch("m2", pay(2, "A", "250", payment_ref="R-9")), "t")
    config = CsvDirConfig.model_validate(
        {"inbox": tmp_path / "inbox", "outbox": tmp_path / "outbox", "creditor": "BCO", "portfolio": "TARJETAS"}
    )
    sync = CsvDirSync(config, CapturingContext(tmp_path / "data", clock=SimulatedClock(NOW, 1.0)))
    sync.start()
    assert ActivityExporter("t", db, sync).run_once() == 1
    assert [(r["tipo"], r["cuenta"], r["monto"], r["resultado"]) for r in exported_rows(tmp_path / "outbox")] == [
        ("payment", "A", "250,00", "R-9")
    ]


@pytest.mark.postgres
def test_import_on_postgresql(postgres_url: str, hooks: Hooks) -> None:
    store = database(postgres_url)
    try:
        importer = AssignmentImporter("t", "CO", store, SimulatedClock(NOW, 1.0), hooks)
        rows = [row(line, f"R{line}", f"300{line:07d}") for line in range(2, CHUNK_ROWS + 100)]
        first = importer.import_batch(batch("m1", *rows, pay(3000, "R2", "10", payment_ref="P")), "t")
        assert (first.new, first.payments) == (len(rows), 1)
        again = importer.import_batch(batch("m2", *rows[1:6], row(9, "R3", "3009999999")), "t")
        assert (again.unchanged, again.updated) == (5, 1)
        assert accounts(store)["R2"][0] == Decimal("990.00")
    finally:
        store.dispose()


@settings(max_examples=300, deadline=None)
@given(
    country=st.sampled_from(["CO", "MX", "CL", "AR", "US", "ES", "PE", "DE", "BR", "GB"]),
    digits=st.text("0123456789", min_size=6, max_size=13) | st.builds(str, st.integers(3000000000, 3509999999)),
    separator=st.sampled_from(["", " ", "-", "."]),
)
def test_fast_phone_path_agrees_with_phonenumbers(country: str, digits: str, separator: str) -> None:
    raw = separator.join([digits[:3], digits[3:6], digits[6:]])
    assert_fast_path_agrees(raw, country)


def test_fast_phone_path_leaves_a_leading_country_code_to_phonenumbers() -> None:
    assert_fast_path_agrees("49608377835", "DE")  # parse strips the 49: +49 608377835


def assert_fast_path_agrees(raw: str, country: str) -> None:
    try:
        expected: str | None = normalize(raw, country)
    except InvalidPhone:
        expected = None
    try:
        got: str | None = PhoneNormalizer(country)(raw)
    except InvalidPhone:
        got = None
    assert got == expected


def test_withdrawal_stops_contact_at_once(tmp_path: Path, open_node: Callable[..., Node]) -> None:
    node = open_node(write_sites(tmp_path))
    crm = node.adapter("crm_sync", CrmSync)
    assigned = write_portfolio(tmp_path / "inbox", ["BCO-1;Ana Gómez;300 123 4567;;1.250.000,00;COP"])
    node.importer.import_batch(crm.read_file(assigned), "t")
    withdrawal = tmp_path / "retiros.csv"
    withdrawal.write_text("cuenta;nombre;telefono1;saldo;accion\nBCO-1;;;;retirar\n", encoding="utf-8")
    assert node.importer.import_batch(crm.read_file(withdrawal), "t").withdrawn == 1
    with node.db.session() as session:
        account = session.scalars(select(Account)).one()
        assert (account.status, account.next_contact_at) == ("withdrawn", None)
    with pytest.raises(Denied) as denied:
        node.calls.place_call(phone=None, account="BCO-1", actor="test")
    assert "account_withdrawn" in str(denied.value)


def ringing_site(tmp_path: Path) -> Path:
    """Site ``t`` whose simulated calls ring 6000 s of its clock (10 s real) before anything else happens."""
    path = write_sites(tmp_path)
    path.write_text(path.read_text().replace("ring_seconds = [1, 10]", "ring_seconds = [6000, 6000]"))
    write_portfolio(
        tmp_path / "inbox",
        [
            "BCO-1;Ana Gómez;300 123 4567;;1.250.000,00;COP",
            "BCO-2;Luis Pérez;310 123 4567;;500.000,00;COP",
            "BCO-3;Marta Ruiz;320 123 4567;;800.000,00;COP",
        ],
    )
    return path


def cancels(node: Node) -> list[tuple[str, str, dict[str, Any]]]:
    with node.db.session() as session:
        entries = session.scalars(select(AuditEntry).where(AuditEntry.action == "call.cancel").order_by(AuditEntry.id))
        return [(entry.actor, entry.subject, entry.details) for entry in entries]


def test_withdrawal_cancels_the_ringing_call_at_the_next_tick(tmp_path: Path, open_node: Callable[..., Node]) -> None:
    node = open_node(ringing_site(tmp_path))
    node.creditor_sync().run_once()
    withdrawn, active = (node.calls.place_call(phone=None, account=ref, actor="t") for ref in ("BCO-1", "BCO-2"))
    campaign = node._campaign()
    assert campaign is not None
    campaign.tick()  # BCO-3 is called; nothing to cancel yet
    assert cancels(node) == []
    crm = node.adapter("crm_sync", CrmSync)
    withdrawal = tmp_path / "retiros.csv"
    withdrawal.write_text("cuenta;nombre;telefono1;saldo;accion\nBCO-1;;;;retirar\n", encoding="utf-8")
    assert node.importer.import_batch(crm.read_file(withdrawal), "os:operator").withdrawn == 1  # as `import FILE`

    assert campaign.tick() == 0
    result = node.calls.wait_for_call(withdrawn.attempt_id, timeout=5)
    assert result is not None
    assert (result.outcome, result.answered_at) == (CallOutcome.CANCELLED, None)
    assert node.calls.wait_for_call(active.attempt_id, timeout=0.5) is None, "the active account's call was cut"
    assert cancels(node) == [
        (
            "campaign",
            "call:+573001234567",
            {"account": "BCO-1", "account_status": "withdrawn", "attempt": withdrawn.attempt_id, "cancelled": True},
        )
    ]
    campaign.tick()
    assert len(cancels(node)) == 1, "a call is asked to cancel once"
    with node.db.session() as session:
        attempt = session.get_one(ContactAttempt, withdrawn.attempt_id)
        assert (attempt.state, attempt.outcome) == ("finished", "cancelled")
        assert attempt.account is not None
        assert (attempt.account.status, attempt.account.next_contact_at) == ("withdrawn", None)
        outcomes = session.scalars(select(ActivityRow.outcome).where(ActivityRow.account_id == attempt.account_id))
        assert list(outcomes) == ["cancelled"]  # what the creditor's export says of the call
        history = contact_history.load(
            session, account=attempt.account, phone=attempt.phone, at=node.clock.now(), horizon=86400
        )
        assert len(history.contacts) == 1, "the cancelled call rang: it counts towards the contact limits"
        assert session.get_one(ContactAttempt, active.attempt_id).state == "placing"


def test_the_sync_job_cancels_calls_of_accounts_it_withdrew_or_saw_paid(
    tmp_path: Path, open_node: Callable[..., Node]
) -> None:
    node = open_node(ringing_site(tmp_path))
    node.creditor_sync().run_once()
    refs = ("BCO-1", "BCO-2", "BCO-3")
    calls = {ref: node.calls.place_call(phone=None, account=ref, actor="t") for ref in refs}
    (tmp_path / "inbox" / "novedades.csv").write_text(
        "cuenta;nombre;telefono1;saldo;accion\nBCO-1;;;;retirar\nBCO-2;;;500.000,00;pago\nBCO-3;;;1.000,00;pago\n",
        encoding="utf-8",
    )
    jobs = {job.id: job.run for job in node.jobs.scheduled(None)}
    jobs["creditor_sync"]()
    for ref in ("BCO-1", "BCO-2"):
        result = node.calls.wait_for_call(calls[ref].attempt_id, timeout=5)
        assert result is not None
        assert result.outcome is CallOutcome.CANCELLED
    assert node.calls.wait_for_call(calls["BCO-3"].attempt_id, timeout=0.5) is None, "BCO-3 is still active"
    assert [(actor, details["account"], details["account_status"]) for actor, _, details in cancels(node)] == [
        ("sync", "BCO-1", "withdrawn"),
        ("sync", "BCO-2", "paid"),
    ]
