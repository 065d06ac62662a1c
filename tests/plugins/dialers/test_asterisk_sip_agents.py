"""Real Asterisk, real SIP phones: the agents' phones are SIP user agents (SIPp) registered to PJSIP endpoints, the
debtors' too; each answered call is reported connected to the agent whose phone took it, pausing is QueuePause."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from cartera.core.errors import UnknownAgent
from cartera.core.models import AgentConnected, CallOutcome, CallRequest
from cartera.core.store.schema import ContactAttempt
from cartera.core.testing.context import CapturingContext
from cartera.node import Node
from cartera.plugins.dialers.asterisk_ami.config import AsteriskAmiConfig
from cartera.plugins.dialers.asterisk_ami.plugin import AsteriskAmiDialer
from tests.conftest import write_portfolio
from tests.peers.asterisk import NUMBERS, AsteriskPeer, running_asterisk
from tests.peers.sip_agents import AgentPhones, agent_phones

pytestmark = pytest.mark.asterisk

ANSWERS = NUMBERS[CallOutcome.ANSWERED]


@pytest.fixture(scope="module")
def peer() -> Iterator[AsteriskPeer]:
    with running_asterisk(agents=2, sip_agents=True) as running:
        yield running


@pytest.fixture(scope="module")
def phones(peer: AsteriskPeer) -> Iterator[AgentPhones]:
    with agent_phones(peer, talk_s=2) as running:
        yield running


@pytest.fixture
def dialer(peer: AsteriskPeer, tmp_path: Path) -> Iterator[tuple[AsteriskAmiDialer, CapturingContext]]:
    context = CapturingContext(tmp_path / "dialer")
    settings = AsteriskAmiConfig.model_validate(peer.dialer_settings(dial_ratio=1.0, ring_timeout_s=15))
    started = AsteriskAmiDialer(settings, context)
    started.start()
    yield started, context
    started.stop()


def wait_for_capacity(dialer: AsteriskAmiDialer, wanted: int) -> None:
    deadline = time.monotonic() + 15
    while dialer.capacity() != wanted:
        assert time.monotonic() < deadline, f"capacity {dialer.capacity()}, expected {wanted}"
        time.sleep(0.05)


def call(attempt_id: int) -> CallRequest:
    """A call to an answering debtor, its caller ID the attempt: the agent's phone shows which call it took."""
    return CallRequest(attempt_id=attempt_id, site="test", phone=ANSWERS, caller_id=f'"{attempt_id}" <{attempt_id}>')


def test_each_answered_call_is_reported_connected_to_the_phone_that_took_it(
    dialer: tuple[AsteriskAmiDialer, CapturingContext], phones: AgentPhones, peer: AsteriskPeer
) -> None:
    started, context = dialer
    wait_for_capacity(started, 2)  # both phones registered: both members reachable
    for attempt in (7101, 7102):
        started.place_call(call(attempt))
    results = {result.attempt_id: result for result in context.wait_for_calls(2, 60)}
    took = {int(caller): f"PJSIP/{agent}" for agent, caller in phones.answered() if caller in ("7101", "7102")}
    connected = {event.attempt_id: event.agent for event in context.agent_connections}
    assert connected == took, "a connection names another agent than the phone that answered it"
    assert set(connected) == {7101, 7102}
    assert sorted(connected.values()) == peer.agent_interfaces, "both calls went to one phone"
    for attempt, result in results.items():
        assert result.outcome is CallOutcome.ANSWERED, result.raw_cause
        assert result.agent == connected[attempt]
        (connection,) = [event for event in context.agent_connections if event.attempt_id == attempt]
        assert result.answered_at is not None
        assert result.ended_at is not None
        assert result.answered_at <= connection.at <= result.ended_at
        assert context.reports.index(connection) < context.reports.index(result)


def test_a_paused_phone_is_offered_no_call_until_resumed(
    dialer: tuple[AsteriskAmiDialer, CapturingContext], phones: AgentPhones, peer: AsteriskPeer
) -> None:
    started, context = dialer
    first, second = peer.agent_interfaces
    wait_for_capacity(started, 2)
    started.pause_agent(first, "almuerzo")
    wait_for_capacity(started, 1)
    member = {event["Location"]: event for event in peer.queue_members()}[first]
    assert (member["Paused"], member["PausedReason"]) == ("1", "almuerzo")
    for count, attempt in enumerate((7201, 7202), start=1):
        started.place_call(call(attempt))
        context.wait_for_calls(count, 60)
    assert [event.agent for event in context.agent_connections] == [second, second]
    took = {caller: f"PJSIP/{agent}" for agent, caller in phones.answered()}
    assert (took["7201"], took["7202"]) == (second, second)
    with pytest.raises(UnknownAgent, match=r"queue 'cobranza' at .* has no member 'PJSIP/nobody'"):
        started.pause_agent("PJSIP/nobody", "almuerzo")
    started.resume_agent(first)
    wait_for_capacity(started, 2)
    assert {event["Location"]: event for event in peer.queue_members()}[first]["Paused"] == "0"


def test_a_call_placed_for_one_agent_rings_that_agents_phone_alone(
    dialer: tuple[AsteriskAmiDialer, CapturingContext], phones: AgentPhones, peer: AsteriskPeer
) -> None:
    """A callback: placed for the second phone while both are free, each call is answered by that phone."""
    started, context = dialer
    second = peer.agent_interfaces[1]
    wait_for_capacity(started, 2)
    for count, attempt in enumerate((7401, 7402), start=1):
        started.place_call(replace(call(attempt), agent=second))
        context.wait_for_calls(count, 60)
    assert [(event.attempt_id, event.agent) for event in context.agent_connections] == [(7401, second), (7402, second)]
    took = {caller: f"PJSIP/{agent}" for agent, caller in phones.answered()}
    assert (took["7401"], took["7402"]) == (second, second)
    assert all(result.agent == second for result in context.calls)


class SlowScreens(CapturingContext):
    """A node whose screen pop takes longer than the AMI connection's ping timeout."""

    def report_agent_connected(self, event: AgentConnected) -> None:
        time.sleep(2.5)
        super().report_agent_connected(event)


def test_a_slow_connection_report_holds_up_neither_the_ami_connection_nor_the_calls_order(
    peer: AsteriskPeer, phones: AgentPhones, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    context = SlowScreens(tmp_path / "slow")
    settings = peer.dialer_settings(dial_ratio=1.0, ring_timeout_s=15, ping_interval_s=0.5, ping_timeout_s=1.0)
    started = AsteriskAmiDialer(AsteriskAmiConfig.model_validate(settings), context)
    started.start()
    try:
        wait_for_capacity(started, 2)
        with caplog.at_level(logging.INFO, logger="cartera.plugin.asterisk_ami"):
            started.place_call(call(7301))
            (result,) = context.wait_for_calls(1, 60)
        assert started.check().ok
    finally:
        started.stop()
    assert "asterisk.disconnected" not in caplog.text, "the AMI reader waited for the report and missed its Pongs"
    (connection,) = context.agent_connections
    assert (connection.attempt_id, result.agent) == (7301, connection.agent)
    assert context.reports.index(connection) < context.reports.index(result)
    assert any(caller == "7301" for _, caller in phones.answered())


SITE = """
[sites.t]
timezone = "America/Bogota"
country = "CO"
data_dir = "var/t"

[sites.t.clock]
mode = "simulated"
start = 2026-11-23T10:00:00-05:00
speed = 1

[sites.t.compliance]
authorised_channels = ["call"]
test_numbers = {numbers}

[sites.t.campaign]
promise_sms = false

[sites.t.dialer]
plugin = "asterisk_ami"
port = {port}
username = "cartera"
secret = "${{CARTERA_TEST_AMI_SECRET}}"
queue = "cobranza"
dial_ratio = 1.0
ring_timeout_s = 15
spool_dir = "{spool}"

[sites.t.crm_sync]
plugin = "csv"
inbox = "inbox"
outbox = "exports"
creditor = "BANCO"
portfolio = "TARJETAS"
settle_seconds = 0  # the test drops its file and syncs at once
"""


def test_the_node_pops_each_call_on_the_page_of_the_agent_whose_phone_took_it(
    peer: AsteriskPeer,
    phones: AgentPhones,
    tmp_path: Path,
    open_node: Callable[..., Node],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Agents ana and luis, bound to the phones PJSIP/agent01 and 02, open their pages and say they are ready (the
    queue unpauses them); two debtors are called: each attempt is in the store as the call of the phone that took
    it, and each agent's page has the pop of that call."""
    monkeypatch.setenv("CARTERA_TEST_AMI_SECRET", peer.ami_secret)
    site = tmp_path / "sites.toml"
    numbers = json.dumps([ANSWERS])
    site.write_text(SITE.format(numbers=numbers, port=peer.ami_port, spool=peer.spool), encoding="utf-8")
    (tmp_path / "inbox").mkdir()
    write_portfolio(
        tmp_path / "inbox",
        ["BCO-1;Ana Gómez;300 555 0001;;1.250.000,00;COP", "BCO-2;Luis Peña;300 555 0001;;800.000,00;COP"],
    )
    node = open_node(site)
    node.creditor_sync().run_once()
    agents = dict(zip(("ana", "luis"), peer.agent_interfaces, strict=True))
    for agent, extension in agents.items():
        node.workspace.open_page(agent, extension, None)  # paused in the queue until ready
    dialer = node.adapter("dialer", AsteriskAmiDialer)
    wait_for_capacity(dialer, 0)
    for agent in agents:
        node.workspace.roster.ready(agent)
    wait_for_capacity(dialer, 2)
    requests = [node.calls.place_call(phone=None, account=ref, actor="test") for ref in ("BCO-1", "BCO-2")]
    for request in requests:
        result = node.calls.wait_for_call(request.attempt_id, timeout=60)
        assert result is not None
        assert result.outcome is CallOutcome.ANSWERED, result.raw_cause
    with node.db.session() as session:
        taken = {attempt.agent: attempt.id for attempt in session.query(ContactAttempt)}
    assert set(taken) == set(agents.values()), "both calls went to one phone"
    assert sorted(name for name, _ in phones.answered()[-2:]) == ["agent01", "agent02"]
    for agent, extension in agents.items():
        pop = node.workspace.on_screen(agent)
        assert pop is not None, f"{agent} has no pop on screen"
        assert pop.kind == "screen_pop"
        assert pop.agent == agent
        assert pop.data["attempt_id"] == taken[extension], pop.data
