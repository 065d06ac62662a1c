"""A refusal never echoes what the agent typed: redaction masked a typed secret in the echo (``not '***'``), so an
agent could test guesses at the site's secrets field by field. A right guess and a wrong one now get the same
bytes; and an agent's refused dispositions are limited per second as its state changes are (429, unaudited)."""

from __future__ import annotations

import itertools
import types

import pytest
import sqlalchemy as sa

from cartera.core.redaction import register_secret
from cartera.core.store.schema import AuditEntry
from cartera.web import agent_pages
from tests import test_agent_page
from tests.test_agent_page import Site, page_csrf, signed_in

pytestmark = pytest.mark.abuse

site = test_agent_page.site
SECRET = "lima2024"
GUESSES = (SECRET, "lima2025")


def disposition(field: str, guess: str) -> dict[str, str]:
    return {"code": "promise_to_pay", "promise_amount": "100", "promise_due": "2026-12-01", field: guess}


def test_a_right_guess_at_a_secret_and_a_wrong_one_get_the_same_answer(
    site: Site, monkeypatch: pytest.MonkeyPatch
) -> None:
    register_secret(SECRET)  # as configuration registers a plugin's password it resolves
    ticks = itertools.count(step=10)  # seconds apart: no answer here is the rate limit's
    monkeypatch.setattr(agent_pages, "time", types.SimpleNamespace(monotonic=lambda: float(next(ticks))))
    agent = signed_in(site.base, "ana")
    csrf = page_csrf(agent)
    for field in ("promise_amount", "promise_due", "callback_at", "line_type"):
        answers = [
            agent.post("/agent/calls/1/disposition", data={**disposition(field, guess), "csrf": csrf})
            for guess in GUESSES
        ]
        assert answers[0].status_code == 400, (field, answers[0].text)
        assert answers[0].content == answers[1].content, field
    paused = [
        agent.post("/agent/state", data={"state": "paused", "reason": f"{guess}\x07", "csrf": csrf})
        for guess in GUESSES
    ]
    assert paused[0].status_code == 409
    assert paused[0].content == paused[1].content


def test_refused_dispositions_past_the_rate_answer_429_unaudited(site: Site, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(agent_pages, "time", types.SimpleNamespace(monotonic=lambda: 0.0))  # one second's posts
    agent = signed_in(site.base, "ana")
    csrf = page_csrf(agent)
    wrong = {"code": "no_such_code", "csrf": csrf}

    def audited() -> int:
        with site.node.db.reading() as session:
            return session.scalar(sa.select(sa.func.count()).select_from(AuditEntry)) or 0

    statuses = [
        agent.post("/agent/calls/1/disposition", data=wrong).status_code for _ in range(agent_pages.STATE_CHANGES_PER_S)
    ]
    assert 429 not in statuses
    before = audited()
    flood = [agent.post("/agent/calls/1/disposition", data=wrong) for _ in range(20)]
    assert {answer.status_code for answer in flood} == {429}
    assert flood[0].json()["field"] == "disposition"
    assert audited() == before
