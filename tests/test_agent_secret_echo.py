"""A dialer whose failure text echoes its login (``Secret: ...``, as a misbehaving AMI peer does) never shows it to
an agent: every answer of the agent's page and of the workspace API is searched for the secret, while the dialer
is down and when an agent's own input carrying it is refused."""

from __future__ import annotations

import httpx
import pytest

from cartera.core.redaction import register_secret
from cartera.web.i18n import translate
from cartera.web.workspace_api import API_PREFIX
from tests import test_agent_page
from tests.test_agent_dialer_down import dialer_down, post_state
from tests.test_agent_page import INTEGRATION_TOKEN, Site, page_csrf, signed_in, stream
from tests.workspace_seed import uncalled_account

pytestmark = pytest.mark.abuse

site = test_agent_page.site
SECRET = "AmiQ7k-echoed-login-secret-AmiZ9w"
ECHO = f"Authentication failed for Action: Login Username: cartera Secret: {SECRET}"


def test_no_agent_or_workspace_api_answer_carries_the_secret_a_down_dialer_echoes(site: Site) -> None:
    register_secret(SECRET)  # as configuration registers the AMI secret it resolves
    account_id = uncalled_account(site.node)
    agent = signed_in(site.base, "ana")
    csrf = page_csrf(agent)
    events, stop = stream(agent, "/agent/events")
    assert events.next("agent_state")[2]["dialer_down"] is False
    api = httpx.Client(base_url=site.base, timeout=10, headers={"Authorization": f"Bearer {INTEGRATION_TOKEN}"})
    answers: dict[str, httpx.Response] = {}
    with dialer_down(site.node, ECHO):
        answers["ready"] = post_state(agent, csrf, "ready")
        answers["paused"] = post_state(agent, csrf, "paused")
        answers["preview"] = agent.post("/agent/preview", data={"account_id": str(account_id), "csrf": csrf})
        answers["page"] = agent.get("/agent")
        answers["search"] = agent.get("/agent/accounts", params={"q": "R"})
        answers["health"] = agent.get("/healthz")
        answers["bad pause reason"] = agent.post(
            "/agent/state", data={"state": "paused", "reason": f"{SECRET}\x07", "csrf": csrf}
        )
        disposition = {"agent": "ana", "attempt_id": 999999, "code": "promise_to_pay"}
        answers["api disposition"] = api.post(f"{API_PREFIX}/dispositions", json=disposition)
        told = events.next("agent_state")[2]
    stop.set()
    for name in ("ready", "paused", "preview"):
        assert answers[name].status_code == 503, answers[name].text
        assert answers[name].json() == {"field": "dialer", "error": translate("es", "agent.dialer_down")}
    assert answers["bad pause reason"].status_code == 409
    assert (answers["page"].status_code, answers["search"].status_code) == (200, 200)
    assert answers["api disposition"].status_code in (400, 403, 404)
    assert told["dialer_down"] is True
    for name, answer in answers.items():
        for form in (SECRET, SECRET[:6], SECRET[-6:]):
            assert form not in answer.text, (name, answer.text[:500])
        assert "Authentication failed" not in answer.text, name
    assert SECRET not in str(told)
