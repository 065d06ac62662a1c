"""The agent's page on the node's real HTTP server: the screen pop pushed over server-sent events when the dialer
reports the connection, the debt shown only after the right party is confirmed, the disposition posted through
the workspace service, and the stream's life next to the server's deadlines and the pages' worker pool."""

from __future__ import annotations

import contextlib
import gc
import json
import queue
import re
import socket
import sqlite3
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import cast

import httpx
import pytest
from fastapi import Request
from sqlalchemy import func, select

from cartera.core.models import AgentConnected
from cartera.core.store.schema import AuditEntry, DispositionRow
from cartera.node import Node
from cartera.portfolio.identity import PortfolioKey
from cartera.runtime import jobs
from cartera.runtime.context import NodeContext
from cartera.users.directory import Grant, Role, UserDirectory
from cartera.web import agent_pages, sse, wallboard
from cartera.web.agent_pages import StateRate
from cartera.web.context import SESSION_COOKIE
from cartera.workspace.agents import AgentState
from cartera.workspace.hub import Subscription
from cartera.workspace.offers import PreviewOffers
from tests.conftest import write_sites
from tests.test_web_server import serving
from tests.workspace_seed import DAY, Calls, seed_calls, uncalled_account

PASSWORD = "correct horse battery"
POP_WITHIN_S = 0.5


@dataclass
class Site:
    node: Node
    calls: Calls
    base: str


INTEGRATION_TOKEN = "crm-token-0123456789abcdefghij"


@pytest.fixture
def site(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Site]:
    monkeypatch.setenv("CRM_TOKEN", INTEGRATION_TOKEN)
    config = write_sites(tmp_path, extra='\n[sites.t.workspace.integrations.crm]\ntoken = "${CRM_TOKEN}"\n')
    text = config.read_text().replace("[sites.t.campaign]\n", "[sites.t.campaign]\nenabled = false\n")
    seats = 'seats = ["agent-01", "agent-02"]\nscripted = { "+573009998877" = "answered" }\n'
    text = text.replace("seed = 7\n", f"seed = 7\n{seats}")
    # one page worker and no queue: a stream holding a worker would shut every page out; short deadlines: a
    # stream outlives those meant for request heads and bodies
    text = text.replace(
        "[sites.t.web]\n", "[sites.t.web]\nworkers = 1\nqueue = 0\nhead_timeout = 1\nbody_timeout = 1\n"
    )
    config.write_text(text)
    node = Node.open(config, "t")
    users = UserDirectory(node.db)
    tarjetas = (Grant("t", PortfolioKey("BANCO", "TARJETAS")),)
    users.add("ana", PASSWORD, Role.AGENT, tarjetas, extension="agent-01")
    users.add("bruno", PASSWORD, Role.AGENT, (Grant("t"),), extension="agent-02")
    users.add("sara", PASSWORD, Role.SUPERVISOR, tarjetas)
    users.add("dora", PASSWORD, Role.AGENT, tarjetas, extension="agent-99")  # no such seat at the dialer
    runner = serving(node)
    calls = seed_calls(node)  # once running: a start settles the calls a killed run left placing
    try:
        yield Site(node, calls, node.site.section.web.base_url)
    finally:
        node.stop()
        runner.join(30)
        node.close()


@pytest.fixture
def swept_often(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Site:
    """The site, its node looking for calls their agents left every 0.5 s rather than every 5."""
    monkeypatch.setattr(jobs, "WORKSPACE_SWEEP_S", 0.5)
    started: Site = request.getfixturevalue("site")
    return started


def signed_in(base: str, user: str) -> httpx.Client:
    client = httpx.Client(base_url=base, timeout=10)
    form = client.get("/login")
    csrf = re.search(r'name="csrf" value="([^"]+)"', form.text)
    assert csrf is not None
    answer = client.post("/login", data={"user": user, "password": PASSWORD, "csrf": csrf.group(1)})
    assert answer.status_code == 303
    return client


def page_csrf(client: httpx.Client, path: str = "/agent") -> str:
    page = client.get(path)
    assert page.status_code == 200, page.text[:300]
    found = re.search(r'data-csrf="([^"]+)"', page.text)
    assert found is not None
    return found.group(1)


@dataclass
class Stream:
    """An event stream read on a thread: each event as (id, kind, data) with when it arrived."""

    events: queue.Queue[tuple[float, str, str, dict[str, object]]] = field(default_factory=queue.Queue)
    comments: list[str] = field(default_factory=list)
    opened: threading.Event = field(default_factory=threading.Event)  #: the answer's head arrived: subscribed

    def next(self, kind: str, timeout: float = 5) -> tuple[float, str, dict[str, object]]:
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            at, event_id, got, data = self.events.get(timeout=left)
            if got == kind:
                return at, event_id, data
        raise AssertionError(f"no {kind} event within {timeout} s")


class Closer:
    """Closes a stream's connection as a closing browser tab does: at once (a socket another thread reads from
    is shut down; closed only, it would stay open until that read returns)."""

    def __init__(self) -> None:
        self.socket: socket.socket | None = None

    def set(self) -> None:
        if self.socket is not None:
            with contextlib.suppress(OSError):
                self.socket.shutdown(socket.SHUT_RDWR)


def stream(client: httpx.Client, path: str, headers: dict[str, str] | None = None) -> tuple[Stream, Closer]:
    read, stop = Stream(), Closer()

    def run() -> None:
        with (
            contextlib.suppress(httpx.HTTPError),
            client.stream("GET", path, headers=headers, timeout=httpx.Timeout(10, read=30)) as answer,
        ):
            assert answer.headers["content-type"].startswith("text/event-stream")
            stop.socket = answer.extensions["network_stream"].get_extra_info("socket")
            read.opened.set()
            event_id, kind, data = "", "message", ""
            for line in answer.iter_lines():
                if line.startswith(":"):
                    read.comments.append(line)
                elif line.startswith("id: "):
                    event_id = line[4:]
                elif line.startswith("event: "):
                    kind = line[7:]
                elif line.startswith("data: "):
                    data = line[6:]
                elif not line and data:
                    read.events.put((time.monotonic(), event_id, kind, json.loads(data)))
                    event_id, kind, data = "", "message", ""

    threading.Thread(target=run, daemon=True).start()
    return read, stop


def states(board: dict[str, object]) -> list[tuple[object, object]]:
    """The wallboard's agents as (agent, state)."""
    agents = board["agents"]
    assert isinstance(agents, list)
    return [(row["agent"], row["state"]) for row in agents]


def connect(site: Site, attempt_id: int, extension: str = "agent-01") -> float:
    """The dialer's report, through the node's context as a dialer plugin gives it; when it was given."""
    at = time.monotonic()
    NodeContext(site.node, "dialer").report_agent_connected(AgentConnected(attempt_id, extension, DAY))
    return at


def test_the_pop_is_pushed_the_debt_shown_after_the_right_party_and_the_disposition_saved(site: Site) -> None:
    agent = signed_in(site.base, "ana")
    csrf = page_csrf(agent)
    assert "Puesto del agente" in agent.get("/agent").text  # Spanish by default
    events, stop = stream(agent, "/agent/events")
    _, _, state = events.next("agent_state")
    assert state["state"] == "paused"
    assert agent.post("/agent/state", data={"state": "ready", "csrf": csrf}).json()["state"] == "ready"

    sent = connect(site, site.calls.colombian)
    arrived, _, pop = events.next("screen_pop")
    assert arrived - sent < POP_WITHIN_S
    assert (pop["debtor"], pop["phone"]) == ("Deudora Uno", "+573001112233")
    assert "500000" not in json.dumps(pop)  # the debt is not on screen yet

    path = f"/agent/calls/{site.calls.colombian}"
    assert agent.post(f"{path}/right-party", data={"csrf": "wrong"}).status_code == 403
    details = agent.post(f"{path}/right-party", data={"csrf": csrf}).json()
    assert [(a["ref"], a["balance"]) for a in details["accounts"]] == [("BCO-1", "500000.00")]
    assert not details["mini_miranda"]
    codes = [code["code"] for code in agent.get(f"{path}/codes").json()]
    assert "promise_to_pay" in codes

    too_much = {"code": "promise_to_pay", "promise_amount": "900000", "promise_due": "2026-11-30", "csrf": csrf}
    refused = agent.post(f"{path}/disposition", data=too_much)
    assert refused.status_code == 400
    assert refused.json()["field"].startswith("promise")
    promise = too_much | {"promise_amount": "200000"}
    saved = agent.post(f"{path}/disposition", data=promise)
    assert saved.status_code == 201, saved.text
    assert saved.json()["state"] == "ready"
    again = agent.post(f"{path}/disposition", data=promise)  # a double submit
    assert again.status_code in (404, 409)
    stop.set()
    with site.node.db.session() as session:
        actions = set(session.scalars(select(AuditEntry.action).where(AuditEntry.actor == "web:ana")))
    assert {"workspace.screen_pop", "workspace.right_party", "workspace.state"} <= actions


@pytest.mark.abuse
def test_a_promise_before_the_right_party_is_refused_naming_no_balance_and_the_confirmation_outlives_a_reload(
    site: Site,
) -> None:
    """Round 16 M2: before its right-party confirmation, a promise larger than the balance told the agent the
    balance and a promise was saved (its text sent) with no ``workspace.right_party`` on record."""
    agent = signed_in(site.base, "ana")
    csrf = page_csrf(agent)
    events, stop = stream(agent, "/agent/events")
    events.next("agent_state")
    agent.post("/agent/state", data={"state": "ready", "csrf": csrf})
    connect(site, site.calls.colombian)
    events.next("screen_pop")
    path = f"/agent/calls/{site.calls.colombian}"
    probe = {"code": "promise_to_pay", "promise_amount": "999999999999", "promise_due": "2026-11-30", "csrf": csrf}
    for form in (probe, probe | {"promise_amount": "500000"}, {"code": "refused_to_pay", "csrf": csrf}):
        refused = agent.post(f"{path}/disposition", data=form)
        assert refused.status_code == 400, refused.text
        assert refused.json()["field"] == "right_party"
        assert "balance" not in refused.text
        assert "500000" not in refused.text  # a refusal never echoes the typed amount either
    with site.node.db.session() as session:
        assert session.scalar(select(func.count()).select_from(DispositionRow)) == 0
    assert agent.post(f"{path}/right-party", data={"csrf": csrf}).status_code == 200
    page_csrf(agent)  # the page reloads: the confirmation stays the call's (the debt was shown already)
    too_much = agent.post(f"{path}/disposition", data=probe)
    assert (too_much.status_code, too_much.json()["error"]) == (400, "promise.amount: more than the balance 500000.00")
    saved = agent.post(f"{path}/disposition", data=probe | {"promise_amount": "500000"})
    assert saved.status_code == 201, saved.text
    stop.set()
    with site.node.db.session() as session:
        actions = list(session.scalars(select(AuditEntry.action).order_by(AuditEntry.id)))
    assert actions.index("workspace.right_party") < actions.index("call.disposition")


def test_a_call_outside_the_agents_portfolios_pops_nothing_of_the_debtor(site: Site) -> None:
    agent = signed_in(site.base, "ana")
    page_csrf(agent)
    events, stop = stream(agent, "/agent/events")
    events.next("agent_state")
    connect(site, site.calls.vehicles)
    _, _, shown = events.next("call_not_visible")
    assert "debtor" not in shown
    assert agent.get(f"/agent/calls/{site.calls.vehicles}/codes").status_code == 404
    stop.set()
    with site.node.db.reading() as session:  # round 21 L1: audited as a call of no account
        reason = session.scalars(
            select(AuditEntry.details).where(AuditEntry.action == "web.rejected").order_by(AuditEntry.id.desc())
        ).first()
    assert reason is not None
    assert reason["reason"] == f"call {site.calls.vehicles} is not visible: outside the agent's portfolios"


def test_a_us_account_asks_for_the_mini_miranda(site: Site) -> None:
    agent = signed_in(site.base, "bruno")
    csrf = page_csrf(agent)
    events, stop = stream(agent, "/agent/events")
    events.next("agent_state")
    connect(site, site.calls.american, "agent-02")
    events.next("screen_pop")
    details = agent.post(f"/agent/calls/{site.calls.american}/right-party", data={"csrf": csrf}).json()
    assert details["mini_miranda"]
    assert "debt collector" in agent.get("/lang/en?back=/agent", follow_redirects=True).text
    stop.set()


def test_a_reconnecting_page_is_replayed_what_it_missed(site: Site) -> None:
    agent = signed_in(site.base, "ana")
    page_csrf(agent)
    first, stop = stream(agent, "/agent/events")
    _, last_id, _ = first.next("agent_state")
    stop.set()
    connect(site, site.calls.colombian)  # while the page is away
    again, stop_again = stream(agent, "/agent/events", headers={"Last-Event-ID": last_id})
    _, _, pop = again.next("screen_pop")
    assert pop["attempt_id"] == site.calls.colombian
    stop_again.set()


def test_streams_outlive_the_request_deadlines_and_hold_no_page_worker(site: Site) -> None:
    agent, other, supervisor = signed_in(site.base, "ana"), signed_in(site.base, "bruno"), signed_in(site.base, "sara")
    page_csrf(agent)
    page_csrf(other)
    streams = [stream(agent, "/agent/events"), stream(other, "/agent/events"), stream(supervisor, "/wallboard/events")]
    for events, _ in streams[:2]:
        events.next("agent_state")
    streams[2][0].next("wallboard")
    assert supervisor.get("/kpi").status_code == 200  # one worker, no queue, three streams open: pages answer
    time.sleep(2.5)  # past head_timeout and body_timeout (1 s each)
    connect(site, site.calls.colombian)
    streams[0][0].next("screen_pop")
    deadline = time.monotonic() + 5
    while ("ana", "on_call") not in states(streams[2][0].next("wallboard")[2]):
        assert time.monotonic() < deadline, "the wallboard never showed ana on the call"
    for _, stop in streams:
        stop.set()


def test_agents_and_supervisors_each_see_only_their_pages(site: Site) -> None:
    agent, supervisor = signed_in(site.base, "ana"), signed_in(site.base, "sara")
    assert agent.get("/recordings").status_code == 403
    assert agent.get("/wallboard").status_code == 403
    assert agent.get("/wallboard/events").status_code == 403
    assert supervisor.get("/agent").status_code == 403
    assert supervisor.get("/agent/events").status_code == 403
    assert supervisor.get("/wallboard").status_code == 200
    anonymous = httpx.Client(base_url=site.base)
    assert anonymous.get("/agent/events").status_code == 303


def test_a_page_closed_mid_call_is_dispositioned_and_its_agent_paused(
    swept_often: Site, monkeypatch: pytest.MonkeyPatch
) -> None:
    site = swept_often
    roster = site.node.workspace.roster
    monkeypatch.setattr(roster, "gone_limit", timedelta(seconds=0.5))
    agent = signed_in(site.base, "ana")
    page_csrf(agent)
    events, stop = stream(agent, "/agent/events")
    events.next("agent_state")
    connect(site, site.calls.colombian)
    events.next("screen_pop")
    stop.set()  # the browser closed
    deadline = time.monotonic() + 15
    while roster.get("ana").pause_reason != "browser_closed":
        assert time.monotonic() < deadline, f"still {roster.get('ana')}"
        time.sleep(0.1)
    with site.node.db.session() as session:
        codes = session.scalars(select(AuditEntry.details).where(AuditEntry.action == "call.disposition")).all()
    assert [entry["code"] for entry in codes] == ["browser_closed"]


def test_an_agent_the_dialer_refuses_stays_paused_and_is_told(site: Site) -> None:
    agent = signed_in(site.base, "dora")
    csrf = page_csrf(agent)  # the page opens though the dialer knows no seat agent-99
    refused = agent.post("/agent/state", data={"state": "ready", "csrf": csrf}, headers={"Accept": "application/json"})
    assert refused.status_code == 502
    assert "error" in refused.json()
    status = site.node.workspace.roster.get("dora")
    assert (status.state, status.pause_reason) == (AgentState.PAUSED, "signed_in")
    assert "dora" not in site.node.workspace.roster.ready_agents()


def test_an_agent_signing_out_mid_call_hears_no_more_and_the_call_is_dispositioned(
    swept_often: Site, monkeypatch: pytest.MonkeyPatch
) -> None:
    site = swept_often
    monkeypatch.setattr(sse, "SESSION_CHECK_S", 0.2)
    monkeypatch.setattr(sse, "KEEP_ALIVE_S", 0.2)
    roster = site.node.workspace.roster
    monkeypatch.setattr(roster, "gone_limit", timedelta(seconds=0.5))
    agent = signed_in(site.base, "ana")
    csrf = page_csrf(agent)
    events, _ = stream(agent, "/agent/events")
    events.next("agent_state")
    connect(site, site.calls.colombian)
    events.next("screen_pop")
    assert agent.post("/logout", data={"csrf": csrf}).status_code == 303
    deadline = time.monotonic() + 15
    while roster.get("ana").pause_reason != "browser_closed":  # the stream ended: the page is gone
        assert time.monotonic() < deadline, f"still {roster.get('ana')}"
        time.sleep(0.1)
    connect(site, site.calls.american)  # a call for a signed-out agent reaches no page
    with pytest.raises(queue.Empty):
        events.next("screen_pop", timeout=1)


def test_a_preview_call_goes_through_the_gate_and_the_dialer_and_pops_on_its_agents_page(site: Site) -> None:
    uncalled_account(site.node)
    agent = signed_in(site.base, "ana")
    csrf = page_csrf(agent)
    events, stop = stream(agent, "/agent/events")
    events.next("agent_state")
    assert agent.post("/agent/state", data={"state": "ready", "csrf": csrf}).status_code == 200
    assert [row["ref"] for row in agent.get("/agent/accounts", params={"q": "VEH"}).json()] == []  # not granted
    found = agent.get("/agent/accounts", params={"q": "BCO-9"}).json()
    assert [(row["ref"], row["debtor"]) for row in found] == [("BCO-9", "Deudor Nueve")]
    placed = agent.post("/agent/preview", data={"account_id": str(found[0]["id"]), "csrf": csrf})
    assert placed.status_code == 202, placed.text
    _, _, pop = events.next("screen_pop", timeout=10)
    assert (pop["attempt_id"], pop["debtor"]) == (placed.json()["attempt_id"], "Deudor Nueve")
    busy = agent.post("/agent/preview", data={"account_id": str(found[0]["id"]), "csrf": csrf})
    assert busy.status_code == 409  # a call on screen: its disposition first
    stop.set()


@pytest.mark.abuse
def test_a_call_outside_the_agents_grants_reveals_nothing_and_takes_no_disposition(site: Site) -> None:
    agent = signed_in(site.base, "ana")
    csrf = page_csrf(agent)
    events, stop = stream(agent, "/agent/events")
    events.next("agent_state")
    connect(site, site.calls.vehicles)
    events.next("call_not_visible")
    stop.set()
    replayed, stop_replay = stream(agent, "/agent/events", headers={"Last-Event-ID": "0"})
    seen = [replayed.events.get(timeout=5)]
    while seen[-1][2] != "call_not_visible":
        seen.append(replayed.events.get(timeout=5))
    stop_replay.set()
    assert all(kind != "call_connected" and "account" not in data and "phone" not in data for *_, kind, data in seen)
    path = f"/agent/calls/{site.calls.vehicles}/disposition"
    probe = {"code": "promise_to_pay", "promise_amount": "999999999", "promise_due": "2026-11-30", "csrf": csrf}
    answers = [agent.post(path, data=probe), agent.post(path, data={"code": "dispute", "csrf": csrf})]
    assert [answer.status_code for answer in answers] == [403, 403]
    assert answers[0].json() == answers[1].json()
    assert "balance" not in answers[0].text


@pytest.mark.abuse
def test_an_agents_state_changes_past_the_rate_are_refused_and_leave_no_audit_row(
    site: Site, monkeypatch: pytest.MonkeyPatch
) -> None:
    # the rate's second stands still, however slowly a loaded machine answers the posts
    monkeypatch.setattr(agent_pages, "time", SimpleNamespace(monotonic=lambda: 1000.0))
    agent = signed_in(site.base, "ana")
    csrf = page_csrf(agent)
    answers = []
    for n in range(30):
        answers.append(agent.post("/agent/state", data={"state": ("ready", "paused")[n % 2], "csrf": csrf}))
        if answers[-1].status_code == 429:
            break
    assert answers[-1].status_code == 429
    assert answers[-1].json() == {"field": "state", "error": "more than 5 state changes in a second"}
    with site.node.db.session() as session:
        audited = select(AuditEntry.id).where(AuditEntry.action == "workspace.state", AuditEntry.actor == "web:ana")
        rows = session.scalars(audited).all()
    assert len(rows) == len(answers) - 1
    bruno = signed_in(site.base, "bruno")
    assert bruno.post("/agent/state", data={"state": "ready", "csrf": page_csrf(bruno)}).status_code == 200


def test_the_state_rate_counts_each_agent_over_the_last_second() -> None:
    now = [0.0]
    rate = StateRate(2, clock=lambda: now[0])
    assert [rate.allow("ana") for _ in range(3)] == [True, True, False]
    assert rate.allow("bruno")
    now[0] = 0.99
    assert not rate.allow("ana")
    now[0] = 1.0
    assert rate.allow("ana")


@pytest.mark.abuse
def test_an_agents_streams_are_capped_and_a_new_one_tells_only_itself(site: Site) -> None:
    agent = signed_in(site.base, "ana")
    page_csrf(agent)
    opened = [stream(agent, "/agent/events") for _ in range(sse.STREAMS_PER_USER)]
    for events, _ in opened:
        events.next("agent_state")
    first = opened[0][0]
    assert first.events.empty(), "a new stream's state reached the agent's other streams"
    refused = agent.get("/agent/events")
    assert refused.status_code == 429
    assert signed_in(site.base, "bruno").get("/agent").status_code == 200  # another user is not held to ana's
    for _, stop in opened:
        stop.set()


@pytest.mark.abuse
def test_the_wallboard_is_computed_once_per_change_for_all_its_streams(
    site: Site, monkeypatch: pytest.MonkeyPatch
) -> None:
    computed: list[object] = []
    real = wallboard.board

    def counted(web: object, within: object) -> object:
        computed.append(within)
        return real(web, within)  # type: ignore[arg-type]

    monkeypatch.setattr(wallboard, "board", counted)
    supervisor, agent = signed_in(site.base, "sara"), signed_in(site.base, "ana")
    csrf = page_csrf(agent)
    boards = [stream(supervisor, "/wallboard/events") for _ in range(sse.STREAMS_PER_USER)]
    for events, _ in boards:
        events.next("wallboard")
    assert supervisor.get("/wallboard/events").status_code == 429
    computed.clear()
    assert agent.post("/agent/state", data={"state": "ready", "csrf": csrf}).status_code == 200
    for events, _ in boards:
        events.next("wallboard")
    assert len(computed) == 1, computed
    for _, stop in boards:
        stop.set()


@pytest.mark.abuse
def test_a_page_stream_the_store_failed_to_open_leaves_no_slot_page_or_subscription(
    site: Site, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The store failing between the stream's slot and its answer (here the preview offer, after the page was
    counted and subscribed) costs that request alone: the slot is given back, the roster does not count a page
    that is gone and the hub keeps no subscription (round 22 B-M1)."""
    offer, failures = PreviewOffers.offer, [sse.STREAMS_PER_USER + 1]

    def stalled(offers: PreviewOffers, agent: str) -> object:
        if failures[0] > 0:
            failures[0] -= 1
            raise sqlite3.OperationalError("database is locked")
        return offer(offers, agent)

    agent = signed_in(site.base, "ana")
    page_csrf(agent)
    hub = site.node.workspace
    subscribed = len(hub._subscribers)
    monkeypatch.setattr(PreviewOffers, "offer", stalled)
    assert [agent.get("/agent/events").status_code for _ in range(sse.STREAMS_PER_USER + 1)] == [500] * (
        sse.STREAMS_PER_USER + 1
    )
    assert failures == [0]
    assert hub.roster.get("ana").pages == 0
    assert len(hub._subscribers) == subscribed
    with agent.stream("GET", "/agent/events") as answer:
        assert answer.status_code == 200
        assert hub.roster.get("ana").pages == 1


def test_a_stream_whose_body_never_started_leaves_no_slot_page_or_subscription() -> None:
    """A stream answered but never started (its client left before the server began the body) runs no ``finally``:
    when its body is collected the slot is given back, the subscription closed and the page counted gone, once."""
    slots, closed, gone = sse.StreamSlots(total=2, per_user=1), [], []
    slot = slots.take("user:ana")
    assert slot is not None
    subscription = cast(Subscription, SimpleNamespace(close=lambda: closed.append(1)))
    answer = sse.event_stream(cast(Request, None), subscription, on_close=lambda: gone.append(1), slot=slot)
    del answer
    gc.collect()
    assert (slot.given, closed, gone) == (False, [], []), "a finalizer takes no lock: it leaves that to the loop"
    sse.end_collected()  # what the server's loop does (this body was made on none)
    assert (slot.given, closed, gone) == (True, [1], [1])
    assert slots.take("user:ana") is not None


def subscribed_back(site: Site, subscribed: int) -> bool:
    """The hub's subscriber count is ``subscribed`` again, within 10 s (collections forced: a body left unstarted
    or cancelled is only collected with its cycles)."""
    deadline = time.monotonic() + 10
    while len(site.node.workspace._subscribers) != subscribed:
        if time.monotonic() > deadline:
            return False
        gc.collect()
        time.sleep(0.05)
    return True


@pytest.mark.abuse
def test_a_wallboard_stream_ended_before_its_first_board_gives_back_its_subscription(
    site: Site, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A wallboard stream whose client left before the first board (a HEAD, which stops after the head; a tab
    closed while the board is computed) kept its hub subscription for good: only the slot was given back, and
    every later event was queued to it (round 23 B-F1)."""
    supervisor = signed_in(site.base, "sara")
    subscribed = len(site.node.workspace._subscribers)
    for _ in range(sse.STREAMS_PER_USER + 2):  # more than the slots: each is given back too
        assert supervisor.head("/wallboard/events").status_code == 200
    assert subscribed_back(site, subscribed), len(site.node.workspace._subscribers) - subscribed

    entered, release = threading.Event(), threading.Event()
    real = wallboard.board

    def held(web: object, within: object) -> object:
        entered.set()
        release.wait(10)
        return real(web, within)  # type: ignore[arg-type]

    monkeypatch.setattr(wallboard, "board", held)
    monkeypatch.setattr(wallboard, "SETTLE_S", 0.0)  # no board the HEADs had computed is taken as fresh
    cookie = f"{SESSION_COOKIE}={supervisor.cookies[SESSION_COOKIE]}"
    host, port = httpx.URL(site.base).host, httpx.URL(site.base).port
    tab = socket.create_connection((host, port))
    tab.sendall(f"GET /wallboard/events HTTP/1.1\r\nHost: x\r\nCookie: {cookie}\r\n\r\n".encode())
    assert entered.wait(10)
    tab.close()  # the tab closed while its first board is computed
    time.sleep(0.5)  # the server notices the disconnect, then the board returns
    release.set()
    assert subscribed_back(site, subscribed), len(site.node.workspace._subscribers) - subscribed
    monkeypatch.setattr(wallboard, "board", real)
    events, stop = stream(supervisor, "/wallboard/events")
    events.next("wallboard")
    stop.set()


def answered_with_body(site: Site, path: str, auth: str, framing: str) -> str:
    """The status line of a GET of ``path`` sent with a body over the pages' 64 KiB limit (its length declared,
    or chunked), the body sent as long as the server reads it."""
    host, port = httpx.URL(site.base).host, httpx.URL(site.base).port
    framed = "Content-Length: 10000000" if framing == "length" else "Transfer-Encoding: chunked"
    with socket.create_connection((host, port), timeout=10) as client:
        client.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\n{auth}\r\n{framed}\r\n\r\n".encode())
        piece = b"x" * 65536
        chunk = piece if framing == "length" else b"10000\r\n" + piece + b"\r\n"
        with contextlib.suppress(OSError):
            for _ in range(3):
                client.sendall(chunk)
        head = b""
        with contextlib.suppress(OSError):
            while b"\r\n" not in head and (more := client.recv(4096)):
                head += more
    return head.split(b"\r\n", 1)[0].decode()


@pytest.mark.abuse
@pytest.mark.parametrize("framing", ["length", "chunked"])
def test_an_event_stream_asked_with_a_body_is_refused_before_it_starts(site: Site, framing: str) -> None:
    """A GET of an event stream with a body past the pages' limit answered 500 and logged a traceback: the
    stream's disconnect watch read the body through the limit after the stream had started (round 23 B-F2). A
    stream takes no body: it is refused (413) before any slot or subscription is taken."""
    agent, supervisor = signed_in(site.base, "ana"), signed_in(site.base, "sara")
    page_csrf(agent)
    hub = site.node.workspace
    subscribed = len(hub._subscribers)
    asked = [
        ("/agent/events", f"Cookie: {SESSION_COOKIE}={agent.cookies[SESSION_COOKIE]}"),
        ("/wallboard/events", f"Cookie: {SESSION_COOKIE}={supervisor.cookies[SESSION_COOKIE]}"),
        ("/api/workspace/v1/events", f"Authorization: Bearer {INTEGRATION_TOKEN}"),
    ]
    answers = [(path, answered_with_body(site, path, auth, framing)) for path, auth in asked * sse.STREAMS_PER_USER]
    assert [(path, line.split(" ")[1]) for path, line in answers] == [(path, "413") for path, _ in answers]
    with site.node.db.session() as session:
        actions = list(session.scalars(select(AuditEntry.action).where(AuditEntry.action.like("web.%"))))
    assert "web.failed" not in actions
    assert actions.count("web.rejected") == 2 * sse.STREAMS_PER_USER  # the agent's and the supervisor's refusals
    assert subscribed_back(site, subscribed)
    assert hub.roster.get("ana").pages == 0
    for events, stop in (stream(agent, "/agent/events"), stream(supervisor, "/wallboard/events")):
        assert events.opened.wait(10)
        stop.set()
