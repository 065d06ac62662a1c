"""The supervisors' pages over HTTP (no browser): sign-in, CSRF, throttling, scope, ranges, bad input, KPIs."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select, update

from cartera.core.hooks import load_plugins
from cartera.core.store.schema import AuditEntry, WebSession
from cartera.node import Node
from cartera.users.directory import UserDirectory
from cartera.users.sessions import FREE_TRIES
from cartera.web.app import build_app
from tests.browser.seed import PASSWORD, Seeded, seed
from tests.conftest import write_sites


@dataclass
class Site:
    node: Node
    seeded: Seeded
    config: Path

    def client(self) -> TestClient:
        return TestClient(build_app(self.node.web_services()), raise_server_exceptions=False)

    def audits(self, action: str | None = None) -> list[AuditEntry]:
        with self.node.db.session() as session:
            query = select(AuditEntry).order_by(AuditEntry.id)
            return list(session.scalars(query if action is None else query.where(AuditEntry.action == action)))


@pytest.fixture
def site(tmp_path: Path) -> Iterator[Site]:
    config = write_sites(tmp_path)
    node = Node.open(config, "t", load_plugins(entry_points=False))
    try:
        yield Site(node, seed(node, tmp_path / "spool"), config)
    finally:
        node.close()


def web_settings(directory: Path, settings: str) -> Path:
    """A sites.toml for site ``t`` (as :func:`write_sites`) with ``settings`` added to its ``[sites.t.web]``."""
    config = write_sites(directory)
    config.write_text(config.read_text().replace("[sites.t.web]\n", f"[sites.t.web]\n{settings}\n"))
    return config


def csrf_of(html: str) -> str:
    match = re.search(r'name="csrf" value="([^"]+)"', html)
    assert match, "no CSRF field in the page"
    return match.group(1)


def sign_in(client: TestClient, user: str, password: str = PASSWORD) -> TestClient:
    form = client.get("/login")
    answer = client.post(
        "/login", data={"user": user, "password": password, "csrf": csrf_of(form.text)}, follow_redirects=False
    )
    assert answer.status_code == 303, answer.text
    return client


def test_sign_in_sets_a_strict_httponly_cookie_and_sign_out_ends_the_session(site: Site) -> None:
    client = site.client()
    assert client.get("/recordings", follow_redirects=False).headers["location"] == "/login"
    form = client.get("/login")
    answer = client.post(
        "/login", data={"user": "ana", "password": PASSWORD, "csrf": csrf_of(form.text)}, follow_redirects=False
    )
    cookie = answer.headers["set-cookie"].lower()
    assert "cartera_session=" in cookie
    assert "httponly" in cookie
    assert "samesite=strict" in cookie
    assert "secure" not in cookie.split("cartera_signin")[0]  # plain http on loopback
    page = client.get("/recordings")
    assert page.status_code == 200
    assert "BCO-1" in page.text
    assert client.post("/logout", data={"csrf": "forged"}, follow_redirects=False).status_code == 403
    assert client.get("/recordings").status_code == 200, "a forged logout must not end the session"
    assert client.post("/logout", data={"csrf": csrf_of(page.text)}, follow_redirects=False).status_code == 303
    assert client.get("/recordings", follow_redirects=False).headers["location"].startswith("/login")
    assert [e.actor for e in site.audits("web.login")] == ["web:ana"]
    assert [e.actor for e in site.audits("web.logout")] == ["web:ana"]


def test_https_public_url_makes_the_session_cookie_secure(tmp_path: Path) -> None:
    node = Node.open(
        web_settings(tmp_path, 'public_url = "https://rec.example"'), "t", load_plugins(entry_points=False)
    )
    try:
        seed(node, tmp_path / "spool")
        client = TestClient(build_app(node.web_services()), base_url="https://testserver")
        form = client.get("/login")
        answer = client.post(
            "/login", data={"user": "ana", "password": PASSWORD, "csrf": csrf_of(form.text)}, follow_redirects=False
        )
        assert "secure" in answer.headers["set-cookie"].split(",")[0].lower()
    finally:
        node.close()


def test_sign_in_without_the_form_token_is_refused(site: Site) -> None:
    client = site.client()
    client.get("/login")
    answer = client.post("/login", data={"user": "ana", "password": PASSWORD, "csrf": "guess"})
    assert answer.status_code == 403
    assert "Traceback" not in answer.text
    assert site.audits("web.login") == []
    assert site.audits("web.rejected")[-1].details["reason"] == "missing or wrong CSRF token"


def test_failed_sign_ins_slow_the_user_down_and_a_restart_does_not_undo_it(site: Site) -> None:
    client = site.client()
    for _ in range(FREE_TRIES):
        form = client.get("/login")
        answer = client.post("/login", data={"user": "ana", "password": "wrong-password", "csrf": csrf_of(form.text)})
        assert answer.status_code == 401
    restarted = site.client()  # a new app on the same store, as after a restart
    form = restarted.get("/login")
    answer = restarted.post("/login", data={"user": "ana", "password": PASSWORD, "csrf": csrf_of(form.text)})
    assert answer.status_code == 429, "the right password must not get through before the wait is over"
    assert len(site.audits("web.login_failed")) == FREE_TRIES
    assert len(site.audits("web.login_throttled")) == 1
    sign_in(restarted, "carla")  # another user from the same address is not locked (yet)


def test_one_address_trying_many_names_is_locked_too(site: Site) -> None:
    client = site.client()
    for attempt in range(20):
        form = client.get("/login")
        client.post("/login", data={"user": f"nobody{attempt}", "password": "x", "csrf": csrf_of(form.text)})
    form = client.get("/login")
    answer = client.post("/login", data={"user": "carla", "password": PASSWORD, "csrf": csrf_of(form.text)})
    assert answer.status_code == 429


def test_an_expired_session_sends_back_to_sign_in(site: Site) -> None:
    client = sign_in(site.client(), "ana")
    with site.node.db.session() as session:
        session.execute(update(WebSession).values(expires_at=datetime(2000, 1, 1, tzinfo=UTC)))
    answer = client.get("/recordings", follow_redirects=False)
    assert answer.status_code == 303
    assert answer.headers["location"] == "/login?expired=1"


def test_a_disabled_user_loses_its_session(site: Site) -> None:
    client = sign_in(site.client(), "ana")
    UserDirectory(site.node.db).disable("ana")
    assert client.get("/recordings", follow_redirects=False).status_code == 303


def rows(html: str) -> list[str]:
    return re.findall(r'data-recording="(\d+)"', html)


def test_search_by_each_field_with_paging(site: Site) -> None:
    client = sign_in(site.client(), "ana")
    ids = site.seeded.recordings
    assert len(rows(client.get("/recordings").text)) == 4  # 3 archived + 1 pending
    cases = {
        "account=BCO-2": [ids["BCO-2"]],
        "phone=300 111 2233": [ids["BCO-1"]],
        "agent=agent-01": [ids["VEH-7"], ids["BCO-1"]],
        "portfolio=VEHICULOS": [ids["VEH-7"]],
        "outcome=answered&portfolio=TARJETAS": [ids["BCO-2"], ids["BCO-1"]],
        "since=2026-11-23&until=2026-11-23": [ids["VEH-7"], ids["BCO-2"], site.seeded.pending_id, ids["BCO-1"]],
        "since=2026-11-24": [],
    }
    for query, expected in cases.items():
        page = client.get(f"/recordings?{query}")
        assert page.status_code == 200, query
        assert rows(page.text) == [str(i) for i in expected], query
    search = site.audits("recordings.search")[-1]
    assert search.actor == "web:ana"
    assert search.details["filters"]["since"].startswith("2026-11-24")
    assert 'rel="next"' not in client.get("/recordings").text
    assert rows(client.get("/recordings?page=2").text) == []


def test_a_portfolio_grant_limits_search_play_and_kpis(site: Site) -> None:
    client = sign_in(site.client(), "beto")  # BANCO/VEHICULOS only
    assert rows(client.get("/recordings").text) == [str(site.seeded.recordings["VEH-7"])]
    assert rows(client.get("/recordings?portfolio=TARJETAS").text) == []
    other = site.seeded.recordings["BCO-1"]
    for path in (f"/recordings/{other}", f"/recordings/{other}/audio", f"/recordings/{other}/download"):
        answer = client.get(path)
        assert answer.status_code == 404, path
        assert "BCO-1" not in answer.text, path
    assert client.get(f"/recordings/{site.seeded.pending_id}").status_code == 404  # no account: site-wide grants only
    kpi = client.get("/kpi?since=2026-11-20&until=2026-11-30").text
    assert "BANCO/VEHICULOS" in kpi
    assert "TARJETAS" not in kpi


def test_a_user_of_another_site_sees_nothing_of_this_one(site: Site) -> None:
    client = sign_in(site.client(), "otro")
    rid = site.seeded.recordings["BCO-1"]
    for path in ("/recordings", "/recordings?account=BCO-1", f"/recordings/{rid}", f"/recordings/{rid}/audio", "/kpi"):
        answer = client.get(path)
        assert answer.status_code == 403, path
        assert "no tiene acceso a la sede t" in answer.text, path
        assert "BCO-1" not in answer.text, path
    assert {e.details["reason"] for e in site.audits("web.rejected") if e.actor == "web:otro"} == {
        "no grant for site t"
    }
    assert site.audits("recordings.search") == []


def test_range_requests_play_and_download_are_audited(site: Site) -> None:
    client = sign_in(site.client(), "ana")
    rid = site.seeded.recordings["BCO-1"]
    whole = client.get(f"/recordings/{rid}/audio")
    assert whole.status_code == 200
    assert whole.headers["accept-ranges"] == "bytes"
    data = whole.content
    size = len(data)
    assert hashlib.sha256(data).hexdigest() == site.seeded.sha256[rid]
    partial = {
        "bytes=0-99": (0, 99),
        "bytes=100-": (100, size - 1),
        "bytes=-50": (size - 50, size - 1),
        f"bytes=10-{size + 5000}": (10, size - 1),  # an end past the file is cut to it
    }
    for header, (start, end) in partial.items():
        answer = client.get(f"/recordings/{rid}/audio", headers={"Range": header})
        assert answer.status_code == 206, header
        assert answer.headers["content-range"] == f"bytes {start}-{end}/{size}", header
        assert answer.content == data[start : end + 1], header
    for header in (
        f"bytes={size}-",
        "bytes=500-100",
        "bytes=0-1,5-9",
        "bytes=-0",
        "bytes=99999999999999-",
    ):
        answer = client.get(f"/recordings/{rid}/audio", headers={"Range": header})
        assert answer.status_code == 416, header
        assert answer.headers["content-range"] == f"bytes */{size}", header
    download = client.get(f"/recordings/{rid}/download")
    assert download.headers["content-disposition"] == f'attachment; filename="t-recording-{rid}.wav"'
    assert hashlib.sha256(download.content).hexdigest() == site.seeded.sha256[rid]
    plays = site.audits("recordings.play")
    assert len(plays) == 5
    assert {e.actor for e in plays} == {"web:ana"}
    assert plays[1].details["range"] == "bytes=0-99"
    assert [(e.actor, e.subject) for e in site.audits("recordings.download")] == [("web:ana", f"recording:{rid}")]
    assert len([e for e in site.audits("web.rejected") if e.details["status"] == 416]) == 5


def test_a_recording_not_archived_yet_cannot_be_played(site: Site) -> None:
    client = sign_in(site.client(), "ana")
    assert client.get(f"/recordings/{site.seeded.pending_id}").status_code == 200
    assert client.get(f"/recordings/{site.seeded.pending_id}/audio").status_code == 409


BAD = {
    "/recordings/999999": 404,  # unknown id
    "/recordings/{foreign}/audio": 404,  # another site's id
    "/recordings/{foreign}": 404,
    "/recordings/..%2F..%2Fetc%2Fpasswd/audio": 404,  # a path-like id never reaches a file
    "/recordings/..%5C..%5Cwin.ini": 400,
    "/recordings/1e3": 400,
    "/recordings/-1/download": 400,
    "/recordings?account=' OR 1=1 --": 400,
    "/recordings?agent=a%00b": 400,
    "/recordings?portfolio=<script>alert(1)</script>": 400,
    "/recordings?phone=1; DROP TABLE recordings": 400,
    "/recordings?outcome=answered' --": 400,
    "/recordings?since=2026-13-45": 400,
    "/recordings?until=yesterday": 400,
    "/recordings?page=0": 400,
    "/recordings?page=99999999999999999999": 400,
    "/kpi?since=2026-12-01&until=2026-11-01": 400,
    "/lang/../../etc": 404,
    "/lang/xx": 400,
}


def test_bad_input_gets_a_clean_4xx_and_an_audit_entry(site: Site) -> None:
    client = sign_in(site.client(), "ana")
    for template, status in BAD.items():
        path = template.format(foreign=site.seeded.foreign_id)
        before = len(site.audits("web.rejected"))
        answer = client.get(path)
        assert answer.status_code == status, path
        assert "Traceback" not in answer.text, path
        assert "lima" not in answer.text, path
        assert "text/html" in answer.headers["content-type"], path
        assert len(site.audits("web.rejected")) == before + 1, path
        assert site.audits("web.rejected")[-1].actor == "web:ana", path
    answer = client.get("/recordings/999999", headers={"Accept": "application/json"})
    assert answer.status_code == 404
    assert answer.json() == {"error": "It does not exist or is not within your reach."}
    with site.node.db.session() as session:
        assert (session.scalar(select(func.count()).select_from(AuditEntry)) or 0) > len(BAD)  # nothing dropped


def test_the_audit_view_is_for_auditors_and_lists_plays(site: Site) -> None:
    ana = sign_in(site.client(), "ana")
    rid = site.seeded.recordings["BCO-2"]
    ana.get(f"/recordings/{rid}/audio", headers={"Range": "bytes=0-9"})
    assert ana.get("/audit").status_code == 403
    carla = sign_in(site.client(), "carla")
    page = carla.get("/audit")
    assert page.status_code == 200
    assert re.search(rf"<td>web:ana</td><td>recordings\.play</td>\s*<td>recording:{rid}</td>", page.text)
    assert "web.rejected" in page.text  # ana's refused visit is listed too


def test_kpis_per_portfolio_and_day(site: Site) -> None:
    client = sign_in(site.client(), "ana")
    page = client.get("/kpi?since=2026-11-20&until=2026-11-30")
    assert page.status_code == 200
    assert "<svg" in page.text
    cells = re.findall(r"<tr>\s*<td>([^<]+)</td><td>([^<]+)</td>((?:<td[^>]*>[^<]*</td>\s*)+)</tr>", page.text)
    table = {(day, code): re.findall(r">([^<]*)</td>", rest) for day, code, rest in cells}
    # TARJETAS on the 23rd: 3 attempts, 2 answered, 2 right-party, 1 promise kept by the payment on the 25th
    assert table[("2026-11-23", "BANCO/TARJETAS")] == ["3", "66,7 %", "2", "0 (0,0 %)", "1", "1", "0,00"]
    assert table[("2026-11-25", "BANCO/TARJETAS")] == ["0", "0,0 %", "0", "0 (0,0 %)", "0", "0", "150.000,50 COP"]
    assert table[("2026-11-23", "BANCO/VEHICULOS")] == ["1", "100,0 %", "1", "0 (0,0 %)", "0", "0", "0,00"]


def test_spanish_by_default_english_on_request(site: Site) -> None:
    client = site.client()
    assert "Iniciar sesión" in client.get("/login").text
    switched = client.get("/lang/en?back=/login", follow_redirects=False)
    assert switched.headers["location"] == "/login"
    assert "Sign in" in client.get("/login").text
    assert client.get("/lang/es?back=//evil.example", follow_redirects=False).headers["location"] == "/"


def test_security_headers(site: Site) -> None:
    answer = site.client().get("/login")
    assert "frame-ancestors 'none'" in answer.headers["content-security-policy"]
    assert answer.headers["x-frame-options"] == "DENY"


@pytest.mark.postgres
def test_the_pages_on_postgresql(tmp_path: Path, postgres_url: str) -> None:
    config = write_sites(tmp_path, database=postgres_url)
    node = Node.open(config, "t", load_plugins(entry_points=False))
    try:
        site = Site(node, seed(node, tmp_path / "spool"), config)
        client = sign_in(site.client(), "beto")
        rid = site.seeded.recordings["VEH-7"]
        assert rows(client.get("/recordings?agent=agent-01").text) == [str(rid)]
        part = client.get(f"/recordings/{rid}/audio", headers={"Range": "bytes=0-9"})
        assert part.status_code == 206
        assert part.content == b"RIFF" + part.content[4:]
        kpi = client.get("/kpi?since=2026-11-20&until=2026-11-30").text
        assert "100,0 %" in kpi
        for _ in range(5):
            form = client.get("/login")
            client.post("/login", data={"user": "ana", "password": "nope", "csrf": csrf_of(form.text)})
        form = client.get("/login")
        locked = client.post("/login", data={"user": "ana", "password": PASSWORD, "csrf": csrf_of(form.text)})
        assert locked.status_code == 429
        assert [e.actor for e in site.audits("recordings.play")] == ["web:beto"]
    finally:
        node.close()
