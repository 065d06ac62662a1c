"""Strangers' sign-in traffic cannot take the pages' capacity from signed-in users (round 20 H4): anonymous
work (the sign-in form, sign-in posts, any request carrying no session) has a lane of its own; when it is full
strangers get 503 and signed-in agents' requests still get a worker."""

from __future__ import annotations

import re
import threading

import httpx
import pytest

from tests import test_agent_page
from tests.test_agent_page import Site, page_csrf, signed_in, stream
from tests.test_web_abuse import held_password_checks

site = test_agent_page.site  # the running node: one page worker, no queue

pytestmark = pytest.mark.abuse


def test_a_sign_in_flood_does_not_shed_a_signed_in_agents_state_changes(
    site: Site, monkeypatch: pytest.MonkeyPatch
) -> None:
    agent = signed_in(site.base, "ana")
    csrf = page_csrf(agent)
    events, stop = stream(agent, "/agent/events")

    def stranger_signs_in() -> int:
        with httpx.Client(base_url=site.base, timeout=30) as stranger:
            form = stranger.get("/login")
            found = re.search(r'name="csrf" value="([^"]+)"', form.text)
            assert found is not None
            data = {"user": "ana", "password": "wrong", "csrf": found.group(1)}
            return stranger.post("/login", data=data).status_code

    checking, release = held_password_checks(monkeypatch)
    try:
        events.next("agent_state")
        statuses: list[int] = []
        holder = threading.Thread(target=lambda: statuses.append(stranger_signs_in()))
        holder.start()  # holds the anonymous lane's only worker while its password is checked
        assert checking.wait(30)
        with httpx.Client(base_url=site.base, timeout=30) as stranger:
            flood = [stranger.get("/login").status_code for _ in range(5)]
            anonymous_agent_page = stranger.get("/agent", follow_redirects=False).status_code
        assert flood == [503] * 5, "the anonymous lane is full: strangers are shed"
        assert anonymous_agent_page == 503, "a request without a session is a stranger's, whatever its path"
        changes = [
            agent.post("/agent/state", data={"state": state, "reason": "lunch", "csrf": csrf}).status_code
            for state in ("paused", "ready", "paused", "ready")
        ]
        assert changes == [200] * 4, "a signed-in agent's state changes were shed by strangers' sign-ins"
        release.set()
        holder.join(30)
        assert statuses == [401]
    finally:
        release.set()
        stop.set()
        agent.close()
