"""The agent's page while the site's dialer cannot be reached: a state change, a disposition, a preview call and
the page itself each tell the agent (Spanish by default, English one click away), nothing stored is lost, and the
same action goes through once the dialer is back.

The dialer is the node's simulator, made unreachable the way Asterisk's plugin is with its AMI connection down:
its check fails, pausing or resuming an agent raises, a call handed to it is reported failed, not placed."""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from decimal import Decimal

import httpx
import pytest
from sqlalchemy import func, select

from cartera.core.adapters import Dialer
from cartera.core.errors import CarteraError
from cartera.core.models import CallOutcome, CallRequest, CallResult, CheckResult
from cartera.core.store.schema import ContactAttempt, DispositionRow, PromiseRow
from cartera.node import Node
from cartera.web.context import LANGUAGE_COOKIE
from cartera.web.i18n import translate
from cartera.workspace.agents import DIALER_UNREACHABLE, AgentState
from tests import test_agent_page, test_workspace_hub
from tests.test_agent_page import Site, connect, page_csrf, signed_in, stream
from tests.test_workspace_hub import Wall, ana_on_a_call
from tests.workspace_seed import uncalled_account

site = test_agent_page.site  # the running node's fixture
node = test_workspace_hub.node  # a node not serving, its hub driven directly
NO_CONNECTION = "no AMI connection to 127.0.0.1:5038: connection refused"
DIALER_DOWN_ES = translate("es", "agent.dialer_down")
BANNER = re.compile(r'<p id="dialer-down" class="notice" role="alert"( hidden)?>([^<]*)</p>')


@contextmanager
def dialer_down(node: Node, failure: str = NO_CONNECTION) -> Iterator[None]:
    """The site's dialer unreachable while the context lasts, then back; ``failure``: the vendor's text."""
    dialer = node.adapter("dialer", Dialer)

    def unreachable(*_args: str) -> None:
        raise CarteraError(failure)

    def not_placed(request: CallRequest) -> None:
        now = node.clock.now()
        cause = f"not placed: {failure}"
        dialer.context.report_call(CallResult(request.attempt_id, CallOutcome.FAILED, cause, now, ended_at=now))

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(dialer, "check", lambda: CheckResult(False, failure))
        patch.setattr(dialer, "pause_agent", unreachable)
        patch.setattr(dialer, "resume_agent", unreachable)
        patch.setattr(dialer, "place_call", not_placed)
        yield


def post_state(agent: httpx.Client, csrf: str, state: str) -> httpx.Response:
    return agent.post("/agent/state", data={"state": state, "reason": "lunch", "csrf": csrf})


def banner(page: httpx.Response) -> tuple[bool, str]:
    """The page's dialer notice: (shown, its text)."""
    found = BANNER.search(page.text)
    assert found is not None, "the agent page has no dialer notice"
    return found.group(1) is None, found.group(2)


def test_ready_and_pause_with_the_dialer_down_are_refused_and_told_then_go_through_once_it_is_back(
    site: Site,
) -> None:
    roster = site.node.workspace.roster
    agent = signed_in(site.base, "ana")
    csrf = page_csrf(agent)
    events, stop = stream(agent, "/agent/events")
    assert events.next("agent_state")[2]["dialer_down"] is False
    with dialer_down(site.node):
        for state in ("ready", "paused"):
            refused = post_state(agent, csrf, state)
            assert refused.status_code == 503, refused.text
            assert refused.json() == {"field": "dialer", "error": DIALER_DOWN_ES}  # the agent's language
        told = events.next("agent_state")[2]
        assert (told["state"], told["dialer_down"]) == ("paused", True)  # the page shows its notice
        status = roster.get("ana")
        assert (status.state, status.pause_reason, status.dialer_down) == (AgentState.PAUSED, "signed_in", True)
        assert "ana" not in roster.ready_agents()
    ready = post_state(agent, csrf, "ready")
    assert ready.status_code == 200, ready.text
    assert (ready.json()["state"], ready.json()["dialer_down"]) == ("ready", False)
    assert events.next("agent_state")[2]["dialer_down"] is False
    assert roster.ready_agents() == ["ana"]
    stop.set()


def test_a_disposition_saved_while_the_dialer_is_down_is_kept_and_its_agent_waits_paused_until_it_is_back(
    site: Site,
) -> None:
    roster, attempt = site.node.workspace.roster, site.calls.colombian
    agent = signed_in(site.base, "ana")
    csrf = page_csrf(agent)
    assert post_state(agent, csrf, "ready").status_code == 200
    events, stop = stream(agent, "/agent/events")
    connect(site, attempt)
    events.next("screen_pop")
    assert agent.post(f"/agent/calls/{attempt}/right-party", data={"csrf": csrf}).status_code == 200
    promise = {"code": "promise_to_pay", "promise_amount": "200000", "promise_due": "2026-11-30", "csrf": csrf}
    with dialer_down(site.node):
        saved = agent.post(f"/agent/calls/{attempt}/disposition", data=promise)
        assert saved.status_code == 201, saved.text
        assert (saved.json()["state"], saved.json()["dialer_down"]) == ("paused", True)
        again = agent.post(f"/agent/calls/{attempt}/disposition", data=promise)  # a double submit
        assert again.status_code in (404, 409), again.text
        status = roster.get("ana")
        assert (status.state, status.pause_reason, status.attempt_id) == (AgentState.PAUSED, DIALER_UNREACHABLE, None)
        refused = post_state(agent, csrf, "ready")
        assert (refused.status_code, refused.json()["field"]) == (503, "dialer")
    with site.node.db.session() as session:
        kept = session.scalars(select(DispositionRow).where(DispositionRow.attempt_id == attempt)).all()
        assert [(row.code, row.agent) for row in kept] == [("promise_to_pay", "ana")]
        promises = session.scalars(select(PromiseRow).where(PromiseRow.disposition_id == kept[0].id)).all()
        assert [(row.total, row.state) for row in promises] == [(Decimal(200000), "pending")]
    back = post_state(agent, csrf, "ready")
    assert (back.status_code, back.json()["state"], back.json()["dialer_down"]) == (200, "ready", False)
    stop.set()


def test_a_page_opened_while_the_dialer_is_down_says_so_in_either_language_and_clears_once_it_is_back(
    site: Site,
) -> None:
    with dialer_down(site.node):
        agent = signed_in(site.base, "ana")
        spanish = agent.get("/agent")
        assert spanish.status_code == 200
        shown, text = banner(spanish)
        assert shown
        assert "El marcador no responde" in text
        events, stop = stream(agent, "/agent/events")
        first = events.next("agent_state")[2]
        assert (first["state"], first["dialer_down"]) == ("paused", True)
        agent.cookies.set(LANGUAGE_COOKIE, "en")
        shown, text = banner(agent.get("/agent"))
        assert shown
        assert "The dialer is not answering" in text
    csrf = page_csrf(agent)
    assert post_state(agent, csrf, "ready").status_code == 200
    assert events.next("agent_state")[2]["dialer_down"] is False
    assert banner(agent.get("/agent"))[0] is False
    stop.set()


def test_a_preview_call_with_the_dialer_down_is_refused_and_records_no_attempt_then_is_placed_once_it_is_back(
    site: Site,
) -> None:
    account_id = uncalled_account(site.node)
    agent = signed_in(site.base, "ana")
    csrf = page_csrf(agent)
    assert post_state(agent, csrf, "ready").status_code == 200
    events, stop = stream(agent, "/agent/events")
    call = {"account_id": str(account_id), "csrf": csrf}
    with dialer_down(site.node):
        refused = agent.post("/agent/preview", data=call)
        assert refused.status_code == 503, refused.text
        assert refused.json() == {"field": "dialer", "error": DIALER_DOWN_ES}
    with site.node.db.session() as session:
        attempts = session.scalar(select(func.count()).where(ContactAttempt.account_id == account_id))
    assert attempts == 0  # nothing placed, nothing for the law to count
    placed = agent.post("/agent/preview", data=call)
    assert placed.status_code == 202, placed.text
    _, _, pop = events.next("screen_pop", timeout=10)
    assert (pop["attempt_id"], pop["debtor"]) == (placed.json()["attempt_id"], "Deudor Nueve")
    stop.set()


def test_a_call_that_ends_and_is_left_while_the_dialer_is_down_is_dispositioned_once_and_its_agent_paused(
    node: Node,
) -> None:
    wall, disposed = Wall(), list[tuple[str, int, str]]()
    hub, calls = ana_on_a_call(node, wall, disposed)
    with dialer_down(node):
        hub.call_ended(calls.colombian)  # the dialer cannot be told to hold the agent: wrap-up all the same
        status = hub.roster.get("ana")
        assert (status.state, status.attempt_id, status.dialer_down) == (AgentState.WRAP_UP, calls.colombian, True)
        hub.roster.page_gone("ana")
        wall.at += timedelta(seconds=30)
        assert hub.sweep() == 1
        assert hub.sweep() == 0  # dispositioned once, not again at every sweep
    assert disposed == [("ana", calls.colombian, "browser_closed")]
    status = hub.roster.get("ana")
    assert (status.state, status.pause_reason, status.attempt_id) == (AgentState.PAUSED, "browser_closed", None)
