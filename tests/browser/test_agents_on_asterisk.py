"""Issue #16's proof end to end: a running node's campaign on real Asterisk 22, two agents whose phones are SIP user
agents (SIPp) registered to PJSIP endpoints, debtors answered by SIPp, and the two agents' pages in real Chromium.

Each page pops the account of the call its agent's phone took; one agent confirms the right party and saves a
promise (it shows in the KPIs and the creditor's export, and the US account then sits out Reg F's seven days), the
other hears a third party and saves a callback for itself, which the campaign places at its time to that agent's
phone alone (Asterisk's ``agent_context``), popping on that agent's page again."""

from __future__ import annotations

import re
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from datetime import time as dt_time
from decimal import Decimal
from pathlib import Path

import pytest
import sqlalchemy as sa
from playwright.sync_api import Browser, Page, ViewportSize, expect

from cartera.contact.compliance import Reason
from cartera.core.models import Channel
from cartera.core.store.schema import Account, CallbackRow, ContactAttempt
from cartera.node import Node
from cartera.portfolio.export import exported_activities
from cartera.runtime.kpis import daily_kpis
from cartera.users.directory import Grant, Role, UserDirectory
from tests.conftest import write_portfolio
from tests.peers.asterisk import AsteriskPeer, running_asterisk
from tests.peers.net import free_port
from tests.peers.sip_agents import AgentPhones, agent_phones

pytestmark = [pytest.mark.asterisk, pytest.mark.browser]
PASSWORD = "correct horse battery"
LAPTOP = ViewportSize(width=1366, height=768)
#: Real seconds per simulated minute: the callback comes back ten simulated minutes later, 20 real seconds.
SPEED = 30
#: Debtors in New York (Reg F); SIPp answers a number ending in 1.
DEBTORS = {"BCO-1": ("Ana Gómez", "212 736 5001"), "BCO-2": ("Luis Peña", "212 736 5011")}

SITE = """
[sites.t]
timezone = "America/New_York"
country = "US"
data_dir = "var/t"

[sites.t.clock]
mode = "simulated"
start = 2026-11-23T10:00:00-05:00
speed = {speed}

[sites.t.compliance]
authorised_channels = ["call"]

[sites.t.campaign]
tick_seconds = 0.2
promise_sms = false

[sites.t.sync]
every_seconds = 1

[sites.t.web]
port = {web_port}

[sites.t.workspace]
wrap_up_seconds = 3600
gone_seconds = 3600
callback_release_minutes = 60

[[sites.t.workspace.portfolios."BANCO/TARJETAS".codes]]
code = "promise_to_pay"
label_es = "Promesa de pago"
label_en = "Promise to pay"
flags = ["human", "right_party", "promise"]

[[sites.t.workspace.portfolios."BANCO/TARJETAS".codes]]
code = "third_party_callback"
label_es = "Tercero: volver a llamar"
label_en = "Third party: call back"
flags = ["human", "third_party", "callback"]

[sites.t.dialer]
plugin = "asterisk_ami"
port = {ami_port}
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


@pytest.fixture(scope="module")
def peer() -> Iterator[AsteriskPeer]:
    with running_asterisk(agents=2, sip_agents=True) as running:
        yield running


@pytest.fixture(scope="module")
def phones(peer: AsteriskPeer) -> Iterator[AgentPhones]:
    with agent_phones(peer, talk_s=4) as running:
        yield running


@dataclass(frozen=True)
class Desk:
    """One agent's page, signed in."""

    user: str
    extension: str
    page: Page

    def popped(self) -> int:
        """The attempt on screen (the page marks it once the pop arrived)."""
        expect(self.page.locator("#desk")).to_have_attribute(
            "data-pop-attempt", re.compile(r"^[0-9]+$"), timeout=60_000
        )
        return int(self.page.locator("#desk").get_attribute("data-pop-attempt") or "")


@pytest.fixture
def node(peer: AsteriskPeer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Node]:
    monkeypatch.setenv("CARTERA_TEST_AMI_SECRET", peer.ami_secret)
    site = tmp_path / "sites.toml"
    text = SITE.format(speed=SPEED, web_port=free_port(), ami_port=peer.ami_port, spool=peer.spool)
    site.write_text(text, encoding="utf-8")
    (tmp_path / "inbox").mkdir()
    write_portfolio(
        tmp_path / "inbox",
        [f"{ref};{name};{phone};;1.250,00;USD" for ref, (name, phone) in DEBTORS.items()],
    )
    opened = Node.open(site, "t")
    opened.creditor_sync().run_once()
    users = UserDirectory(opened.db)
    for user, extension in zip(("ana", "luis"), peer.agent_interfaces, strict=True):
        users.add(user, PASSWORD, Role.AGENT, (Grant("t"),), extension=extension)
    runner = threading.Thread(target=opened.run, kwargs={"duration": 600})
    runner.start()
    try:
        _wait_until(lambda: _listening(opened), 30, "the node's web server")
        yield opened
    finally:
        opened.stop()
        runner.join(60)
        opened.close()
        for interface in peer.agent_interfaces:
            peer.action("QueuePause", Queue="cobranza", Interface=interface, Paused="false")


def _listening(node: Node) -> bool:
    web = node.site.section.web
    with socket.socket() as probe:
        return probe.connect_ex((web.bind, web.port)) == 0


def _wait_until(done: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not done():
        assert time.monotonic() < deadline, f"{what}: not within {timeout} s"
        time.sleep(0.2)


def sign_in(browser: Browser, base: str, user: str, extension: str) -> Desk:
    page = browser.new_context(viewport=LAPTOP).new_page()
    page.goto(f"{base}/login")
    page.fill("input[name=user]", user)
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_load_state()
    assert page.url == f"{base}/agent"
    return Desk(user, extension, page)


def attempt_of(node: Node, attempt_id: int) -> tuple[str, str | None, datetime]:
    """The account reference, the agent (dialer identity) and the request time of one attempt."""
    with node.db.reading() as session:
        attempt = session.get_one(ContactAttempt, attempt_id)
        account = session.get_one(Account, attempt.account_id)
        return account.ref, attempt.agent, attempt.requested_at


def save_promise(desk: Desk) -> None:
    """The right party: the mini-Miranda of a US portfolio, then a promise to pay saved from the keyboard."""
    desk.page.keyboard.press("c")
    expect(desk.page.locator("#accounts")).to_contain_text("BCO-1")
    expect(desk.page.locator("#mini-miranda")).to_be_visible()
    desk.page.select_option("#code", "promise_to_pay")
    desk.page.fill("input[name=promise_amount]", "200")
    desk.page.fill("input[name=promise_due]", "2026-11-30")
    desk.page.keyboard.press("Control+Enter")
    expect(desk.page.locator("#waiting")).to_be_visible()


def save_callback(node: Node, desk: Desk) -> datetime:
    """A third party asks to be called back in ten minutes: a callback for this agent alone. Its time."""
    local = node.clock.now().astimezone(node.site.zone) + timedelta(minutes=10)
    desk.page.select_option("#code", "third_party_callback")
    desk.page.fill("input[name=callback_at]", local.strftime("%Y-%m-%dT%H:%M"))
    desk.page.keyboard.press("Control+Enter")
    expect(desk.page.locator("#waiting")).to_be_visible()
    with node.db.reading() as session:
        (callback,) = session.scalars(sa.select(CallbackRow)).all()
        at, agent = callback.at, callback.agent
    assert agent == desk.user, "the callback is not for its agent alone"
    return at


def wait_for_export(node: Node) -> None:
    """The calls (their outcome the code) and the promise reach the creditor's export."""
    expected = {
        ("BCO-1", "promise_to_pay", None),
        ("BCO-1", "promise_to_pay", Decimal("200.00")),
        ("BCO-2", "third_party_callback", None),
    }

    def exported() -> set[tuple[str, str | None, Decimal | None]]:
        return {
            (activity.account_ref, activity.outcome, activity.amount)
            for activity in exported_activities(node.db, "t", "BANCO", 0, 100)
        }

    _wait_until(lambda: expected <= exported(), 30, "the calls' and the promise's export")


def assert_reg_f_quiet(node: Node, today: date) -> None:
    """The right-party conversation quiets the US account for seven days (the gate's explanation, 10:00 local)."""
    with node.db.reading() as session:
        account_id = session.scalars(sa.select(Account.id).where(Account.ref == "BCO-1")).one()
    for days, quiet in ((1, True), (6, True), (7, False)):
        later = datetime.combine(today + timedelta(days=days), dt_time(10), node.site.zone)
        decision, _ = node.explainer.explain(channel=Channel.CALL, phone=None, account=account_id, at=later, actor="t")
        assert (Reason.QUIET_AFTER_CONVERSATION in decision.reasons) is quiet, (days, decision.reasons)


def test_a_campaign_on_asterisk_pops_on_two_agent_pages_and_calls_back_the_agent_at_its_time(
    node: Node, peer: AsteriskPeer, phones: AgentPhones, browser: Browser
) -> None:
    base = node.site.section.web.base_url
    agents = dict(zip(("ana", "luis"), peer.agent_interfaces, strict=True))
    desks = [sign_in(browser, base, user, extension) for user, extension in agents.items()]
    for desk in desks:
        expect(desk.page.locator("#state")).to_have_attribute("data-state", "paused")
        desk.page.keyboard.press("r")
        expect(desk.page.locator("#state")).to_have_attribute("data-state", "ready")

    # The campaign calls both debtors; each page pops the account of the call its agent's phone took.
    popped: dict[str, tuple[Desk, int]] = {}
    for desk in desks:
        attempt = desk.popped()
        ref, agent, _ = attempt_of(node, attempt)
        assert agent == desk.extension, f"{desk.user}'s page popped a call of {agent}"
        expect(desk.page.locator("#debtor")).to_have_text(DEBTORS[ref][0])
        popped[ref] = (desk, attempt)
    assert set(popped) == set(DEBTORS), "both pages popped one account"
    assert {f"PJSIP/{name}" for name, _ in phones.answered()} == set(agents.values()), "both phones took a call"
    (promiser, promise_attempt), (caller, callback_attempt) = popped["BCO-1"], popped["BCO-2"]
    save_promise(promiser)
    callback_at = save_callback(node, caller)

    # Once both calls ended: the promise in the KPIs and in the creditor's export; Reg F's quiet week.
    for attempt in (promise_attempt, callback_attempt):
        assert node.calls.wait_for_call(attempt, timeout=60) is not None, f"call {attempt} never ended"
    today = node.clock.now().astimezone(node.site.zone).date()
    (kpi,) = daily_kpis(node.db, {"t": None}, node.site.zone, since=today, until=today)
    assert (kpi.attempts, kpi.right_party, kpi.promises) == (2, 1, 1)
    wait_for_export(node)
    assert_reg_f_quiet(node, today)

    # At its time the callback comes back to its agent's phone, and pops on that agent's page again.
    expect(caller.page.locator("#desk")).not_to_have_attribute(
        "data-pop-attempt", str(callback_attempt), timeout=(10 * 60 / SPEED + 60) * 1000
    )
    ref, agent, requested_at = attempt_of(node, caller.popped())
    assert (ref, agent) == ("BCO-2", caller.extension)
    assert requested_at >= callback_at
    expect(caller.page.locator("#debtor")).to_have_text(DEBTORS["BCO-2"][0])
    assert promiser.page.locator("#desk").get_attribute("data-pop-attempt") == str(promise_attempt)
    expect(promiser.page.locator("#waiting")).to_be_visible()
    assert phones.answered()[-1][0] == caller.extension.removeprefix("PJSIP/")
