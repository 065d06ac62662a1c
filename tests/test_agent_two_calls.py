"""A second call connected to an agent who already has one on screen never replaces it: the first stays on screen
with its own disposition owed, the second waits behind it (published and audited as pending) and comes on screen
once the first is dispositioned. An agent's own preview call pauses it at the dialer while it rings, so the dialer
offers it no other call meanwhile."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import select

from cartera.core.adapters import Dialer
from cartera.core.models import AgentConnected, CallRequest
from cartera.core.store.schema import AuditEntry
from cartera.node import Node
from cartera.workspace.agents import OWN_CALL, AgentState
from cartera.workspace.hub import CALL_PENDING, SCREEN_POP, WorkspaceEvent, WorkspaceHub
from tests import test_agent_page, test_workspace_hub
from tests.test_agent_dialer_down import post_state
from tests.test_agent_page import Site, page_csrf, signed_in
from tests.test_workspace_hub import Wall
from tests.workspace_seed import DAY, seed_calls, uncalled_account

pytestmark = pytest.mark.abuse

site = test_agent_page.site
node = test_workspace_hub.node


def two_calls(
    node: Node, wall: Wall, disposed: list[tuple[str, int, str]]
) -> tuple[WorkspaceHub, list[WorkspaceEvent], int, int]:
    """A hub where ana (agent-01, ready) got two calls: the first on screen, the second waiting; what it published."""
    calls = seed_calls(node)
    hub = WorkspaceHub(
        node.workspace.screens,
        now=wall,
        dialer=lambda: node.adapter("dialer", Dialer),
        dispose=lambda agent, attempt, code: disposed.append((agent, attempt, code)),
        wrap_up_limit=timedelta(seconds=120),
        gone_limit=timedelta(seconds=30),
        audit=node.audit,
    )
    heard: list[WorkspaceEvent] = []
    hub.listen(heard.append)
    hub.open_page("ana", "agent-01", None)
    hub.roster.page_seen("ana")
    hub.roster.ready("ana")
    first, second = calls.colombian, calls.vehicles
    hub.agent_connected(AgentConnected(first, "agent-01", DAY))
    hub.agent_connected(AgentConnected(second, "agent-01", DAY))
    return hub, heard, first, second


def test_a_second_call_connected_to_an_agent_on_a_call_waits_behind_the_first_and_is_not_lost(node: Node) -> None:
    wall, disposed = Wall(), list[tuple[str, int, str]]()
    hub, heard, first, second = two_calls(node, wall, disposed)

    status = hub.roster.get("ana")
    assert (status.state, status.attempt_id, status.pending) == (AgentState.ON_CALL, first, (second,))
    on_screen = hub.on_screen("ana")
    assert on_screen is not None
    assert on_screen.data["attempt_id"] == first
    pops = [event.data["attempt_id"] for event in heard if event.kind == SCREEN_POP]
    assert pops == [first]
    pending = [dict(event.data) for event in heard if event.kind == CALL_PENDING]
    assert pending == [{"attempt_id": second, "on_screen": first}]
    with node.db.reading() as session:
        audited = session.scalars(select(AuditEntry).where(AuditEntry.action == "workspace.call_pending")).all()
        assert [(row.subject, row.details["agent"]) for row in audited] == [(f"attempt:{second}", "ana")]

    hub.call_ended(second)  # the second hangs up first: the first stays on screen
    assert (hub.roster.get("ana").state, hub.roster.get("ana").attempt_id) == (AgentState.ON_CALL, first)
    hub.call_ended(first)
    assert (hub.roster.get("ana").state, hub.roster.get("ana").attempt_id) == (AgentState.WRAP_UP, first)

    status_after = hub.dispositioned("ana", first)
    assert status_after is not None
    assert (status_after.state, status_after.attempt_id, status_after.pending) == (AgentState.WRAP_UP, second, ())
    on_screen = hub.on_screen("ana")
    assert on_screen is not None
    assert (on_screen.kind, on_screen.data["attempt_id"]) == (SCREEN_POP, second)

    wall.at += timedelta(seconds=120)  # its wrap-up runs out: the second is dispositioned, never the first
    assert hub.sweep() == 1
    assert disposed == [("ana", second, "wrap_up_timeout")]
    assert hub.roster.get("ana").state is AgentState.PAUSED


def test_an_agents_own_call_pauses_it_at_the_dialer_while_it_rings(site: Site, monkeypatch: pytest.MonkeyPatch) -> None:
    dialer = site.node.adapter("dialer", Dialer)
    said: list[tuple[object, ...]] = []

    def spy(name: str, real: Callable[..., Any]) -> Callable[..., Any]:
        def told(*args: Any) -> Any:
            said.append((name, *(arg.agent if isinstance(arg, CallRequest) else arg for arg in args)))
            return real(*args)

        return told

    for name in ("pause_agent", "resume_agent", "place_call"):
        monkeypatch.setattr(dialer, name, spy(name, getattr(dialer, name)))
    account_id = uncalled_account(site.node)
    agent = signed_in(site.base, "ana")
    csrf = page_csrf(agent)
    assert post_state(agent, csrf, "ready").status_code == 200
    said.clear()
    placed = agent.post("/agent/preview", data={"account_id": str(account_id), "csrf": csrf})
    assert placed.status_code == 202, placed.text
    assert said[:2] == [("pause_agent", "agent-01", OWN_CALL), ("place_call", "agent-01")]
    assert site.node.workspace.roster.get("ana").state in (AgentState.READY, AgentState.ON_CALL)


def test_a_waiting_call_dispositioned_before_it_comes_up_never_pops(node: Node) -> None:
    disposed: list[tuple[str, int, str]] = []
    hub, heard, first, second = two_calls(node, Wall(), disposed)

    saved_early = hub.dispositioned("ana", second)  # its disposition saved while it waited: owed no more
    assert saved_early is not None
    assert (saved_early.state, saved_early.attempt_id, saved_early.pending) == (AgentState.ON_CALL, first, ())
    assert second not in hub._waiting, "the hub keeps no connection of a call that never comes up"
    on_screen = hub.on_screen("ana")
    assert on_screen is not None
    assert on_screen.data["attempt_id"] == first, "the call on screen stays"
    hub.dispositioned("ana", first)
    assert hub.roster.get("ana").attempt_id is None
    assert hub.on_screen("ana") is None
    assert [event.data["attempt_id"] for event in heard if event.kind == SCREEN_POP] == [first]
    assert disposed == []
