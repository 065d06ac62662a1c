"""An agent's routes before its page opened (or after a node restart, until its stream reconnects): each a clear
refusal of the caller's, never a 502 nor an ERROR line."""

from __future__ import annotations

import logging
import re

import httpx
import pytest
from sqlalchemy import select

from cartera.core.errors import UsageError
from cartera.core.store.schema import AuditEntry
from cartera.workspace.hub import WorkspaceHub
from tests import test_agent_page
from tests.test_agent_page import Site, signed_in
from tests.workspace_seed import uncalled_account

site = test_agent_page.site  # the running node's fixture


def unopened_agent(site: Site, user: str = "ana") -> tuple[httpx.Client, str]:
    """``user`` signed in, its agent page never opened: the client and its session's CSRF token (from the
    sign-out form of a page it is refused)."""
    agent = signed_in(site.base, user)
    refused = agent.get("/recordings")
    assert refused.status_code == 403
    found = re.search(r'name="csrf" value="([^"]+)"', refused.text)
    assert found is not None
    return agent, found.group(1)


@pytest.mark.abuse
def test_an_agent_whose_page_is_not_open_is_refused_clearly(site: Site, caplog: pytest.LogCaptureFixture) -> None:
    account_id = uncalled_account(site.node)
    agent, csrf = unopened_agent(site)
    with caplog.at_level(logging.WARNING):
        codes = agent.get(f"/agent/calls/{site.calls.colombian}/codes")
        right_party = agent.post(f"/agent/calls/{site.calls.colombian}/right-party", data={"csrf": csrf})
        preview = agent.post("/agent/preview", data={"account_id": str(account_id), "csrf": csrf})
        ready = agent.post("/agent/state", data={"state": "ready", "csrf": csrf})
    assert (codes.status_code, right_party.status_code) == (404, 404)
    # round 20 H2: the call's routes answer {field, error} like the other agent routes, not the error page
    assert (codes.json()["field"], right_party.json()["field"]) == ("attempt", "attempt")
    assert right_party.json()["error"] == "the call is not on the agent's screen"  # fixed: it names no portfolio
    assert (preview.status_code, preview.json()["field"]) == (409, "agent")
    assert "open the agent page first" in preview.json()["error"]
    assert (ready.status_code, ready.json()["field"]) == (409, "agent")
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR] == []
    with site.node.db.session() as session:
        failed = session.scalars(select(AuditEntry.action).where(AuditEntry.action == "web.failed")).all()
    assert failed == []


def test_a_usage_error_a_route_lets_through_is_the_callers_409_not_a_502(
    site: Site, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def refuse(_hub: WorkspaceHub, agent: str) -> None:
        raise UsageError(f"agent {agent} may not do that now")

    agent, _ = unopened_agent(site)
    monkeypatch.setattr(WorkspaceHub, "on_screen", refuse)
    with caplog.at_level(logging.WARNING):
        answer = agent.get(f"/agent/calls/{site.calls.colombian}/codes", headers={"Accept": "application/json"})
    assert answer.status_code == 409
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR] == []
    with site.node.db.session() as session:
        reasons = session.scalars(select(AuditEntry.details).where(AuditEntry.action == "web.rejected")).all()
    assert any(details.get("reason") == "agent ana may not do that now" for details in reasons)
