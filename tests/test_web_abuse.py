"""The supervisors' pages under attack: hostile ranges, forged forwarding headers, audit gaps."""

from __future__ import annotations

import contextlib
import http.client
import logging
import os
import socket
import sys
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select, update
from starlette.requests import Request

from cartera.core.errors import ConfigError
from cartera.core.hooks import load_plugins
from cartera.core.models import Recording
from cartera.core.store.database import Database
from cartera.core.store.schema import RecordingRow, WebSession
from cartera.node import Node
from cartera.users.directory import UserDirectory
from cartera.users.sessions import FREE_TRIES, LoginThrottler, SessionStore
from cartera.web.app import PAGE_BODY_LIMIT, build_app
from cartera.web.context import declares_body
from cartera.web.media import BadRange, ByteRange, parse_range
from cartera.web.server import WebServer
from cartera.web.workers import NICENESS
from tests.browser.seed import DAY, PASSWORD, seed
from tests.conftest import write_sites
from tests.peers.net import free_port
from tests.scheduled_runs import JobRuns
from tests.test_web_pages import Site, csrf_of, sign_in, web_settings
from tests.test_web_pages import site as pages_site

site = pages_site  # the pages' fixture: site t, seeded

pytestmark = pytest.mark.abuse

HUGE = "9" * 5000


@contextmanager
def served(node: Node) -> Iterator[int]:
    """The node's app on a real uvicorn server on loopback; yields its port."""
    port = free_port()
    with WebServer(build_app(node.web_services()), "127.0.0.1", port):
        yield port


def test_huge_and_malformed_ranges_answer_cleanly_and_are_audited(site: Site) -> None:
    client = sign_in(site.client(), "ana")
    rid = site.seeded.recordings["BCO-1"]
    size = len(client.get(f"/recordings/{rid}/audio").content)
    expected = {
        f"bytes={HUGE}-": 416,  # a start past any file
        f"bytes=0{HUGE}-0{HUGE}": 416,
        f"bytes=0-{HUGE}": 206,  # an end past the file is cut to it
        f"bytes=-{HUGE}": 206,  # the last N bytes, N past the size: all of them
        f"bytes=000{'0' * 5000}5-9": 206,  # leading zeros are still 5
        "bytes= 1 - 2 , ": 200,  # no ranges-specifier (spaces inside a range): ignored, the whole file
    }
    for header, status in expected.items():
        before = len(site.audits("web.rejected"))
        answer = client.get(f"/recordings/{rid}/audio", headers={"Range": header})
        assert answer.status_code == status, header[:40]
        assert "Traceback" not in answer.text
        if status == 416:
            assert answer.headers["content-range"] == f"bytes */{size}"
            assert len(site.audits("web.rejected")) == before + 1, header[:40]
    assert (
        client.get(f"/recordings/{rid}/audio", headers={"Range": f"bytes=0-{HUGE}"}).headers["content-range"]
        == f"bytes 0-{size - 1}/{size}"
    )
    assert (
        client.get(f"/recordings/{rid}/audio", headers={"Range": f"bytes=000{'0' * 5000}5-9"}).content
        == (client.get(f"/recordings/{rid}/audio").content[5:10])
    )


def test_range_units_are_read_without_case_and_malformed_ranges_are_ignored(site: Site) -> None:
    """RFC 9110 §14.1-14.2: ``BYTES`` is ``bytes``; a header that is no ranges specifier, or of a unit other
    than bytes, is ignored (200, the whole file, no audited refusal); a well-formed range the file cannot give
    is still 416."""
    client = sign_in(site.client(), "ana")
    rid = site.seeded.recordings["BCO-1"]
    data = client.get(f"/recordings/{rid}/audio").content
    size = len(data)
    for header in ("BYTES=0-1", "Bytes=0-1", "bYtEs=0-1", "bytes=0-1,", "bytes=, 0-1", "bytes=0-1 ,\t,"):
        answer = client.get(f"/recordings/{rid}/audio", headers={"Range": header})
        assert answer.status_code == 206, header
        assert answer.headers["content-range"] == f"bytes 0-1/{size}", header
        assert answer.content == data[:2], header
    malformed = (
        "bytes= 1-2",
        "bytes=1 -2",
        "bytes=1- 2",
        "bytes=a-b",
        "bytes=-",
        "bytes=",
        "bytes=,",
        "bytes",
        "bytes 0-1",
        "bytes=0-1;",
        "bytes=0x1-2",
        "bytes=+1-2",
        "bytes==0-1",
        "=0-1",
        "by tes=0-1",
        f"bytes={HUGE}",
        "pages=1-2",  # a unit the node does not know: ignored (RFC 9110 §14.2)
    )
    for header in malformed:
        before = len(site.audits("web.rejected"))
        answer = client.get(f"/recordings/{rid}/audio", headers={"Range": header})
        assert answer.status_code == 200, header[:40]
        assert "content-range" not in answer.headers, header[:40]
        assert answer.content == data, header[:40]
        assert len(site.audits("web.rejected")) == before, header[:40]
    for header in (f"BYTES={size}-", "Bytes=-0", "BYTES=500-100", "bytes=0-1, 5-9", f"bytes={HUGE}-"):
        answer = client.get(f"/recordings/{rid}/audio", headers={"Range": header})
        assert answer.status_code == 416, header[:40]
        assert answer.headers["content-range"] == f"bytes */{size}", header[:40]


def test_parse_range_reads_the_unit_without_case_and_ignores_what_is_no_range() -> None:
    assert parse_range("BYTES=5-9", 100) == ByteRange(5, 9)
    assert parse_range("bytes=-10", 100) == ByteRange(90, 99)
    assert parse_range("bytes=90-", 100) == ByteRange(90, 99)
    assert parse_range("bytes=,\t5-9 , ", 100) == ByteRange(5, 9)
    for header in ("bytes= 5-9", "bytes=5-9x", "items=5-9", "bytes=5", "bytes=-", "bytes=\n5-9", "bytes=\u0665-9"):
        assert parse_range(header, 100) is None, header
    for header in ("bytes=100-", "bytes=-0", "bytes=9-5", "bytes=0-1,3-4", "bytes=0-0"):
        with pytest.raises(BadRange):
            parse_range(header, 100 if header != "bytes=0-0" else 0)


def archived(site: Site, spool: Path, files: dict[str, bytes]) -> dict[str, int]:
    """Recordings of BCO-1's call archived from files named as ``files`` says (as a spool pattern taking any
    file would catalog them); their ids by name."""
    assert site.node.archiver is not None
    with site.node.db.session() as session:
        attempt_id = session.scalar(
            select(RecordingRow.attempt_id).where(RecordingRow.id == site.seeded.recordings["BCO-1"])
        )
    spool.mkdir(parents=True, exist_ok=True)
    ids: dict[str, int] = {}
    for name, data in files.items():
        (spool / name).write_bytes(data)
        ids[name] = site.node.archiver.catalog(Recording(spool / name, attempt_id, DAY, 1.0, agent="agent-01"))
    run = site.node.archiver.run_once()
    assert run.archived >= len(files), run
    assert run.failed == 0, run
    return ids


def test_a_recording_that_is_no_audio_is_never_shown_as_a_page_or_a_script(site: Site, tmp_path: Path) -> None:
    """A recording archived as ``.html`` or ``.js`` is an opaque download in a sandbox, never a page or a script
    of the node's origin; an audio recording still plays inline, in a sandbox too."""
    page = b"<html><body><h1>hello</h1><script>document.title=document.cookie</script></body></html>"
    ids = archived(
        site,
        tmp_path / "odd",
        {
            "call-x.html": page,
            "call-x.js": b"alert(document.cookie)",
            "call-x.svg": page,
            "call-x.mp3": b"ID3\x03\x00" + bytes(200),
        },
    )
    sound = ids.pop("call-x.mp3")
    odd = ids
    html_name = f"t-recording-{odd['call-x.html']}.html"
    client = sign_in(site.client(), "ana")
    for name, rid in odd.items():
        for path, headers in (("audio", {}), ("audio", {"Range": "bytes=0-9"}), ("download", {})):
            answer = client.get(f"/recordings/{rid}/{path}", headers=headers)
            assert answer.status_code in (200, 206), (name, path)
            assert answer.headers["content-type"] == "application/octet-stream", (name, path)
            assert answer.headers["content-disposition"].startswith("attachment;"), (name, path)
            assert answer.headers["content-security-policy"] == "sandbox", (name, path)
            assert answer.headers["x-content-type-options"] == "nosniff", (name, path)
    html = client.get(f"/recordings/{odd['call-x.html']}/audio")
    assert (html.content, html.headers["content-disposition"]) == (page, f'attachment; filename="{html_name}"')
    for rid in (sound, site.seeded.recordings["BCO-1"]):
        play = client.get(f"/recordings/{rid}/audio")
        assert play.status_code == 200
        assert play.headers["content-type"].startswith("audio/"), play.headers["content-type"]
        assert play.headers["content-disposition"].startswith("inline;")
        assert play.headers["content-security-policy"] == "sandbox"
        assert play.headers["x-content-type-options"] == "nosniff"
        download = client.get(f"/recordings/{rid}/download")
        assert download.headers["content-type"] == play.headers["content-type"]
        assert download.headers["content-disposition"].startswith("attachment;")
        assert download.headers["content-security-policy"] == "sandbox"
    assert client.get(f"/recordings/{sound}/audio").headers["content-type"] == "audio/mpeg"


def test_a_huge_range_over_the_wire_keeps_the_connection(site: Site) -> None:
    rid = site.seeded.recordings["BCO-1"]
    with served(site.node) as port:
        client = sign_in(TestClient(build_app(site.node.web_services())), "ana")
        cookie = f"cartera_session={client.cookies['cartera_session']}"
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        try:
            for header, status in ((f"bytes={HUGE}-", 416), ("bytes=0-3", 206)):  # one kept-alive connection
                connection.request("GET", f"/recordings/{rid}/audio", headers={"Cookie": cookie, "Range": header})
                answer = connection.getresponse()
                body = answer.read()
                assert answer.status == status
                assert b"Traceback" not in body
        finally:
            connection.close()


def post_login(port: int, user: str, password: str, forwarded: str | None = None) -> int:
    """One sign-in over the wire (form, then post), optionally with an ``X-Forwarded-For`` header."""
    extra = {"X-Forwarded-For": forwarded} if forwarded else {}
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        connection.request("GET", "/login", headers=extra)
        form = connection.getresponse()
        html = form.read().decode()
        if form.status == 503:  # shed before the form was even given
            return form.status
        cookies = "; ".join(value.split(";")[0] for name, value in form.getheaders() if name.lower() == "set-cookie")
        body = f"user={user}&password={password}&csrf={csrf_of(html)}"
        headers = {"Content-Type": "application/x-www-form-urlencoded", "Cookie": cookies, **extra}
        connection.request("POST", "/login", body=body, headers=headers)
        answer = connection.getresponse()
        answer.read()
        return answer.status
    finally:
        connection.close()


def test_forwarded_for_from_loopback_is_ignored_by_default(site: Site) -> None:
    with served(site.node) as port:
        statuses = [post_login(port, f"nobody{n}", "wrong", f"198.51.100.{n}") for n in range(25)]
    assert 429 in statuses, "rotating X-Forwarded-For must not escape the per-address limit"
    actors = {entry.actor for entry in site.audits() if entry.action.startswith("web.login")}
    assert actors == {"web:anonymous@127.0.0.1"}, "no forged address in the audit log"


def test_trusted_proxies_give_the_rightmost_untrusted_address(tmp_path: Path) -> None:
    config = web_settings(tmp_path, 'trusted_proxies = ["127.0.0.1", "10.0.0.0/8"]')
    node = Node.open(config, "t", load_plugins(entry_points=False))
    try:
        site = Site(node, seed(node, tmp_path / "spool"), config)
        with served(node) as port:
            assert post_login(port, "ana", "wrong", "198.51.100.7, 203.0.113.9, 10.1.2.3") == 401
            assert post_login(port, "ana", PASSWORD, "203.0.113.10") == 303
        assert [e.actor for e in site.audits("web.login_failed")] == ["web:anonymous@203.0.113.9"]
        assert site.audits("web.login")[-1].details["address"] == "203.0.113.10"
    finally:
        node.close()


def test_trusted_proxies_must_be_addresses_or_networks(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="trusted_proxies"):
        Node.open(web_settings(tmp_path, 'trusted_proxies = ["proxy"]'), "t", load_plugins(entry_points=False))


def test_anonymous_visits_player_views_and_failures_are_audited(site: Site, monkeypatch: pytest.MonkeyPatch) -> None:
    rid = site.seeded.recordings["BCO-1"]
    anonymous = site.client()
    for path in (f"/recordings/{rid}", f"/recordings/{rid}/audio", f"/recordings/{rid}/download", "/recordings"):
        before = len(site.audits("web.rejected"))
        assert anonymous.get(path, follow_redirects=False).status_code == 303, path
        entry = site.audits("web.rejected")[-1]
        assert len(site.audits("web.rejected")) == before + 1, path
        assert (entry.actor, entry.subject, entry.details["status"]) == ("web:anonymous@testclient", path, 303)
    client = sign_in(site.client(), "ana")
    assert client.get(f"/recordings/{rid}").status_code == 200
    assert [(e.actor, e.subject) for e in site.audits("recordings.view")] == [("web:ana", f"recording:{rid}")]
    for stored in (site.config.parent / "archive").rglob("*.wav"):
        stored.chmod(0o644)
        stored.write_bytes(b"RIFF not the recording")
    other = site.seeded.recordings["BCO-2"]
    assert client.get(f"/recordings/{other}/audio").status_code == 502
    failed = site.audits("web.failed")[-1]
    assert (failed.actor, failed.subject, failed.details["status"]) == ("web:ana", f"/recordings/{other}/audio", 502)

    def broken(_recording_id: int) -> None:
        raise RuntimeError("the catalog is unreadable")

    monkeypatch.setattr(site.node.library, "view", broken)
    assert client.get(f"/recordings/{rid}").status_code == 500
    failed = site.audits("web.failed")[-1]
    assert (failed.actor, failed.details["status"]) == ("web:ana", 500)
    assert "unreadable" not in str(failed.details)


def from_address(site: Site, address: str) -> TestClient:
    return TestClient(build_app(site.node.web_services()), raise_server_exceptions=False, client=(address, 40000))


def try_password(client: TestClient, user: str, password: str) -> int:
    form = client.get("/login")
    return client.post(
        "/login", data={"user": user, "password": password, "csrf": csrf_of(form.text)}, follow_redirects=False
    ).status_code


def test_a_stranger_cannot_lock_the_user_out_from_elsewhere(site: Site) -> None:
    stranger = from_address(site, "198.51.100.7")
    statuses = [try_password(stranger, "ana", "wrong-password") for _ in range(10)]
    assert statuses[:3] == [401, 401, 401]
    assert set(statuses[3:]) == {429}, "the stranger's own tries are slowed down"
    assert try_password(stranger, "ana", PASSWORD) == 429, "not even the right password gets through there"
    assert try_password(from_address(site, "203.0.113.5"), "ana", PASSWORD) == 303, "ana, elsewhere, signs in"
    assert len(site.audits("web.login_failed")) == 3


def test_parallel_wrong_passwords_check_no_more_than_the_free_tries(site: Site) -> None:
    with served(site.node) as port, ThreadPoolExecutor(40) as pool:
        statuses = list(pool.map(lambda _: post_login(port, "ana", "wrong-password"), range(40)))
    assert 429 in statuses
    assert set(statuses) <= {401, 429, 503}  # 503: shed by the worker pool, before any check
    assert statuses.count(401) == len(site.audits("web.login_failed")) <= 3


def test_sign_in_delays_grow_and_a_success_resets_them(tmp_path: Path) -> None:
    db = Database(f"sqlite:///{tmp_path / 'throttle.db'}")
    db.migrate()
    clock = [datetime(2026, 12, 1, 12, 0, tzinfo=UTC)]
    throttle = LoginThrottler(db, lambda: clock[0])
    waits: list[float] = []
    checked = 0
    try:
        while len(waits) < 10:
            until = throttle.attempt("ana", "198.51.100.7")
            if until is None:
                checked += 1
                throttle.failed("ana", "198.51.100.7")
            else:
                waits.append((until - clock[0]).total_seconds())
                clock[0] = until
        assert checked == FREE_TRIES + 10 - 1
        assert waits == sorted(waits)
        assert waits[0] > 0
        assert waits[-1] == 15 * 60
        assert throttle.attempt("ana", "203.0.113.5") is None, "another address is another count"
        throttle.succeeded("ana", "198.51.100.7")
        assert throttle.attempt("ana", "198.51.100.7") is None
    finally:
        db.dispose()


def parallel_claims(db: Database) -> int:
    """How many of 40 simultaneous sign-ins of one user from one address may check a password."""
    throttle = LoginThrottler(db, lambda: datetime.now(UTC))
    with ThreadPoolExecutor(40) as pool:
        granted = list(pool.map(lambda _: throttle.attempt("ana", "198.51.100.7") is None, range(40)))
    return granted.count(True)


def test_the_throttle_counts_atomically_on_sqlite(tmp_path: Path) -> None:
    db = Database(f"sqlite:///{tmp_path / 'throttle.db'}")
    db.migrate()
    try:
        assert parallel_claims(db) == FREE_TRIES
    finally:
        db.dispose()


@pytest.mark.postgres
def test_the_throttle_counts_atomically_on_postgresql(postgres_url: str) -> None:
    db = Database(postgres_url)
    db.migrate()
    try:
        assert parallel_claims(db) == FREE_TRIES
    finally:
        db.dispose()


def test_a_chosen_sign_in_token_is_refused(site: Site) -> None:
    client = site.client()
    for cookie in ("cartera_login_csrf", "cartera_signin"):  # the old double-submit cookie, the pre-session's
        client.cookies.set(cookie, "chosen-by-the-attacker", path="/login")
    answer = client.post("/login", data={"user": "ana", "password": PASSWORD, "csrf": "chosen-by-the-attacker"})
    assert answer.status_code == 403
    attacker = site.client()
    form = attacker.get("/login")  # a genuine token, of the attacker's own pre-session
    victim = site.client()
    victim.get("/login")
    answer = victim.post("/login", data={"user": "ana", "password": PASSWORD, "csrf": csrf_of(form.text)})
    assert answer.status_code == 403, "a token is good only with the pre-session it was issued to"
    assert site.audits("web.login") == []


def test_a_sign_in_token_is_good_once(site: Site) -> None:
    client = site.client()
    token = csrf_of(client.get("/login").text)
    data = {"user": "ana", "password": "wrong-password", "csrf": token}
    assert client.post("/login", data=data).status_code == 401
    assert client.post("/login", data=data).status_code == 403


def test_sessions_end_after_their_absolute_lifetime_even_when_busy(site: Site) -> None:
    client = sign_in(site.client(), "ana")
    with site.node.db.session() as session:
        session.execute(update(WebSession).values(created_at=datetime.now(UTC) - timedelta(hours=12, seconds=1)))
    answer = client.get("/recordings", follow_redirects=False)
    assert answer.headers["location"] == "/login?expired=1"


def test_signing_in_again_ends_the_older_sessions(site: Site) -> None:
    first = sign_in(site.client(), "ana")
    second = sign_in(site.client(), "ana")
    assert first.get("/recordings", follow_redirects=False).headers["location"] == "/login?expired=1"
    assert second.get("/recordings").status_code == 200
    UserDirectory(site.node.db).disable("ana")
    with site.node.db.session() as session:
        assert session.scalars(select(WebSession)).all() == [], "disabling a user ends its sessions"


def held_password_checks(monkeypatch: pytest.MonkeyPatch) -> tuple[threading.Event, threading.Event]:
    """Password checks that wait (at most 30 s) for the second event once they have set the first."""
    checking, release = threading.Event(), threading.Event()
    authenticate = UserDirectory.authenticate

    def slow(directory: UserDirectory, name: str, password: str) -> object:
        checking.set()
        release.wait(30)
        return authenticate(directory, name, password)

    monkeypatch.setattr(UserDirectory, "authenticate", slow)
    return checking, release


def test_a_shed_request_writes_nothing_to_the_store(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """A burst's shed requests must not queue for SQLite's write lock in the scheduled jobs' way."""
    config = web_settings(tmp_path, "workers = 1\nqueue = 0")
    node = Node.open(config, "t", load_plugins(entry_points=False))
    checking, release = held_password_checks(monkeypatch)
    try:
        site = Site(node, seed(node, tmp_path / "spool"), config)
        with served(node) as port, ThreadPoolExecutor(1) as pool:
            signing_in = pool.submit(post_login, port, "ana", PASSWORD)  # holds the only worker
            assert checking.wait(30)
            before = len(site.audits())
            with caplog.at_level(logging.WARNING, logger="cartera.web"):
                connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
                try:
                    connection.request("GET", "/login")
                    shed = connection.getresponse()
                    shed.read()
                finally:
                    connection.close()
            after = len(site.audits())
            release.set()
            assert signing_in.result(30) == 303
        assert (shed.status, shed.getheader("Retry-After")) == (503, "2")
        assert after == before, "a shed request wrote an audit entry"
        assert "web.requests_shed" in caplog.text
    finally:
        release.set()
        node.close()


def thread_priority() -> int:
    return os.getpriority(os.PRIO_PROCESS, threading.get_native_id())


@pytest.mark.skipif(sys.platform != "linux", reason="only Linux sets a thread's priority on its own")
def test_a_sign_in_hashes_below_the_nodes_priority_and_writes_at_it(
    site: Site, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A low-priority thread holding SQLite's write lock would hold up the scheduled jobs while the CPU is busy."""
    seen: dict[str, int] = {}
    authenticate, create = UserDirectory.authenticate, SessionStore.create

    def hashing(directory: UserDirectory, name: str, password: str) -> object:
        seen["hash"] = thread_priority()
        return authenticate(directory, name, password)

    def storing(store: SessionStore, user_id: int) -> object:
        seen["store"] = thread_priority()
        return create(store, user_id)

    monkeypatch.setattr(UserDirectory, "authenticate", hashing)
    monkeypatch.setattr(SessionStore, "create", storing)
    with served(site.node) as port:
        assert post_login(port, "ana", PASSWORD) == 303
    assert seen == {"hash": min(thread_priority() + NICENESS, 19), "store": thread_priority()}


def test_a_burst_of_sign_ins_skips_no_scheduled_job(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """While a burst of sign-ins fills the web workers and every password check is held, each scheduled job
    keeps running: counted runs, not a wall-clock figure, so a busy machine only makes it wait longer. (The
    hashing threads' lower CPU priority is test_a_sign_in_hashes_below_the_nodes_priority_and_writes_at_it.)"""
    config = write_sites(tmp_path)  # the jobs at their default pace: a tick a second, archival as often
    config.write_text(config.read_text().replace("tick_seconds = 0.2", "tick_seconds = 1").replace("= 0.5", "= 1"))
    node = Node.open(config, "t", load_plugins(entry_points=False))
    seed(node, tmp_path / "spool")
    checking, release = held_password_checks(monkeypatch)
    runner = threading.Thread(target=node.run, kwargs={"duration": 300})
    runner.start()
    try:
        for _ in range(500):
            scheduler = node.lifecycle.scheduler  # the node's own scheduler, to count its runs
            if scheduler is not None and node.scheduler_running:
                break
            runner.join(0.02)
        assert scheduler is not None
        jobs = JobRuns(scheduler)
        with ThreadPoolExecutor(40) as clients:
            burst = clients.map(lambda u: post_login(node.site.section.web.port, u, PASSWORD), ["ana", "beto"] * 20)
            assert checking.wait(30), "no sign-in reached its password check"
            jobs.listen()
            everyone_ran = jobs.each_ran(3, timeout=25)  # while every sign-in waits on its held password check
            release.set()
            statuses = list(burst)
    finally:
        release.set()
        node.stop()
        runner.join(60)
        node.close()
    assert len(jobs.jobs) == 2, scheduler.get_jobs()
    assert everyone_ran, f"a scheduled job waited on the web pages: runs while sign-ins were held {jobs.runs}"
    assert set(statuses) <= {303, 429, 503}
    assert 303 in statuses


def test_a_crash_is_one_traceback_and_a_clean_500(
    site: Site, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def broken(_recording_id: int) -> None:
        raise RuntimeError("the catalog is unreadable")

    monkeypatch.setattr(site.node.library, "view", broken)
    cookie = f"cartera_session={sign_in(site.client(), 'ana').cookies['cartera_session']}"
    with served(site.node) as port, caplog.at_level(logging.ERROR):
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        try:
            for _ in range(2):  # and the kept-alive connection still answers
                connection.request("GET", f"/recordings/{site.seeded.recordings['BCO-1']}", headers={"Cookie": cookie})
                answer = connection.getresponse()
                assert answer.status == 500
                assert b"unreadable" not in answer.read()
        finally:
            connection.close()
    assert len([record for record in caplog.records if record.exc_info]) == 2, "one traceback per request"
    assert [e.details["status"] for e in site.audits("web.failed")] == [500, 500]


@pytest.mark.parametrize(
    "query",
    [
        "/recordings?until=9999-12-31",
        "/recordings?since=0001-01-01",
        "/kpi?since=9999-12-30&until=9999-12-31",
        "/kpi?since=0001-01-01&until=0001-01-02",
        "/recordings?since=%D9%A2%D9%A0%D9%A2%D9%A6-01-01",  # Arabic-Indic digits in a date
        "/recordings?page=%C2%B2",  # superscript two: str.isdigit() says yes, int() says no
        "/recordings?page=%E2%91%A0",  # circled one
        "/recordings?page=%D9%A1",  # Arabic-Indic one: int() reads it as 1
        "/recordings?page=1%0A",
        "/audit?page=%C2%B2",
        "/audit?page=%D9%A1",
    ],
)
def test_query_numbers_and_dates_outside_ascii_or_a_sane_range_are_a_clean_400(site: Site, query: str) -> None:
    client = sign_in(site.client(), "carla")
    answer = client.get(query)
    assert answer.status_code == 400, answer.text[:300]
    assert "<html" in answer.text.lower()
    assert site.audits("web.failed") == []
    assert [e.details["status"] for e in site.audits("web.rejected")] == [400]


def test_every_signed_in_page_and_its_errors_are_not_stored_by_caches(site: Site) -> None:
    client = sign_in(site.client(), "carla")
    recording = site.seeded.recordings["BCO-1"]
    for path in ("/recordings", f"/recordings/{recording}", "/kpi", "/audit", "/recordings/999999", "/kpi?since=x"):
        answer = client.get(path)
        assert "no-store" in answer.headers.get("cache-control", ""), (path, answer.status_code)
    assert "no-store" in site.client().get("/login").headers.get("cache-control", "")


def test_a_page_request_body_past_the_limit_is_refused_before_it_is_held(site: Site) -> None:
    client = site.client()
    form = {"user": "admin", "password": "x" * (PAGE_BODY_LIMIT + 1), "csrf": "c"}
    assert client.post("/login", data=form).status_code == 413
    upload = {"user": ("x.bin", b"\0" * (4 << 20), "application/octet-stream")}  # a file part: a temporary file
    assert client.post("/login", files=upload, data={"password": "p", "csrf": "c"}).status_code == 413
    refused = [entry for entry in site.audits("web.rejected") if entry.details.get("status") == 413]
    assert [entry.subject for entry in refused] == ["/login", "/login"]
    assert sign_in(site.client(), "ana").get("/recordings").status_code == 200  # a real sign-in still fits


@pytest.mark.parametrize(
    ("headers", "declared"),
    [
        ([], False),
        ([(b"content-length", b"0")], False),
        ([(b"content-length", b"00")], False),  # round 24 B-F1: refused as a body by its text
        ([(b"content-length", b"10")], True),
        ([(b"content-length", b"100")], True),
        ([(b"transfer-encoding", b"chunked")], True),
    ],
)
def test_a_body_is_declared_by_its_length_not_its_spelling(headers: list[tuple[bytes, bytes]], declared: bool) -> None:
    assert declares_body(Request({"type": "http", "method": "GET", "headers": headers})) is declared


@pytest.mark.parametrize("route", ["audio", "download"])
@pytest.mark.parametrize("framing", ["Content-Length: 10000000", "Transfer-Encoding: chunked"])
def test_a_recording_asked_with_a_body_is_refused_before_it_is_streamed(site: Site, route: str, framing: str) -> None:
    """A GET of a recording's file with a body past the pages' limit answered 500 with a traceback logged: the
    streamed file's disconnect watch read the body through the limit once the answer had started (round 23 B-F2).
    A streamed GET takes no body: refused (413) before the recording is fetched, played or audited as played."""
    rid = site.seeded.recordings["BCO-1"]
    with served(site.node) as port:
        client = sign_in(TestClient(build_app(site.node.web_services())), "ana")
        cookie = f"cartera_session={client.cookies['cartera_session']}"
        with socket.create_connection(("127.0.0.1", port), timeout=10) as wire:
            wire.sendall(
                f"GET /recordings/{rid}/{route} HTTP/1.1\r\nHost: x\r\nCookie: {cookie}\r\n{framing}\r\n\r\n".encode()
            )
            piece = b"x" * 65536
            with contextlib.suppress(OSError):
                for _ in range(3):
                    wire.sendall(piece if framing.startswith("Content") else b"10000\r\n" + piece + b"\r\n")
            head = b""
            with contextlib.suppress(OSError):
                while b"\r\n" not in head and (more := wire.recv(4096)):
                    head += more
    assert head.split(b" ", 2)[1] == b"413", head[:200]
    assert not site.audits("web.failed")
    assert not site.audits("recordings.play")
    assert not site.audits("recordings.download")
    assert [entry.details["status"] for entry in site.audits("web.rejected")] == [413]
