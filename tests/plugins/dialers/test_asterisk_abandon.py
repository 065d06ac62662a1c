"""Issue #17's proof on real Asterisk 22: campaigns on four agents whose phones are SIP user agents (SIPp) registered
to PJSIP endpoints, debtors answering (SIPp) after ringing. Overdialling, the calls no agent takes within
``abandon_after_s`` hear the identification message (Asterisk's Playback, reported by the dialplan's UserEvents),
are hung up, end ``abandoned`` in the store and count in the campaign's abandonment rate; predictive, the four
workspace agents (dispositioning each call a second after it ends) keep the rate within the limit."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa

from cartera.contact.abandonment import abandonment_rate
from cartera.contact.pacing import PredictivePacer
from cartera.core.models import CallOutcome
from cartera.core.store.schema import ContactAttempt, WebGrant, WebUser
from cartera.node import Node
from cartera.plugins.dialers.asterisk_ami.client import AmiConnection, Message
from cartera.workspace.agents import AgentState
from cartera.workspace.service import DispositionInput
from tests.conftest import store_site_calls, write_portfolio
from tests.peers.asterisk import AMI_USER, IDENTIFICATION_HZ, AsteriskPeer, running_asterisk, tone_share
from tests.peers.net import free_port
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

[sites.t.web]
port = {web_port}

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
settle_seconds = 0  # the test drops its file and syncs at once
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


def run_campaign(
    peer: AsteriskPeer,
    tmp_path: Path,
    campaign: str,
    lines: list[str],
    agents: Callable[[Node], None] | None = None,
    *,
    yesterday: Sequence[CallOutcome] = (),
) -> tuple[Node, list[ContactAttempt]]:
    """The campaign run until each debtor's call (one to each of ``lines``, the last digits SIPp answers by) ended;
    ``agents`` (the workspace's agents at work) is called every 0.2 s once the node started, its agents' users
    added before; ``yesterday``: the outcomes of the site's calls of the day before, stored first. The node
    (stopped) and today's attempts."""
    site = tmp_path / "sites.toml"
    text = SITE.format(
        campaign=campaign,
        port=peer.ami_port,
        web_port=free_port(),
        message=peer.identification_message,
        spool=peer.spool,
    )
    site.write_text(text, encoding="utf-8")
    (tmp_path / "inbox").mkdir()
    rows = [f"BCO-{n};Deudor {n};300 555 {n:02d}0{line};;1.000.000,00;COP" for n, line in enumerate(lines)]
    write_portfolio(tmp_path / "inbox", rows)
    node = Node.open(site, "t")
    node.creditor_sync().run_once()
    start = node.clock.now()
    store_site_calls(node, ((start - timedelta(days=1, minutes=n), outcome) for n, outcome in enumerate(yesterday)))
    if agents is not None:
        with node.db.session() as session:  # an agent user per phone, bound to it by its extension
            session.add_all(
                WebUser(
                    name=agent_name(n),
                    password_hash="!",
                    role="agent",
                    extension=extension,
                    created_at=node.clock.now(),
                    grants=[WebGrant(site="t")],
                )
                for n, extension in enumerate(peer.agent_interfaces, start=1)
            )
    runner = threading.Thread(target=node.run, kwargs={"duration": 600})
    runner.start()
    try:
        deadline = time.monotonic() + 480
        while len(finished(node)) < len(lines):
            assert runner.is_alive(), "the node stopped"
            assert time.monotonic() < deadline, f"{len(finished(node))} of {len(lines)} calls ended"
            if agents is not None and node.lifecycle.running:  # the start-up pause of the agents is done
                agents(node)
            time.sleep(0.2)
    finally:
        node.stop()
        runner.join(60)
    attempts = finished(node)
    return node, attempts


def finished(node: Node) -> list[ContactAttempt]:
    """Today's calls that ended."""
    with node.db.reading() as session:
        query = sa.select(ContactAttempt).where(
            ContactAttempt.state == "finished", ContactAttempt.account_id.is_not(None)
        )
        return list(session.scalars(query.order_by(ContactAttempt.id)))


def test_overdialling_four_agents_abandons_calls_that_hear_the_message_and_are_counted(
    peer: AsteriskPeer, phones: AgentPhones, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CARTERA_TEST_AMI_SECRET", peer.ami_secret)
    with user_events(peer) as said:
        node, attempts = run_campaign(peer, tmp_path, 'mode = "ratio"', ["1"] * DEBTORS)
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


def agent_name(n: int) -> str:
    return f"agente{n}"


def dispositioning(names: list[str]) -> Callable[[Node], None]:
    """The agents ``names``: each one's call in wrap-up for a second is dispositioned (right party), which makes
    the agent ready again."""

    def act(node: Node) -> None:
        for name in names:
            status = node.workspace.roster.get(name)
            waited = (datetime.now(UTC) - status.since).total_seconds()
            if status.state is AgentState.WRAP_UP and status.attempt_id is not None and waited >= 1:
                given = DispositionInput(status.attempt_id, "right_party_contact")
                node.workspace_service.confirm_right_party(name, given.attempt_id, within=None)  # its page's "C"
                node.workspace_service.post_disposition(name, given, within=None)
                node.workspace.dispositioned(name, given.attempt_id)  # as the page's route does

    return act


@pytest.mark.usefixtures("phones")
def test_predictive_with_four_agents_dials_ahead_and_keeps_the_abandonment_rate_within_the_limit(
    peer: AsteriskPeer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """A sixth of the debtors answer (the others are busy or decline, as on a collections list, and as on the
    site's 60 calls of yesterday): the predictive pacer, its team the four workspace agents ready on their pages,
    starts from yesterday's answer rate and dials ahead of them (more calls in flight than ready agents, as its
    logged decisions show), and keeps the abandoned calls within 3% of those answered by a person."""
    monkeypatch.setenv("CARTERA_TEST_AMI_SECRET", peer.ami_secret)
    names = [agent_name(n) for n in range(1, AGENTS + 1)]
    work = dispositioning(names)

    def agents(node: Node) -> None:
        """Signed in and ready once, then working their calls."""
        if not node.workspace.roster.everyone():
            for name, extension in zip(names, peer.agent_interfaces, strict=True):
                node.workspace.open_page(name, extension, None)
                node.workspace.roster.ready(name)
        work(node)

    rounds = 8
    lines = ["1", "2", "4", "2", "4", "4"] * rounds  # answers, busy, declines
    with user_events(peer) as said, caplog.at_level(logging.INFO, logger="cartera.pace"):
        yesterday = [CallOutcome.ANSWERED, CallOutcome.BUSY, CallOutcome.REJECTED] + [CallOutcome.BUSY] * 3
        mode = f'mode = "predictive"\nmin_team = {AGENTS}'
        node, attempts = run_campaign(peer, tmp_path, mode, lines, agents, yesterday=yesterday * 10)
    try:
        assert isinstance(node.pace.pacer, PredictivePacer)
        decisions = [record.__dict__["fields"] for record in caplog.records if record.getMessage() == "campaign.paced"]
        assert decisions, "the pacer never placed a call"
        ahead = [d for d in decisions if d["ringing"] + d["placing"] > d["ready"]]
        assert ahead, f"never more calls in flight than ready agents: {decisions}"
        outcomes = [CallOutcome(attempt.outcome or "") for attempt in attempts]
        busy_rejected = [outcomes.count(outcome) for outcome in (CallOutcome.BUSY, CallOutcome.REJECTED)]
        assert busy_rejected == [2 * rounds, 3 * rounds]
        person = [attempt for attempt in attempts if attempt.outcome in ("answered", "abandoned")]
        assert len(person) == rounds, outcomes
        for attempt in person:
            if attempt.outcome == "abandoned":
                assert ("CarteraIdentified", "SUCCESS") in said.get(attempt.vendor_call_id or "", []), attempt.id
            else:
                assert attempt.agent in peer.agent_interfaces, attempt.agent
        with node.db.reading() as session:
            rate = abandonment_rate(session, "t", node.clock.now(), node.site.section.campaign.abandonment)
        assert rate.answered == rounds + 10  # and yesterday's
        assert not rate.over_limit, rate.describe()
    finally:
        node.close()
