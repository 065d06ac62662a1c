"""Issue #17's proof on real Asterisk 22: a campaign overdialling four agents whose phones are SIP user agents (SIPp)
registered to PJSIP endpoints, debtors answering (SIPp) after ringing. The calls no agent takes within
``abandon_after_s`` hear the identification message (Asterisk's Playback, reported by the dialplan's UserEvents),
are hung up, end ``abandoned`` in the store and count in the campaign's abandonment rate."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import sqlalchemy as sa

from cartera.contact.abandonment import abandonment_rate
from cartera.core.models import CallOutcome
from cartera.core.store.schema import ContactAttempt
from cartera.node import Node
from cartera.plugins.dialers.asterisk_ami.client import AmiConnection, Message
from tests.conftest import write_portfolio
from tests.peers.asterisk import AMI_USER, IDENTIFICATION_HZ, AsteriskPeer, running_asterisk, tone_share
from tests.peers.sip_agents import AgentPhones, agent_phones

pytestmark = [pytest.mark.asterisk, pytest.mark.sip]

AGENTS = 4
DEBTORS = 24
#: How long an agent's phone talks: longer than a call waits for an agent, so overdialling abandons calls.
TALK_S = 5

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

[sites.t.campaign]
tick_seconds = 0.2
promise_sms = false
reminder_sms = ""
{campaign}

[sites.t.dialer]
plugin = "asterisk_ami"
port = {port}
username = "cartera"
secret = "${{CARTERA_TEST_AMI_SECRET}}"
queue = "cobranza"
dial_ratio = 3.0
ring_timeout_s = 15
abandon_after_s = 2
identification_message = "{message}"
spool_dir = "{spool}"

[sites.t.crm_sync]
plugin = "csv"
inbox = "inbox"
outbox = "exports"
creditor = "BANCO"
portfolio = "TARJETAS"
"""


@pytest.fixture(scope="module")
def peer() -> Iterator[AsteriskPeer]:
    with running_asterisk(agents=AGENTS, sip_agents=True) as running:
        yield running


@pytest.fixture(scope="module")
def phones(peer: AsteriskPeer) -> Iterator[AgentPhones]:
    with agent_phones(peer, talk_s=TALK_S) as running:
        yield running


@contextmanager
def user_events(peer: AsteriskPeer) -> Iterator[dict[str, list[tuple[str, str]]]]:
    """The dialplan's UserEvents (name, Detail) by channel UNIQUEID, read on an AMI connection of the test's own."""
    seen: dict[str, list[tuple[str, str]]] = {}

    def record(event: Message) -> None:
        seen.setdefault(event.get("Uniqueid", ""), []).append((event.get("UserEvent", ""), event.get("Detail", "")))

    connection = AmiConnection("127.0.0.1", peer.ami_port, handlers={"UserEvent": record}, on_lost=lambda _: None)
    connection.connect()
    try:
        connection.login(AMI_USER, peer.ami_secret)
        yield seen
    finally:
        connection.close()


def run_campaign(peer: AsteriskPeer, tmp_path: Path, campaign: str) -> tuple[Node, list[ContactAttempt]]:
    """The campaign run until each debtor's call ended; the node (stopped) and its attempts."""
    site = tmp_path / "sites.toml"
    text = SITE.format(campaign=campaign, port=peer.ami_port, message=peer.identification_message, spool=peer.spool)
    site.write_text(text, encoding="utf-8")
    (tmp_path / "inbox").mkdir()
    write_portfolio(
        tmp_path / "inbox", [f"BCO-{n};Deudor {n};300 555 {n:02d}01;;1.000.000,00;COP" for n in range(DEBTORS)]
    )
    node = Node.open(site, "t")
    node.creditor_sync().run_once()
    runner = threading.Thread(target=node.run, kwargs={"duration": 300})
    runner.start()
    try:
        deadline = time.monotonic() + 240
        while len(finished(node)) < DEBTORS:
            assert runner.is_alive(), "the node stopped"
            assert time.monotonic() < deadline, f"{len(finished(node))} of {DEBTORS} calls ended"
            time.sleep(0.5)
    finally:
        node.stop()
        runner.join(60)
    attempts = finished(node)
    return node, attempts


def finished(node: Node) -> list[ContactAttempt]:
    with node.db.reading() as session:
        query = sa.select(ContactAttempt).where(ContactAttempt.state == "finished").order_by(ContactAttempt.id)
        return list(session.scalars(query))


def test_overdialling_four_agents_abandons_calls_that_hear_the_message_and_are_counted(
    peer: AsteriskPeer, phones: AgentPhones, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CARTERA_TEST_AMI_SECRET", peer.ami_secret)
    with user_events(peer) as said:
        node, attempts = run_campaign(peer, tmp_path, 'mode = "ratio"')
    try:
        outcomes = {attempt.id: CallOutcome(attempt.outcome or "") for attempt in attempts}
        answered = [attempt for attempt in attempts if outcomes[attempt.id] is CallOutcome.ANSWERED]
        abandoned = [attempt for attempt in attempts if outcomes[attempt.id] is CallOutcome.ABANDONED]
        assert len(answered) + len(abandoned) == DEBTORS, sorted(outcomes.values())
        assert abandoned, "three calls per agent, each talking longer than a call waits: none was abandoned"
        assert len(answered) >= AGENTS, "not every agent took a call"

        # Each abandoned call was told it was abandoned, then heard the whole message (its recording has it), and no
        # agent took it; each answered call went to one of the four phones, and heard no message.
        for attempt in abandoned:
            events = said.get(attempt.vendor_call_id or "", [])
            assert ("CarteraAbandoned", "TIMEOUT") in events, (attempt.id, events)
            assert ("CarteraIdentified", "SUCCESS") in events, (attempt.id, events)
            assert (attempt.agent, attempt.answered_at) == (None, None)
            recording = peer.spool / f"{attempt.vendor_call_id}.wav"
            assert tone_share(recording, IDENTIFICATION_HZ) > 0.2, f"attempt {attempt.id} did not hear the message"
        for attempt in answered:
            assert attempt.agent in peer.agent_interfaces, attempt.agent
            assert [name for name, _ in said.get(attempt.vendor_call_id or "", [])] == ["CarteraAnswered"]
            assert tone_share(peer.spool / f"{attempt.vendor_call_id}.wav", IDENTIFICATION_HZ) < 0.01
        assert {attempt.agent for attempt in answered} == set(peer.agent_interfaces), "a phone took no call"
        assert {f"PJSIP/{name}" for name, _ in phones.answered()} == set(peer.agent_interfaces)

        # The abandonment rate counts them: abandoned over answered by a person.
        with node.db.reading() as session:
            rate = abandonment_rate(session, "t", node.clock.now(), node.site.section.campaign.abandonment)
        assert (rate.abandoned, rate.answered) == (len(abandoned), DEBTORS)
        assert rate.over_limit
    finally:
        node.close()
