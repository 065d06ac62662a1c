"""Preview mode on the simulator: a ready agent is offered the next account the list has for it (its callbacks
first, then the list's order within its grants), held for it alone; it calls it through the gate or skips it
(audited); the offer is released when the agent pauses, signs out, leaves, or lets its hold pass."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from decimal import Decimal
from pathlib import Path

import pytest
from sqlalchemy import select

from cartera.contact.targets import Denied
from cartera.core.store.schema import (
    Account,
    AuditEntry,
    CallbackRow,
    ContactAttempt,
    Creditor,
    Debtor,
    DispositionRow,
    Phone,
    Portfolio,
)
from cartera.node import Node
from cartera.portfolio.identity import PortfolioKey
from cartera.users.directory import Grant, Role, UserDirectory
from cartera.workspace.agents import AgentState
from cartera.workspace.errors import WorkspaceError
from cartera.workspace.hub import PREVIEW_CLEARED, PREVIEW_OFFER, WorkspaceEvent
from cartera.workspace.offers import OFFER_TIMEOUT
from tests.conftest import write_sites
from tests.test_agent_page import page_csrf, signed_in, stream
from tests.test_web_server import serving

PASSWORD = "correct horse battery"
TARJETAS = frozenset({PortfolioKey("BANCO", "TARJETAS")})
CEDIDA = frozenset({PortfolioKey("BANCO", "CEDIDA")})
#: account reference: (portfolio, balance, phone, do not call)
ACCOUNTS = {
    "T1": ("TARJETAS", 100_000, "+573001000001", False),
    "T2": ("TARJETAS", 300_000, "+573001000002", False),
    "T3": ("TARJETAS", 200_000, "+573001000003", False),
    "V1": ("VEHICULOS", 9_000_000, "+573001000009", False),
    "C1": ("CEDIDA", 50_000, "+573001000021", True),
    "C2": ("CEDIDA", 40_000, "+573001000022", False),
}
AGENTS = {"ana": ("agent-01", TARJETAS), "bruno": ("agent-02", TARJETAS), "carla": ("agent-03", CEDIDA)}


@dataclass
class Desk:
    node: Node
    ids: dict[str, int]
    heard: list[WorkspaceEvent] = field(default_factory=list)

    def ready(self, agent: str) -> None:
        """The agent's page opened and it said ready."""
        extension, grants = AGENTS[agent]
        hub = self.node.workspace
        hub.open_page(agent, extension, grants)
        hub.roster.page_seen(agent)
        hub.roster.ready(agent)

    def offered(self, agent: str) -> str | None:
        """The reference of the account the agent is offered now."""
        held = self.node.offers.held(agent)
        if held is None:
            return None
        account = held.data["account"]
        assert isinstance(account, str)
        return account.rsplit("/", 1)[1]

    def skip(self, agent: str, reason: str = "needs_review") -> str | None:
        ref = self.offered(agent)
        assert ref is not None
        self.node.offers.skip(agent, self.ids[ref], reason)
        return self.offered(agent)

    def pushed(self, kind: str, agent: str) -> list[dict[str, object]]:
        return [dict(event.data) for event in self.heard if event.kind == kind and event.agent == agent]

    def audited(self, action: str) -> list[tuple[str, str, dict[str, object]]]:
        with self.node.db.session() as session:
            rows = session.execute(
                select(AuditEntry.actor, AuditEntry.subject, AuditEntry.details)
                .where(AuditEntry.action == action)
                .order_by(AuditEntry.id)
            ).all()
        return [(actor, subject, details) for actor, subject, details in rows]


def open_desk(tmp_path: Path, mode: str) -> Node:
    config = write_sites(tmp_path)
    text = config.read_text().replace("[sites.t.campaign]\n", f'[sites.t.campaign]\nmode = "{mode}"\n')
    seats = 'seats = ["agent-01", "agent-02", "agent-03"]\n'
    seats += 'scripted = { "+573001000022" = "no_answer", "+573001000003" = "answered" }\n'
    config.write_text(text.replace("seed = 7\n", f"seed = 7\n{seats}"))
    node = Node.open(config, "t")
    users = UserDirectory(node.db)
    for name, (extension, grants) in AGENTS.items():
        users.add(name, PASSWORD, Role.AGENT, tuple(Grant("t", key) for key in grants), extension=extension)
    return node


def seed(node: Node) -> dict[str, int]:
    with node.db.session() as session:
        banco = Creditor(code="BANCO")
        portfolios = {
            code: Portfolio(creditor=banco, code=code, site="t", country="CO")
            for code in ("TARJETAS", "VEHICULOS", "CEDIDA")
        }
        accounts = {}
        for ref, (portfolio, balance, phone, dnc) in ACCOUNTS.items():
            debtor = Debtor(name=f"Deudor {ref}", phones=[Phone(e164=phone, position=0, do_not_call=dnc)])
            accounts[ref] = Account(
                portfolio=portfolios[portfolio],
                ref=ref,
                debtor=debtor,
                balance=Decimal(balance),
                currency="COP",
                status="active",
                updated_at=node.clock.now(),
            )
        session.add_all(accounts.values())
        session.flush()
        return {ref: account.id for ref, account in accounts.items()}


def callback(node: Node, account_id: int, phone: str, agent: str) -> None:
    """A callback the debtor of ``account_id`` asked ``agent`` for, due five minutes ago (a call yesterday)."""
    now = node.clock.now()
    with node.db.session() as session:
        called = ContactAttempt(
            site="t",
            account_id=account_id,
            phone=phone,
            state="finished",
            outcome="answered",
            requested_at=now - timedelta(days=1),
        )
        session.add(called)
        session.flush()
        disposition = DispositionRow(
            site="t",
            attempt_id=called.id,
            account_id=account_id,
            code="callback_requested",
            flags=["human", "callback"],
            agent=agent,
            note="",
            at=now - timedelta(days=1),
        )
        session.add(disposition)
        session.flush()
        session.add(
            CallbackRow(
                site="t",
                account_id=account_id,
                disposition_id=disposition.id,
                phone=phone,
                at=now - timedelta(minutes=5),
                agent=agent,
                state="pending",
            )
        )


@pytest.fixture
def desk(tmp_path: Path) -> Iterator[Desk]:
    node = open_desk(tmp_path, "preview")
    found = Desk(node, seed(node))
    node.workspace.listen(found.heard.append)
    try:
        yield found
    finally:
        node.close()


def test_offers_follow_the_lists_order_within_the_agents_grants_and_each_skip_is_audited(desk: Desk) -> None:
    desk.ready("ana")
    now = desk.node.clock.now()
    listed = [pick.ref for pick in desk.node.call_list.queue(now, 10, 3, within=TARJETAS)]
    assert listed == ["T2", "T3", "T1"]  # by expected value: the balance, every number alike so far
    seen = [desk.offered("ana")]
    while seen[-1] is not None:
        seen.append(desk.skip("ana"))
    assert seen == [*listed, None]  # never VEHICULOS' V1, the largest balance, nor CEDIDA's
    offers = desk.pushed(PREVIEW_OFFER, "ana")
    assert [offer["account"] for offer in offers] == ["BANCO/TARJETAS/T2", "BANCO/TARJETAS/T3", "BANCO/TARJETAS/T1"]
    assert (offers[0]["debtor"], offers[0]["phone"]) == ("Deudor T2", "+573001000002")
    assert "300000" not in json.dumps(offers)  # whom to ask for, nothing of the debt
    viewed = desk.audited("workspace.preview_offer")
    assert [(actor, subject) for actor, subject, _ in viewed] == [
        ("web:ana", f"account:BANCO/TARJETAS/{ref}") for ref in listed
    ]
    skipped = desk.audited("workspace.preview_skip")
    assert [(subject, details["reason"]) for _, subject, details in skipped] == [
        (f"account:BANCO/TARJETAS/{ref}", "needs_review") for ref in listed
    ]
    with pytest.raises(WorkspaceError, match=r"^reason: "):
        desk.node.offers.skip("ana", desk.ids["T2"], "bored")


def test_a_callback_due_to_an_agent_is_offered_to_it_first_and_to_no_other(desk: Desk) -> None:
    callback(desk.node, desk.ids["T1"], "+573001000001", "ana")
    desk.ready("bruno")
    assert desk.offered("bruno") == "T2"  # ana's callback waits for ana
    desk.ready("ana")
    assert desk.offered("ana") == "T1"
    assert desk.pushed(PREVIEW_OFFER, "ana")[0]["callback"] is True
    assert desk.skip("bruno") == "T3"  # T1 stays ana's


def test_two_agents_are_never_offered_the_same_account(desk: Desk) -> None:
    desk.ready("ana")
    desk.ready("bruno")
    assert (desk.offered("ana"), desk.offered("bruno")) == ("T2", "T3")
    assert desk.skip("ana") == "T1"  # T3 is bruno's
    assert desk.skip("bruno") == "T2"  # ana passed over T2, not bruno; T1 is ana's
    assert desk.skip("ana") == "T3"
    assert desk.skip("bruno") == "T1"
    assert desk.skip("ana") is None  # ana passed over all three
    desk.node.workspace.roster.pause("bruno", "break")
    assert desk.node.offers.held("bruno") is None
    assert desk.pushed(PREVIEW_CLEARED, "bruno")[-1] == {"account_id": desk.ids["T1"], "reason": "paused"}


def test_agents_becoming_ready_at_once_get_different_accounts(desk: Desk) -> None:
    for _ in range(5):
        threads = [threading.Thread(target=desk.ready, args=(name,)) for name in ("ana", "bruno")]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        offered = [desk.offered("ana"), desk.offered("bruno")]
        assert None not in offered, offered
        assert offered[0] != offered[1], offered
        for name in ("ana", "bruno"):
            desk.node.workspace.roster.pause(name, "break")


def test_a_call_goes_through_the_gate_a_refusal_offers_the_next_account(desk: Desk) -> None:
    callback(desk.node, desk.ids["C1"], "+573001000021", "carla")  # the number the debtor gave: do not call
    desk.ready("carla")
    assert desk.offered("carla") == "C1"
    with pytest.raises(Denied, match="denied"):
        desk.node.offers.dial("carla", "agent-03", desk.ids["C1"], actor="web:carla")
    denied = [(actor, subject, details["reasons"]) for actor, subject, details in desk.audited("compliance.deny")]
    assert denied == [("web:carla", "call:+573001000021", ["debtor_opt_out"])]
    assert desk.offered("carla") == "C2"  # the next one, pushed
    with desk.node.db.session() as session:
        placed = session.scalars(select(ContactAttempt.phone).where(ContactAttempt.state == "placing")).all()
    assert placed == []

    call = desk.node.offers.dial("carla", "agent-03", desk.ids["C2"], actor="web:carla")
    assert call.agent == "agent-03"  # the answered call comes to carla
    assert [actor for actor, _, _ in desk.audited("compliance.allow")] == ["web:carla"]
    assert desk.node.offers.held("carla") is None  # no offer while its call rings
    with pytest.raises(WorkspaceError, match=r"ringing|calling"):
        desk.node.offers.dial("carla", "agent-03", desk.ids["C2"], actor="web:carla")
    deadline = time.monotonic() + 15
    while not [c for c in desk.pushed(PREVIEW_CLEARED, "carla") if c.get("reason") == "unanswered"]:
        assert time.monotonic() < deadline, "the unanswered call's end never reached carla's page"
        time.sleep(0.05)
    unanswered = [c for c in desk.pushed(PREVIEW_CLEARED, "carla") if c.get("reason") == "unanswered"]
    assert unanswered == [{"attempt_id": call.attempt_id, "reason": "unanswered", "outcome": "no_answer"}]
    assert desk.offered("carla") is None  # C1 passed over after its refusal, C2 just called


def test_an_offer_is_released_when_its_hold_passes_and_the_agent_is_paused(desk: Desk) -> None:
    desk.node.offers.hold = timedelta(0)
    desk.ready("ana")
    assert desk.offered("ana") == "T2"
    desk.ready("bruno")
    assert desk.offered("bruno") == "T3"
    desk.node.offers.hold = timedelta(minutes=2)
    desk.node.offers.sweep()
    status = desk.node.workspace.roster.get("ana")
    assert (status.state, status.pause_reason) == (AgentState.PAUSED, OFFER_TIMEOUT)
    assert [subject for _, subject, _ in desk.audited("workspace.preview_expired")] == [
        "account:BANCO/TARJETAS/T2",
        "account:BANCO/TARJETAS/T3",
    ]
    assert desk.offered("ana") is None
    assert desk.offered("bruno") is None  # paused too: its hold had passed as well


def test_an_offer_goes_back_to_the_list_when_its_agent_signs_out_or_leaves(desk: Desk) -> None:
    desk.ready("ana")
    desk.node.offers.signed_out("ana")
    status = desk.node.workspace.roster.get("ana")
    assert (status.state, status.pause_reason) == (AgentState.PAUSED, "signed_out")
    desk.ready("bruno")
    assert desk.offered("bruno") == "T2"  # ana's offer is free again
    desk.node.workspace.roster.page_gone("bruno")  # bruno's last page closed
    desk.node.offers.sweep()
    assert desk.offered("bruno") is None
    desk.ready("ana")
    assert desk.offered("ana") == "T2"


@pytest.mark.parametrize("mode", ["ratio", "progressive", "predictive"])
def test_no_offer_appears_unless_the_campaign_is_in_preview_mode(tmp_path: Path, mode: str) -> None:
    node = open_desk(tmp_path, mode)
    try:
        seed(node)
        heard: list[WorkspaceEvent] = []
        node.workspace.listen(heard.append)
        hub = node.workspace
        hub.open_page("ana", "agent-01", TARJETAS)
        hub.roster.page_seen("ana")
        hub.roster.ready("ana")
        node.offers.sweep()
        assert node.offers.offer("ana") is None
        assert node.offers.held("ana") is None
        assert [event.kind for event in heard if event.kind in (PREVIEW_OFFER, PREVIEW_CLEARED)] == []
    finally:
        node.close()


def test_the_page_is_pushed_its_offer_skips_it_calls_the_next_and_is_offered_another_once_dispositioned(
    tmp_path: Path,
) -> None:
    node = open_desk(tmp_path, "preview")
    ids = seed(node)
    runner = serving(node)
    try:
        agent = signed_in(node.site.section.web.base_url, "ana")
        csrf = page_csrf(agent)
        events, stop = stream(agent, "/agent/events")
        events.next("agent_state")
        assert agent.post("/agent/state", data={"state": "ready", "csrf": csrf}).status_code == 200
        _, _, offer = events.next("preview_offer")
        assert (offer["account"], offer["debtor"]) == ("BANCO/TARJETAS/T2", "Deudor T2")

        skip = {"account_id": str(ids["T2"]), "reason": "bored", "csrf": csrf}
        refused = agent.post("/agent/offer/skip", data=skip)
        assert (refused.status_code, refused.json()["field"]) == (400, "reason")
        assert agent.post("/agent/offer/skip", data=skip | {"reason": "wrong_data"}).status_code == 200
        assert events.next("preview_cleared")[2] == {"account_id": ids["T2"], "reason": "skipped"}
        _, _, offer = events.next("preview_offer")
        assert offer["account"] == "BANCO/TARJETAS/T3"
        stale = agent.post("/agent/offer/skip", data=skip | {"reason": "other"})
        assert (stale.status_code, stale.json()["field"]) == (409, "account")  # T2 is no longer offered to ana

        placed = agent.post("/agent/preview", data={"account_id": str(ids["T3"]), "csrf": csrf})
        assert placed.status_code == 202, placed.text
        _, _, pop = events.next("screen_pop", timeout=10)
        assert (pop["attempt_id"], pop["debtor"]) == (placed.json()["attempt_id"], "Deudor T3")
        path = f"/agent/calls/{pop['attempt_id']}/disposition"
        saved = agent.post(path, data={"code": "wrong_party", "csrf": csrf})
        assert saved.status_code == 201, saved.text
        _, _, offer = events.next("preview_offer")
        assert offer["account"] == "BANCO/TARJETAS/T1"
        stop.set()
    finally:
        node.stop()
        runner.join(30)
        node.close()


@pytest.mark.abuse
def test_an_account_offered_to_one_agent_is_dialled_by_no_other_even_paused(desk: Desk) -> None:
    """A paused agent may call an account it found, never one held for another agent's offer (#14 red team round
    11): refused, no attempt recorded; the agent it is offered to calls it."""
    desk.ready("ana")
    assert desk.offered("ana") == "T2"
    hub = desk.node.workspace
    hub.open_page("bruno", "agent-02", TARJETAS)  # paused (signed_in): offered nothing
    hub.roster.page_seen("bruno")
    with pytest.raises(WorkspaceError, match=r"^account: account \d+ is held for another agent's call$"):
        desk.node.offers.dial("bruno", "agent-02", desk.ids["T2"], actor="web:bruno")
    with desk.node.db.session() as session:
        attempts = session.scalars(select(ContactAttempt.account_id)).all()
    assert attempts == []
    assert desk.offered("ana") == "T2"  # still ana's
    found = desk.node.offers.dial("bruno", "agent-02", desk.ids["T3"], actor="web:bruno")  # held by no one
    mine = desk.node.offers.dial("ana", "agent-01", desk.ids["T2"], actor="web:ana")
    with desk.node.db.session() as session:
        placed = {
            row.id: row.account_id for row in session.execute(select(ContactAttempt.id, ContactAttempt.account_id))
        }
    assert placed == {found.attempt_id: desk.ids["T3"], mine.attempt_id: desk.ids["T2"]}
