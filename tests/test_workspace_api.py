"""The workspace API for a centre's own desktop, on the node's real HTTP server: its token, the calls pushed as
server-sent events, a disposition posted over REST with each refusal naming its field, and its OpenAPI file."""

from __future__ import annotations

import logging
import sqlite3
from pathlib import Path

import httpx
import pytest
from sqlalchemy import select

from cartera.core.store.schema import AuditEntry
from cartera.web import sse
from cartera.web.context import Web
from cartera.web.workspace_api import API_PREFIX, render
from tests import test_agent_page
from tests.test_agent_page import INTEGRATION_TOKEN, Site, connect, stream

site = test_agent_page.site  # the running node's fixture

OPENAPI_FILE = Path(__file__).resolve().parents[1] / "docs" / "workspace-api.openapi.json"
JSON = {"Content-Type": "application/json"}


def api(running: Site, token: str | None = INTEGRATION_TOKEN) -> httpx.Client:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return httpx.Client(base_url=running.base + API_PREFIX, headers=headers, timeout=10)


def test_a_desktop_hears_the_call_and_posts_its_disposition(site: Site) -> None:
    desk = api(site)
    events, stop = stream(desk, "/events")
    assert events.opened.wait(5)
    connect(site, site.calls.colombian)
    _, _, connected = events.next("call_connected")
    assert connected["account"] == "BANCO/TARJETAS/BCO-1"
    assert (connected["attempt_id"], connected["extension"]) == (site.calls.colombian, "agent-01")

    base = {"agent": "ana", "attempt_id": site.calls.colombian}
    huge = {"code": "promise_to_pay", "promise": [{"amount": "999999999999", "due": "2026-11-30"}]}
    early = desk.post("/dispositions", json=base | huge)  # a right-party code before the desktop confirmed it
    assert (early.status_code, early.json()["field"]) == (400, "right_party")
    assert "balance" not in early.text
    assert "500000" not in early.text
    stranger = desk.post("/right-party", json=base | {"agent": "bruno"})
    assert (stranger.status_code, stranger.json()["field"]) == (403, "attempt")
    confirmed = desk.post("/right-party", json=base)
    assert confirmed.json() == base
    past = desk.post(
        "/dispositions", json=base | {"code": "promise_to_pay", "promise": [{"amount": "100", "due": "2020-01-01"}]}
    )
    assert past.status_code == 400
    assert past.json()["field"].startswith("promise")
    stranger = desk.post("/dispositions", json=base | {"agent": "bruno", "code": "right_party_contact"})
    assert stranger.status_code == 403
    assert stranger.json()["field"] == "attempt"
    saved = desk.post("/dispositions", json=base | {"code": "right_party_contact", "note": "desde el CRM"})
    assert saved.status_code == 201, saved.text
    assert saved.json()["code"] == "right_party_contact"
    twice = desk.post("/dispositions", json=base | {"code": "right_party_contact"})
    assert twice.status_code == 409
    stop.set()
    with site.node.db.reading() as session:
        audited = session.execute(
            select(AuditEntry.actor, AuditEntry.subject).where(AuditEntry.action == "workspace.right_party")
        ).all()
    assert audited == [("integration:crm", f"attempt:{site.calls.colombian}")]


def test_without_a_valid_token_nothing_is_heard_or_recorded(site: Site) -> None:
    for token in (None, "crm-token-0123456789abcdefghiX"):
        client = api(site, token)
        assert client.get("/events").status_code == 401
        refused = client.post("/dispositions", json={"agent": "ana", "attempt_id": 1, "code": "right_party_contact"})
        assert refused.status_code == 401
        assert client.post("/right-party", json={"agent": "ana", "attempt_id": 1}).status_code == 401
        assert refused.json()["field"] == "Authorization"
        assert refused.headers["WWW-Authenticate"] == "Bearer"


def test_the_committed_openapi_file_is_current() -> None:
    assert OPENAPI_FILE.read_text(encoding="utf-8") == render(), (
        "docs/workspace-api.openapi.json is stale: "
        "python -m cartera.web.workspace_api > docs/workspace-api.openapi.json"
    )


@pytest.mark.abuse
def test_the_token_is_checked_before_the_body_and_a_huge_id_is_refused_naming_it(site: Site) -> None:
    anonymous = api(site, None).post("/dispositions", content=b"{nope", headers={"Content-Type": "application/json"})
    assert anonymous.status_code == 401
    assert anonymous.json()["field"] == "Authorization"
    for huge in (2**63, 10**23):
        body = {"agent": "ana", "attempt_id": huge, "code": "right_party_contact"}
        refused = api(site).post("/dispositions", json=body)
        assert refused.status_code == 422, refused.text
        assert refused.json()["field"] == "body.attempt_id"


@pytest.mark.abuse
def test_an_integrations_streams_are_capped(site: Site) -> None:
    desk = api(site)
    opened = [stream(desk, "/events") for _ in range(sse.STREAMS_PER_USER)]
    for events, _ in opened:
        assert events.opened.wait(5)
    assert desk.get("/events").status_code == 429
    for _, stop in opened:
        stop.set()


@pytest.mark.abuse
def test_a_refused_token_is_audited_and_logged(site: Site, caplog: pytest.LogCaptureFixture) -> None:
    """Round 21 L4: the API's 401s left no trace (the creditor API's are audited and logged), so someone probing the
    desktop API's token went unseen. Each is audited as ``web.rejected`` within the strangers' budget; the log
    counts them once a minute."""
    with caplog.at_level(logging.WARNING, logger="cartera.web"):
        for token in (None, "crm-token-0123456789abcdefghiX"):
            client = api(site, token)
            assert client.get("/events").status_code == 401
            body = {"agent": "ana", "attempt_id": 1, "code": "right_party_contact"}
            assert client.post("/dispositions", json=body).status_code == 401
            assert client.post("/dispositions", content=b"{nope", headers=JSON).status_code == 401
    with site.node.db.reading() as session:
        rejected = session.execute(
            select(AuditEntry.actor, AuditEntry.subject, AuditEntry.details).where(AuditEntry.action == "web.rejected")
        ).all()
    paths = [f"{API_PREFIX}/events", f"{API_PREFIX}/dispositions", f"{API_PREFIX}/dispositions"] * 2
    assert [subject for _, subject, _ in rejected] == paths
    assert {actor for actor, _, _ in rejected} == {"web:anonymous@127.0.0.1"}
    assert {details["status"] for _, _, details in rejected} == {401}
    assert INTEGRATION_TOKEN[:12] not in caplog.text
    logged = [record for record in caplog.records if record.getMessage() == "workspace.unauthorized"]
    assert len(logged) == 1, "counted once a minute, not one line each"


@pytest.mark.abuse
def test_a_stream_refused_by_a_failing_store_gives_its_slot_back(site: Site, monkeypatch: pytest.MonkeyPatch) -> None:
    """The store failing while a stream opens (its audit write: a lock past the busy timeout, a database gone) costs
    that request alone: the integration's slot is given back, so once the store answers its desktop streams again
    (round 22 B-M1: after four such failures its streams were refused 429 until the node restarted)."""
    audit, failures = Web.audit, [sse.STREAMS_PER_USER + 1]

    def stalled(web: Web, actor: str, action: str, subject: str, **details: object) -> None:
        if action == "workspace.integration_stream" and failures[0] > 0:
            failures[0] -= 1
            raise sqlite3.OperationalError("database is locked")
        audit(web, actor, action, subject, **details)

    monkeypatch.setattr(Web, "audit", stalled)
    desk = api(site)
    assert [desk.get("/events").status_code for _ in range(sse.STREAMS_PER_USER + 1)] == [500] * (
        sse.STREAMS_PER_USER + 1
    )
    with desk.stream("GET", "/events") as answer:
        assert answer.status_code == 200
        assert answer.headers["content-type"].startswith("text/event-stream")
    assert failures == [0]
