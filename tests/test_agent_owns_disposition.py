"""A call connected to an agent user's extension is dispositioned by that agent (its page, or an integration
posting for it): a disposition its dialer reports with the call's end is ignored (audited), never stored, so it
invents no promise for the creditor's export and does not refuse the agent's own save."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from decimal import Decimal
from pathlib import Path

import pytest
import sqlalchemy as sa

from cartera.core.models import CallOutcome, CallResult, Disposition, DispositionCode
from cartera.core.store.schema import ActivityRow, AuditEntry, DispositionRow, PromiseRow
from cartera.node import Node
from tests import test_agent_page
from tests.test_agent_page import Site, page_csrf, signed_in, stream
from tests.test_workspace_dispositions import AGENT, EXTENSION, Desk, open_desk
from tests.workspace_seed import uncalled_account

site = test_agent_page.site  # the running node's fixture


def report_promise(desk: Desk, attempt: int, seat: str) -> None:
    """The dialer's report of the call's end, connected to ``seat``, with a promise it says the debtor made."""
    now = desk.node.clock.now()
    promise = Disposition(DispositionCode.PROMISE_TO_PAY, Decimal("5000"), desk.today() + timedelta(days=4))
    desk.node.calls.on_call_result(
        CallResult(attempt, CallOutcome.ANSWERED, "16", now, now, now, agent=seat, disposition=promise)
    )


@pytest.mark.abuse
def test_a_dialers_disposition_of_an_agents_call_is_ignored_and_the_agent_saves_its_own(
    tmp_path: Path, open_node: Callable[..., Node]
) -> None:
    desk = open_desk(tmp_path, open_node)
    attempt = desk.call(ended=False)  # connected to ana.agente's extension
    report_promise(desk, attempt, EXTENSION)
    with desk.node.db.reading() as session:
        assert session.scalars(sa.select(DispositionRow)).all() == []
        assert session.scalars(sa.select(PromiseRow)).all() == []
        ignored = session.scalars(
            sa.select(AuditEntry).where(AuditEntry.action == "call.dialer_disposition_ignored")
        ).one()
    assert (ignored.subject, ignored.details["agent"], ignored.details["code"]) == (
        f"attempt:{attempt}",
        AGENT,
        "promise_to_pay",
    )
    saved = desk.post(attempt, "right_party_contact")
    assert (saved.code, saved.agent) == ("right_party_contact", AGENT)
    with desk.node.db.reading() as session:
        exported = session.scalars(sa.select(ActivityRow.kind).where(ActivityRow.kind != "sms")).all()
    assert exported == ["call_attempt"]


@pytest.mark.abuse
def test_the_simulator_invents_no_disposition_for_an_agents_call(site: Site) -> None:
    account_id = uncalled_account(site.node)
    agent = signed_in(site.base, "ana")
    csrf = page_csrf(agent)
    events, stop = stream(agent, "/agent/events")
    events.next("agent_state")
    assert agent.post("/agent/state", data={"state": "ready", "csrf": csrf}).status_code == 200
    placed = agent.post("/agent/preview", data={"account_id": str(account_id), "csrf": csrf})
    assert placed.status_code == 202, placed.text
    attempt = placed.json()["attempt_id"]
    events.next("screen_pop", timeout=10)
    assert site.node.calls.wait_for_call(attempt, timeout=60) is not None  # ended, its report handled
    assert agent.post(f"/agent/calls/{attempt}/right-party", data={"csrf": csrf}).status_code == 200
    saved = agent.post(f"/agent/calls/{attempt}/disposition", data={"code": "right_party_contact", "csrf": csrf})
    stop.set()
    assert saved.status_code == 201, saved.text
    with site.node.db.reading() as session:
        stored = session.execute(
            sa.select(DispositionRow.code, DispositionRow.agent).where(DispositionRow.attempt_id == attempt)
        ).all()
        ignored = session.scalars(
            sa.select(AuditEntry.subject).where(AuditEntry.action == "call.dialer_disposition_ignored")
        ).all()
    assert stored == [("right_party_contact", "ana")]
    assert ignored == [f"attempt:{attempt}"]
