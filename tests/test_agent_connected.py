"""A dialer's report that an answered call reached an agent: the attempt is the agent's while the call is up."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import pytest

from cartera.core.models import AgentConnected, CallOutcome, CallResult
from cartera.core.store.schema import ContactAttempt
from cartera.node import Node
from tests.conftest import write_portfolio, write_sites

ANA = "+573001234567"


def talking_site(tmp_path: Path) -> Path:
    """Site ``t`` whose simulator answers Ana's number and talks for a real second (600 s at speed 600)."""
    path = write_sites(tmp_path)
    text = path.read_text().replace("seed = 7", f'seed = 7\nscripted = {{ "{ANA}" = "answered" }}')
    path.write_text(text.replace("talk_seconds = [5, 30]", "talk_seconds = [600, 600]"))
    write_portfolio(tmp_path / "inbox", ["BCO-1;Ana Gómez;300 123 4567;;1.250.000,00;COP"])
    return path


def attempt_row(node: Node, attempt_id: int) -> tuple[str, str | None]:
    with node.db.session() as session:
        attempt = session.get(ContactAttempt, attempt_id)
        assert attempt is not None
        return attempt.state, attempt.agent


def test_the_agent_is_on_the_attempt_while_the_call_is_up(tmp_path: Path, open_node: Callable[..., Node]) -> None:
    node = open_node(talking_site(tmp_path))
    node.creditor_sync().run_once()
    request = node.calls.place_call(phone=None, account="BCO-1", actor="test")
    deadline = time.monotonic() + 10
    while (row := attempt_row(node, request.attempt_id))[1] is None:
        assert time.monotonic() < deadline, "the connection to an agent never reached the attempt"
        time.sleep(0.01)
    assert row[0] == "placing", "the agent reached the attempt only with the call's end"
    result = node.calls.wait_for_call(request.attempt_id, timeout=10)
    assert result is not None
    assert result.outcome is CallOutcome.ANSWERED
    assert row[1] == result.agent
    assert attempt_row(node, request.attempt_id) == ("finished", result.agent)


def test_a_connection_for_an_attempt_not_placed_here_is_refused(tmp_path: Path, open_node: Callable[..., Node]) -> None:
    node = open_node(talking_site(tmp_path))
    assert node.calls.on_agent_connected(AgentConnected(424242, "agent-01", node.clock.now())) is False
    with node.db.session() as session:
        assert session.get(ContactAttempt, 424242) is None


@pytest.mark.abuse
@pytest.mark.postgres
def test_an_agent_longer_than_the_store_keeps_does_not_cost_the_calls_end(
    tmp_path: Path, postgres_url: str, open_node: Callable[..., Node]
) -> None:
    """Red-team round 17 M3: a PBX's AgentConnect Interface over 64 characters reached contact_attempts.agent
    (String(64)); PostgreSQL refused the connection and the call's end, and the attempt stayed placing. The
    agent is dropped (logged), the rest of both reports is stored."""
    path = write_sites(tmp_path, database=postgres_url)
    text = path.read_text().replace("seed = 7", f'seed = 7\nscripted = {{ "{ANA}" = "no_answer" }}')
    path.write_text(text.replace("ring_seconds = [1, 10]", "ring_seconds = [1, 86400]"))  # rings 144 s real
    write_portfolio(tmp_path / "inbox", ["BCO-1;Ana Gómez;300 123 4567;;1.250.000,00;COP"])
    node = open_node(path)
    node.creditor_sync().run_once()
    request = node.calls.place_call(phone=None, account="BCO-1", actor="test")
    agent, now = "PJSIP/" + "a" * 94, node.clock.now()
    assert node.calls.on_agent_connected(AgentConnected(request.attempt_id, agent, now)) is True
    assert attempt_row(node, request.attempt_id) == ("placing", None)
    end = CallResult(request.attempt_id, CallOutcome.ANSWERED, "16", now, now, now + timedelta(seconds=30), agent=agent)
    node.calls.on_call_result(end)
    with node.db.session() as session:
        attempt = session.get(ContactAttempt, request.attempt_id)
        assert attempt is not None
        assert (attempt.state, attempt.outcome, attempt.agent) == ("finished", "answered", None)
        assert attempt.connected_at is not None
