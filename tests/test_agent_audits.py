"""What an agent sees of an account is audited by the account's qualified reference (``CREDITOR/PORTFOLIO/REF``),
as a call's disposition is: a bare reference may be another creditor's account too."""

from __future__ import annotations

from sqlalchemy import select

from cartera.core.store.schema import AuditEntry
from tests import test_agent_page
from tests.test_agent_page import Site, connect, page_csrf, signed_in, stream

site = test_agent_page.site  # the running node's fixture


def test_the_search_the_pop_and_the_right_party_audit_qualified_references(site: Site) -> None:
    agent = signed_in(site.base, "ana")
    csrf = page_csrf(agent)
    events, stop = stream(agent, "/agent/events")
    events.next("agent_state")
    assert agent.post("/agent/state", data={"state": "ready", "csrf": csrf}).status_code == 200
    assert [row["ref"] for row in agent.get("/agent/accounts", params={"q": "BCO-1"}).json()] == ["BCO-1"]
    connect(site, site.calls.colombian)
    events.next("screen_pop")
    shown = agent.post(f"/agent/calls/{site.calls.colombian}/right-party", data={"csrf": csrf})
    assert shown.status_code == 200, shown.text
    stop.set()
    with site.node.db.reading() as session:
        rows = session.execute(select(AuditEntry.action, AuditEntry.details).where(AuditEntry.actor == "web:ana"))
        audited: dict[str, dict[str, object]] = {row.action: row.details for row in rows}
    assert audited["workspace.search"]["found"] == ["BANCO/TARJETAS/BCO-1"]
    assert audited["workspace.screen_pop"]["account"] == "BANCO/TARJETAS/BCO-1"
    assert audited["workspace.right_party"]["account"] == "BANCO/TARJETAS/BCO-1"
    assert audited["workspace.right_party"]["shown"] == ["BANCO/TARJETAS/BCO-1"]
