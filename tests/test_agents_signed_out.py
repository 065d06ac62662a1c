"""A node starts every agent user of the site paused at the dialer: a queue member (a simulator seat) bound to
an agent takes no call until the agent's page says it is ready, while a seat no user holds keeps taking calls."""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

import pytest

from cartera.core.adapters import Dialer
from cartera.core.models import CallOutcome
from cartera.node import Node
from cartera.users.directory import Grant, Role, UserDirectory
from tests.conftest import write_portfolio, write_sites

ANA, BETO = "+573001234567", "+573007654321"


def two_seat_site(tmp_path: Path, *, campaign: bool = False) -> Path:
    """Site ``t`` with seats ``s-ana`` and ``s-robot``, answering Ana's and Beto's numbers."""
    path = write_sites(tmp_path)
    scripted = f'scripted = {{ "{ANA}" = "answered", "{BETO}" = "answered" }}'
    text = path.read_text().replace("seed = 7\n", f'seed = 7\nseats = ["s-ana", "s-robot"]\n{scripted}\n')
    if not campaign:
        text = text.replace("[sites.t.campaign]\n", "[sites.t.campaign]\nenabled = false\n")
    path.write_text(text)
    rows = ["BCO-1;Ana Gómez;300 123 4567;;1.250.000,00;COP", "BCO-2;Beto Ruiz;300 765 4321;;900.000,00;COP"]
    write_portfolio(tmp_path / "inbox", rows)
    return path


def agent(node: Node, name: str, extension: str, site: str = "t") -> None:
    UserDirectory(node.db).add(name, "a long enough password 1", Role.AGENT, [Grant(site)], extension=extension)


def answered_by(node: Node, account: str) -> str | None:
    request = node.calls.place_call(phone=None, account=account, actor="test")
    result = node.calls.wait_for_call(request.attempt_id, timeout=20)
    assert result is not None
    assert result.outcome is CallOutcome.ANSWERED
    return result.agent


def test_an_agent_users_seat_takes_no_call_until_its_page_is_ready(
    tmp_path: Path, open_node: Callable[..., Node]
) -> None:
    node = open_node(two_seat_site(tmp_path))
    agent(node, "ana", "s-ana")
    agent(node, "other-site", "s-elsewhere", site="elsewhere")  # not this site's agent: not asked about
    dialer = node.adapter("dialer", Dialer)
    everyone = dialer.capacity()
    node._pause_signed_out()
    assert dialer.capacity() < everyone
    node.creditor_sync().run_once()
    assert answered_by(node, "BCO-1") == "s-robot"  # the seat without a user keeps taking calls
    node.workspace.open_page("ana", "s-ana", None)
    assert dialer.capacity() < everyone  # the page opened paused: still no call
    node.workspace.roster.ready("ana")
    assert dialer.capacity() == everyone
    assert answered_by(node, "BCO-2") == "s-ana"  # the longest idle seat, ready now


def test_a_run_pauses_the_agents_and_an_extension_the_dialer_lacks_is_a_warning(
    tmp_path: Path, open_node: Callable[..., Node], caplog: pytest.LogCaptureFixture
) -> None:
    node = open_node(two_seat_site(tmp_path, campaign=True))
    agent(node, "ana", "s-ana")
    agent(node, "zoe", "s-nobody")
    with caplog.at_level(logging.INFO):
        node.run(duration=0.5)
    unknown = [r for r in caplog.records if r.getMessage() == "workspace.agent_unknown"]
    assert len(unknown) == 1  # once, and the node ran on
    fields = getattr(unknown[0], "fields", {})
    assert (fields["agent"], fields["extension"]) == ("zoe", "s-nobody")
    assert "node.stopped" in [r.getMessage() for r in caplog.records]  # a warning, never a node stopped by it
    dialer = node.adapter("dialer", Dialer)  # started again after the run: its seats' pauses are the run's
    assert dialer.capacity() < 3  # 2 seats at 1.5 lines each: s-ana's line is not offered
