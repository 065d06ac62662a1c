"""A NUL in a request's path, query or form or JSON text is refused (400, audited with the path escaped) before
any route sees it: PostgreSQL stores no NUL, so it answered 500 with a traceback and wrote no audit entry."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from cartera.core.hooks import load_plugins
from cartera.node import Node
from tests.browser.seed import seed
from tests.conftest import write_sites
from tests.test_web_pages import Site, csrf_of, sign_in
from tests.test_workspace_dispositions import open_desk, refused

pytestmark = pytest.mark.abuse

PATHS = ("/nope%00", "/lang/%00", "/recordings/%00", "/agent/calls/%00/codes", "/recordings?agent=a%00")


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def any_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Site]:
    database = request.getfixturevalue("postgres_url") if request.param == "postgresql" else None
    config = write_sites(tmp_path, database=database) if database else write_sites(tmp_path)
    node = Node.open(config, "t", load_plugins(entry_points=False))
    try:
        yield Site(node, seed(node, tmp_path / "spool"), config)
    finally:
        node.close()


def test_a_nul_anywhere_in_a_request_is_refused_and_audited(any_store: Site) -> None:
    site = any_store
    anonymous = site.client()
    for path in PATHS:
        before = len(site.audits())
        answer = anonymous.get(path, follow_redirects=False)
        assert answer.status_code < 500, path
        assert "Traceback" not in answer.text
        assert len(site.audits()) == before + 1, path
    form = anonymous.get("/login")
    before = len(site.audits())
    answer = anonymous.post("/login", data={"user": "sara\x00", "password": "x" * 12, "csrf": csrf_of(form.text)})
    assert answer.status_code == 400
    assert [(entry.action, entry.subject) for entry in site.audits()[before:]] == [("web.rejected", "/login")]
    agent = sign_in(site.client(), "ana")
    note = agent.post("/agent/calls/1/disposition", data={"code": "no_answer", "note": "a\x00b", "csrf": "x"})
    assert (note.status_code, note.json()["field"]) == (400, "request")
    api = site.client().post("/api/workspace/v1/dispositions", json={"attempt_id": 1, "code": "x", "agent": "a\x00"})
    assert (api.status_code, api.json()["field"]) == (400, "request")
    escaped = site.client().get("/nope%00")
    assert escaped.status_code == 404
    assert site.audits()[-1].subject == "/nope\\x00"


@pytest.mark.parametrize("note", ["pagará\x1b[2J", "pagará\ud800"], ids=["escape", "lone-surrogate"])
def test_a_note_with_a_control_character_is_refused_naming_the_field(
    tmp_path: Path, open_node: Callable[..., Node], note: str
) -> None:
    desk = open_desk(tmp_path, open_node)
    error = refused(desk, desk.call(), "right_party_contact", note=note)
    assert (error.field, str(error)) == ("note", "note: holds a control, bidi or invisible format character")
