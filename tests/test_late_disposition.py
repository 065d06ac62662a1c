"""An agent's (or its integration's) own disposition saved after the workspace recorded ``wrap_up_timeout`` or
``browser_closed`` for the call replaces that code, within ``late_disposition_minutes``: the promise is not lost;
a second one is a double submit."""

from __future__ import annotations

import csv
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa

from cartera.core.store.schema import ActivityRow, AuditEntry, ContactAttempt, DispositionRow, PromiseRow
from cartera.node import Node
from cartera.web.workspace_api import API_PREFIX
from cartera.workspace.errors import AlreadyDispositioned
from tests import test_agent_page
from tests.test_agent_page import INTEGRATION_TOKEN, Site, connect
from tests.test_workspace_dispositions import AGENT, Desk, one, open_desk

site = test_agent_page.site  # the running node's fixture

QUICK = "\n[sites.t.workspace]\nwrap_up_seconds = 0.01\ngone_seconds = 0.01\n"
#: the creditor's CSV export with the call's id
WITH_ATTEMPT = (
    '\n[sites.t.crm_sync.export.columns]\nseq = "seq"\nkind = "kind"\noutcome = "outcome"\nattempt = "attempt"\n'
)


def timed_out(desk: Desk) -> int:
    """A call its agent left: the sweep dispositions it ``wrap_up_timeout``; its attempt id."""
    attempt = desk.call()
    desk.node.clock.sleep(0.05)
    desk.node.workspace_service.sweep()
    with desk.node.db.reading() as session:
        assert session.scalars(sa.select(DispositionRow.code)).all() == ["wrap_up_timeout"]
    return attempt


def test_the_agents_late_disposition_replaces_the_timeout_code(tmp_path: Path, open_node: Callable[..., Node]) -> None:
    desk = open_desk(tmp_path, open_node, QUICK)
    attempt = timed_out(desk)
    saved = desk.post(attempt, "promise_to_pay", promise=one("1000", desk.today() + timedelta(days=3)))
    assert (saved.code, saved.agent, saved.promise_id is not None) == ("promise_to_pay", AGENT, True)
    with desk.node.db.reading() as session:
        assert session.execute(sa.select(DispositionRow.code, DispositionRow.agent)).all() == [
            ("promise_to_pay", AGENT)
        ]
        called = session.get_one(ContactAttempt, attempt)
        assert (called.disposition, called.right_party) == ("promise_to_pay", True)
        assert session.scalars(sa.select(PromiseRow.state)).all() == ["pending"]
        exported = session.execute(
            sa.select(ActivityRow.kind, ActivityRow.outcome).where(ActivityRow.kind != "sms").order_by(ActivityRow.seq)
        ).all()
        superseded = session.scalars(
            sa.select(AuditEntry.details).where(AuditEntry.action == "call.disposition").order_by(AuditEntry.id)
        ).all()
    assert exported == [("call_attempt", "promise_to_pay"), ("promise_to_pay", "promise_to_pay")]
    assert [entry.get("superseded") for entry in superseded] == [None, "wrap_up_timeout"]
    with pytest.raises(AlreadyDispositioned) as again:  # a second real one is a double submit
        desk.post(attempt, "refused_to_pay")
    assert again.value.saved.code == "promise_to_pay"


def exported_calls(desk: Desk) -> list[tuple[str, str, str]]:
    """Runs the creditor sync; the (kind, outcome, attempt) of each row of every export file written so far."""
    desk.node.creditor_sync().run_once()
    rows = []
    for path in sorted((desk.tmp_path / "exports").glob("activities-*.csv")):
        with path.open(encoding="utf-8-sig", newline="") as file:
            rows += [(row["kind"], row["outcome"], row["attempt"]) for row in csv.DictReader(file, delimiter=";")]
    return [row for row in rows if row[0] != "sms"]


def test_a_late_disposition_before_the_export_leaves_one_activity_for_the_call(
    tmp_path: Path, open_node: Callable[..., Node]
) -> None:
    desk = open_desk(tmp_path, open_node, QUICK + WITH_ATTEMPT)
    attempt = timed_out(desk)
    desk.post(attempt, "promise_to_pay", promise=one("1000", desk.today() + timedelta(days=3)))
    call = str(attempt)
    assert exported_calls(desk) == [
        ("call_attempt", "promise_to_pay", call),
        ("promise_to_pay", "promise_to_pay", call),
    ]


def test_a_late_disposition_after_the_export_sends_a_correction_of_the_same_call(
    tmp_path: Path, open_node: Callable[..., Node]
) -> None:
    desk = open_desk(tmp_path, open_node, QUICK + WITH_ATTEMPT)
    attempt = timed_out(desk)
    call = str(attempt)
    assert exported_calls(desk) == [("call_attempt", "wrap_up_timeout", call)]
    desk.post(attempt, "right_party_contact")
    assert exported_calls(desk) == [
        ("call_attempt", "wrap_up_timeout", call),
        ("call_attempt", "right_party_contact", call),
    ]


def test_a_disposition_past_the_bound_leaves_the_timeout_code(tmp_path: Path, open_node: Callable[..., Node]) -> None:
    desk = open_desk(tmp_path, open_node, QUICK + "late_disposition_minutes = 0.001\n")
    attempt = timed_out(desk)
    desk.node.clock.sleep(0.1)
    with pytest.raises(AlreadyDispositioned) as refused:
        desk.post(attempt, "right_party_contact")
    assert refused.value.saved.code == "wrap_up_timeout"


def test_an_integrations_late_disposition_replaces_the_timeout_code_once(site: Site) -> None:
    attempt = site.calls.colombian
    connect(site, attempt)  # to ana's extension
    assert site.node.workspace_service.system_disposition("ana", attempt, "wrap_up_timeout") is not None
    token = {"Authorization": f"Bearer {INTEGRATION_TOKEN}"}
    body = {"agent": "ana", "attempt_id": attempt, "code": "right_party_contact"}
    with httpx.Client(base_url=f"{site.base}{API_PREFIX}", headers=token, timeout=10) as client:
        assert client.post("/right-party", json={"agent": "ana", "attempt_id": attempt}).status_code == 200
        late = client.post("/dispositions", json=body)
        again = client.post("/dispositions", json=body | {"code": "refused_to_pay"})
    assert (late.status_code, late.json()["code"]) == (201, "right_party_contact"), late.text
    assert (again.status_code, again.json()["field"]) == (409, "attempt")
