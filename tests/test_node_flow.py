"""A site node end to end, in process: import → gate → call → recording archived → fetched, with observers."""

from __future__ import annotations

import hashlib
import json
import wave
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

import pytest
import sqlalchemy as sa

from cartera.contact.targets import Denied
from cartera.core.adapters import Dialer
from cartera.core.hooks import load_plugins
from cartera.core.hookspecs import hookimpl
from cartera.core.models import (
    Activity,
    ActivityKind,
    CallOutcome,
    CallRequest,
    CallResult,
    DeliveryReport,
    StoredObject,
)
from cartera.core.store.schema import Account, AuditEntry, ContactAttempt
from cartera.node import Node
from cartera.recordings.access import SearchFilters
from tests.conftest import call_once_unanswered, write_portfolio, write_sites

ANA = "+573001234567"


class Observer:
    """Implements every observer hook and remembers what it saw."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, CallRequest, CallResult]] = []
        self.archived: list[tuple[str, int, StoredObject]] = []
        self.deliveries: list[tuple[str, int, DeliveryReport]] = []
        self.activities: list[Activity] = []

    @hookimpl
    def cartera_call_finished(self, site: str, request: CallRequest, result: CallResult) -> None:
        self.calls.append((site, request, result))

    @hookimpl
    def cartera_recording_archived(self, site: str, recording_id: int, stored: StoredObject) -> None:
        self.archived.append((site, recording_id, stored))

    @hookimpl
    def cartera_sms_delivery(self, site: str, message_id: int, report: DeliveryReport) -> None:
        self.deliveries.append((site, message_id, report))

    @hookimpl
    def cartera_activity_recorded(self, site: str, activity: Activity) -> None:
        self.activities.append(activity)


class BrokenObserver:
    @hookimpl
    def cartera_call_finished(self, site: str, request: CallRequest, result: CallResult) -> None:
        raise RuntimeError("observer bug")


def scripted_site(tmp_path: Path, start: str = "2026-11-23T09:00:00-05:00") -> Path:
    path = write_sites(tmp_path, start=start)
    text = path.read_text().replace("seed = 7", f'seed = 7\nscripted = {{ "{ANA}" = "answered" }}')
    path.write_text(text)
    write_portfolio(
        tmp_path / "inbox",
        [
            "BCO-1;Ana Gómez;300 123 4567;;1.250.000,00;COP",
            "BCO-2;Luis Pérez;12-AB;;500.000,00;COP",
            "BCO-3;Marta Ruiz;+52 55 1234 5678;;800.000,00;COP",
        ],
    )
    return path


def test_end_to_end_with_every_observer(tmp_path: Path, open_node: Callable[..., Node]) -> None:
    observer = Observer()
    node = open_node(
        scripted_site(tmp_path), with_hooks=load_plugins(entry_points=False, extra=[observer, BrokenObserver()])
    )

    sync = node.creditor_sync().run_once()
    assert [(r.new, [(q.line, q.field) for q in r.quarantined]) for r in sync.imports] == [(2, [(3, "phone1")])]
    assert node.creditor_sync().run_once().imports == []  # acknowledged: not fetched again

    # The text goes first: once the debtor is reached, Ley 2300 allows one channel a week.
    sms = node.texts.send_sms(phone=None, text="Recordatorio de pago", account="BCO-1", actor="os:tester")
    request = node.calls.place_call(phone=None, account="BCO-1", actor="os:tester")
    result = node.calls.wait_for_call(request.attempt_id, timeout=10)
    assert result is not None
    assert result.outcome is CallOutcome.ANSWERED
    assert request.variables["CARTERA_ACCOUNT"] == "BCO-1"
    # the broken observer raised, the good one still saw the call
    assert [(site, req.attempt_id) for site, req, _ in observer.calls] == [("t", request.attempt_id)]

    assert node.archiver is not None
    run = node.archiver.run_once()
    assert (run.archived, run.failed) == (1, 0)
    assert node.archiver.run_once().archived == 0  # nothing archived twice

    views = node.library.search(SearchFilters(account="BCO-1"), actor="os:tester")
    assert len(views) == 1
    view = views[0]
    assert (view.account, view.phone, view.state, view.agent) == ("BCO-1", ANA, "verified", result.agent)
    assert observer.archived[0][1] == view.id
    assert observer.archived[0][2].sha256_hex == view.sha256

    out = tmp_path / "fetched.wav"
    node.library.get(view.id, out, actor="os:tester")
    assert hashlib.sha256(out.read_bytes()).hexdigest() == view.sha256
    with wave.open(str(out)) as wav:
        assert wav.getframerate() == 8000
        assert wav.getnframes() / 8000 == pytest.approx(result.talk_seconds, abs=0.01)

    delivered = [message_id for _, message_id, _ in observer.deliveries]
    assert delivered == [sms.message_id]  # a promise confirmation the day of the call is refused (Ley 2300)

    kinds = [a.kind for a in observer.activities]
    assert kinds.count(ActivityKind.CALL_ATTEMPT) == 1
    assert kinds.count(ActivityKind.SMS) == 1
    assert all(a.creditor == "BANCO" and a.account_ref == "BCO-1" for a in observer.activities)

    with node.db.session() as session:
        actions = session.execute(sa.select(AuditEntry.action, AuditEntry.actor)).all()
    assert {("compliance.allow", "os:tester"), ("recordings.search", "os:tester"), ("recordings.get", "os:tester")} <= {
        tuple(row) for row in actions
    }


def test_a_second_report_of_the_same_call_changes_nothing(tmp_path: Path, open_node: Callable[..., Node]) -> None:
    observer = Observer()
    node = open_node(scripted_site(tmp_path), with_hooks=load_plugins(entry_points=False, extra=[observer]))
    node.creditor_sync().run_once()
    request = node.calls.place_call(phone=None, account="BCO-1", actor="test")
    result = node.calls.wait_for_call(request.attempt_id, timeout=10)
    assert result is not None
    node.calls.on_call_result(result)
    assert len(observer.calls) == 1
    assert [a.kind for a in observer.activities].count(ActivityKind.CALL_ATTEMPT) == 1


def test_gate_denial_is_audited_and_defers_the_account(tmp_path: Path, open_node: Callable[..., Node]) -> None:
    node = open_node(scripted_site(tmp_path, start="2026-11-23T19:30:00-05:00"))
    node.creditor_sync().run_once()
    with pytest.raises(Denied) as denied:
        node.calls.place_call(phone=None, account="BCO-1", actor="os:tester")
    assert denied.value.decision.next_allowed_at == datetime.fromisoformat("2026-11-24T07:00:00-05:00")
    with node.db.session() as session:
        assert session.scalar(sa.select(sa.func.count()).select_from(ContactAttempt)) == 0
        account = session.scalars(sa.select(Account).where(Account.ref == "BCO-1")).one()
        assert account.next_contact_at == denied.value.decision.next_allowed_at
        deny = session.scalars(sa.select(AuditEntry).where(AuditEntry.action == "compliance.deny")).one()
        assert deny.details["reasons"] == ["outside_contact_window"]


def test_campaign_tick_respects_dialer_capacity(tmp_path: Path, open_node: Callable[..., Node]) -> None:
    path = write_sites(tmp_path)
    write_portfolio(
        tmp_path / "inbox",
        [f"BCO-{i};Deudor {i};300 555 {i:04d};;100.000,00;COP" for i in range(1, 13)],
    )
    node = open_node(path)
    node.creditor_sync().run_once()
    campaign = node._campaign()
    assert campaign is not None
    dialer = node.adapter("dialer", Dialer)
    capacity = dialer.capacity()
    assert capacity == 6  # 4 agents x 1.5
    assert campaign.tick() == capacity
    with node.db.session() as session:
        attempts = session.scalars(sa.select(ContactAttempt)).all()
        assert len(attempts) == capacity
        assert len({a.account_id for a in attempts}) == capacity


def test_an_invalid_number_is_not_dialled_again(tmp_path: Path, open_node: Callable[..., Node]) -> None:
    path = write_sites(tmp_path)
    path.write_text(
        path.read_text().replace(
            "seed = 7", 'seed = 7\nscripted = { "+573001234567" = "invalid_number", "+573101234567" = "busy" }'
        )
    )
    write_portfolio(tmp_path / "inbox", ["BCO-1;Ana Gómez;300 123 4567;310 123 4567;1.000,00;COP"])
    node = open_node(path)
    node.creditor_sync().run_once()
    dialled = []
    for _ in range(3):
        request = node.calls.place_call(phone=None, account="BCO-1", actor="test")
        assert node.calls.wait_for_call(request.attempt_id, timeout=10) is not None
        dialled.append(request.phone)
    assert dialled == ["+573001234567", "+573101234567", "+573101234567"]


def test_an_unreached_debtor_gets_one_reminder_text(tmp_path: Path, open_node: Callable[..., Node]) -> None:
    row = "BCO-1;Ana Gómez;300 123 4567;;1.000,00;COP"
    campaign = call_once_unanswered(write_sites(tmp_path), open_node, row, ANA)
    assert campaign.tick() == 0
    assert campaign.tick() == 0
    lines = (tmp_path / "sms" / "outbox.jsonl").read_text(encoding="utf-8").splitlines()
    assert len(lines) == 1
    assert "BCO-1" in json.loads(lines[0])["text"]
