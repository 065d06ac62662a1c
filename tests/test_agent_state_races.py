"""A call the dialer connects while an agent's state change is on its way to the dialer wins: the agent is on that
call, its pop on screen. The state was checked, the dialer told, then the new state written over whatever came
meanwhile: the agent read "ready" while talking, the pop of its call was gone (right-party and codes 404), the
pacer counted it ready, and a call waiting behind a dispositioned one stayed behind a "ready" state."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import timedelta
from typing import Any

import pytest

from cartera.core.adapters import Dialer
from cartera.core.models import AgentConnected, CallOutcome, CallResult
from cartera.node import Node
from cartera.workspace.agents import AgentState
from tests import test_workspace_hub
from tests.workspace_seed import DAY, seed_calls

pytestmark = pytest.mark.abuse


node = test_workspace_hub.node


@contextmanager
def held_at_the_dialer(node: Node, method: str, change: Callable[[], Any]) -> Iterator[None]:
    """Run ``change`` in a thread and hold it inside the dialer's ``method`` (``pause_agent`` or ``resume_agent``)
    while the body runs: what the body does happens between the dialer being told and the state being written."""
    dialer = node.adapter("dialer", Dialer)
    original, entered, release = getattr(dialer, method), threading.Event(), threading.Event()

    def held(*args: Any) -> None:
        entered.set()
        assert release.wait(10)
        original(*args)

    setattr(dialer, method, held)
    thread = threading.Thread(target=change)
    thread.start()
    try:
        assert entered.wait(10), f"{method} was not called"
        yield
    finally:
        release.set()
        thread.join(10)
        delattr(dialer, method)
    assert not thread.is_alive()


def test_a_call_connected_while_the_agent_becomes_ready_stays_on_screen(node: Node) -> None:
    calls, hub = seed_calls(node), node.workspace
    hub.open_page("ana", "agent-01", None)
    with held_at_the_dialer(node, "resume_agent", lambda: hub.roster.ready("ana")):
        hub.agent_connected(AgentConnected(calls.colombian, "agent-01", DAY))
    status = hub.roster.get("ana")
    assert (status.state, status.attempt_id) == (AgentState.ON_CALL, calls.colombian)
    pop = hub.on_screen("ana")
    assert pop is not None
    assert pop.data["attempt_id"] == calls.colombian
    assert hub.roster.ready_agents() == []


def test_a_call_connected_while_the_agent_pauses_stays_on_screen_the_pause_kept_for_after(node: Node) -> None:
    calls, hub = seed_calls(node), node.workspace
    hub.open_page("ana", "agent-01", None)
    hub.roster.ready("ana")
    with held_at_the_dialer(node, "pause_agent", lambda: hub.roster.pause("ana", "almuerzo")):
        hub.agent_connected(AgentConnected(calls.colombian, "agent-01", DAY))
    status = hub.roster.get("ana")
    assert (status.state, status.attempt_id, status.pause_reason) == (AgentState.ON_CALL, calls.colombian, "almuerzo")
    assert hub.on_screen("ana") is not None
    node.calls.on_call_result(
        CallResult(calls.colombian, CallOutcome.ANSWERED, "16", DAY, DAY, DAY + timedelta(seconds=40))
    )
    after = hub.dispositioned("ana", calls.colombian)
    assert after is not None
    assert (after.state, after.pause_reason) == (AgentState.PAUSED, "almuerzo")


def test_a_call_connected_while_a_disposition_frees_the_agent_comes_on_screen(node: Node) -> None:
    calls, hub = seed_calls(node), node.workspace
    hub.open_page("ana", "agent-01", None)
    hub.roster.ready("ana")
    hub.agent_connected(AgentConnected(calls.colombian, "agent-01", DAY))
    node.calls.on_call_result(
        CallResult(calls.colombian, CallOutcome.ANSWERED, "16", DAY, DAY, DAY + timedelta(seconds=40))
    )
    with held_at_the_dialer(node, "resume_agent", lambda: hub.dispositioned("ana", calls.colombian)):
        hub.agent_connected(AgentConnected(calls.american, "agent-01", DAY + timedelta(seconds=41)))
    status = hub.roster.get("ana")
    assert (status.state, status.attempt_id, status.pending) == (AgentState.ON_CALL, calls.american, ())
    pop = hub.on_screen("ana")
    assert pop is not None
    assert pop.data["attempt_id"] == calls.american
