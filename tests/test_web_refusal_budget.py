"""Strangers' refused requests are audited within a budget per address (round 16 M3): every anonymous request to
an unknown path, a missing static file or the agent's stream wrote an audit row, kept forever (one client added
~250 a second). Anonymous requests to the recordings' routes are still audited, each."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from cartera.users.sessions import FREE_TRIES
from cartera.web.app import build_app
from cartera.web.refusals import PER_MINUTE, TOTAL_PER_MINUTE, WINDOW_S, AnonymousRefusals
from cartera.web.server import WebServer
from tests.peers.net import free_port
from tests.test_web_pages import Site, csrf_of
from tests.test_web_pages import site as pages_site

pytestmark = pytest.mark.abuse
site = pages_site  # the pages' fixture: site t, seeded

FLOOD = 500


@contextmanager
def served_app(app: FastAPI) -> Iterator[None]:
    with WebServer(app, "127.0.0.1", free_port()):
        yield


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_flood_of_anonymous_refusals_adds_at_most_the_budget_and_one_summary(
    site: Site, caplog: pytest.LogCaptureFixture
) -> None:
    app = build_app(site.node.web_services())
    clock = Clock()
    budget: AnonymousRefusals = app.state.refusal_audit.budget
    budget.clock = clock
    stranger = TestClient(app, raise_server_exceptions=False)
    other = TestClient(app, raise_server_exceptions=False, client=("203.0.113.9", 40000))
    rid = site.seeded.recordings["BCO-1"]
    before = len(site.audits())
    paths = ("/no-such-page", "/static/missing.css", "/agent/events")
    for n in range(FLOOD):
        assert stranger.get(paths[n % len(paths)], follow_redirects=False).status_code in (303, 404)
        if n == FLOOD // 2:  # the recordings' routes are audited during the flood
            recorded = len(site.audits("web.rejected"))
            assert stranger.get(f"/recordings/{rid}", follow_redirects=False).status_code == 303
            entry = site.audits("web.rejected")[-1]
            assert len(site.audits("web.rejected")) == recorded + 1
            assert (entry.actor, entry.subject) == ("web:anonymous@testclient", f"/recordings/{rid}")
    assert other.get("/no-such-page").status_code == 404  # another address has a budget of its own
    added = site.audits()[before:]
    assert len(added) == PER_MINUTE + 2
    assert [entry.action for entry in added] == ["web.rejected"] * len(added)
    assert {entry.actor for entry in added} == {"web:anonymous@testclient", "web:anonymous@203.0.113.9"}
    clock.now += WINDOW_S
    with caplog.at_level(logging.WARNING, logger="cartera.web"):
        assert stranger.get("/no-such-page").status_code == 404
    summary, audited = site.audits()[-2:]
    assert (summary.action, summary.details["count"], summary.details["addresses"]) == (
        "web.rejected_unaudited",
        FLOOD - PER_MINUTE,
        1,
    )
    assert (audited.action, audited.subject) == ("web.rejected", "/no-such-page")  # a new minute, a new budget
    assert [record.getMessage() for record in caplog.records] == ["web.rejected_unaudited"]
    assert len(site.audits()) == before + PER_MINUTE + 4


def test_strangers_recordings_requests_and_throttled_sign_ins_have_budgets_of_their_own(site: Site) -> None:
    """Round 17: anonymous requests under /recordings were audited each, and so was each sign-in refused while
    locked: one client added ~260 rows a second through either. Each has a budget per address of its own, so a
    flood of unknown paths still leaves a stranger's first recordings requests audited."""
    services = site.node.web_services()
    frozen = datetime.now(UTC)  # sign-in throttling's time stands still: a slow machine does not end a delay
    services.throttle.now = lambda: frozen
    app = build_app(services)
    app.state.refusal_audit.budget.clock = Clock()
    stranger = TestClient(app, raise_server_exceptions=False)
    for _ in range(2 * PER_MINUTE):
        assert stranger.get("/no-such-page").status_code == 404
    before = len(site.audits())
    for n in range(3 * PER_MINUTE):
        assert stranger.get(f"/recordings/{n}x", follow_redirects=False).status_code == 303
    assert len(site.audits()) == before + PER_MINUTE
    for _ in range(FREE_TRIES):
        form = stranger.get("/login")
        stranger.post("/login", data={"user": "ana", "password": "wrong-password", "csrf": csrf_of(form.text)})
    for _ in range(2 * PER_MINUTE):
        form = stranger.get("/login")
        answer = stranger.post("/login", data={"user": "ana", "password": "x", "csrf": csrf_of(form.text)})
        assert answer.status_code == 429
    assert len(site.audits("web.login_throttled")) == PER_MINUTE


def test_strangers_refusals_are_bounded_as_a_whole_and_an_ipv6_host_is_one_address() -> None:
    """Round 21 M3: one host owning many addresses (an IPv6 /64, a proxy's clients, 127.x.y.z) had every refusal
    audited, ~580 rows a second: the budget was per address, with up to 10,000 addresses a minute."""
    clock = Clock()
    budget = AnonymousRefusals(clock=clock)
    many = [f"web:anonymous@10.{n // 250}.{n % 250}.9" for n in range(1000)]
    audited = sum(budget.admit(actor, "/nope")[0] for actor in many for _ in range(PER_MINUTE))
    assert audited == TOTAL_PER_MINUTE, "the strangers' refusals of a minute are bounded as a whole"
    assert budget.admit("web:anonymous@10.0.0.9", "/recordings/7")[0], "the recordings' routes: a budget apart"
    host = [f"web:anonymous@2001:db8:1:2:{n:x}::1" for n in range(100)]
    clock.now += WINDOW_S
    admitted = [budget.admit(actor, "/nope") for actor in host for _ in range(PER_MINUTE)]
    unaudited = (1000 * PER_MINUTE - TOTAL_PER_MINUTE, 1000 - TOTAL_PER_MINUTE // PER_MINUTE)
    assert admitted[0][1] == unaudited, "the last minute's summary: refusals and addresses left unaudited"
    assert sum(audit for audit, _ in admitted) == PER_MINUTE, "an IPv6 /64 is one address"
    assert budget.admit("web:anonymous@2001:db8:1:3::1", "/nope")[0], "another /64 is another address"


def test_the_minutes_summary_is_written_when_the_minute_ends_and_at_stop(
    site: Site, caplog: pytest.LogCaptureFixture
) -> None:
    """Round 23 B-F3: the summary of a minute's unaudited refusals came only with the next stranger's refusal, so
    a flood that stopped left no count in the audit or the log, and a node stopped before lost it. It is written
    when the minute ends (a timer set at its first unaudited refusal), once, and what is left at the server's
    stop."""
    app = build_app(site.node.web_services())
    audit = app.state.refusal_audit
    clock, timers = Clock(), []
    audit.budget.clock = clock
    audit.timer = lambda delay, flush: timers.append((delay, flush))
    stranger = TestClient(app, raise_server_exceptions=False)
    for _ in range(PER_MINUTE + 20):
        assert stranger.get("/no-such-page").status_code == 404
    assert [delay for delay, _ in timers] == [WINDOW_S]  # one timer, at the end of the minute
    assert not site.audits("web.rejected_unaudited")
    clock.now += WINDOW_S
    with caplog.at_level(logging.WARNING, logger="cartera.web"):
        timers[0][1]()
    assert [
        (entry.details["count"], entry.details["addresses"]) for entry in site.audits("web.rejected_unaudited")
    ] == [(20, 1)]
    assert [record.getMessage() for record in caplog.records] == ["web.rejected_unaudited"]
    assert stranger.get("/no-such-page").status_code == 404  # the next minute's first: no second summary
    assert len(site.audits("web.rejected_unaudited")) == 1

    with served_app(app):  # the same app on a real server, stopped after its flood
        stranger = TestClient(app, raise_server_exceptions=False)
        for _ in range(PER_MINUTE - 1 + 5):  # the minute's budget less the one above, and 5 past it
            assert stranger.get("/no-such-page").status_code == 404
        assert len(site.audits("web.rejected_unaudited")) == 1
    assert [entry.details["count"] for entry in site.audits("web.rejected_unaudited")] == [20, 5]
