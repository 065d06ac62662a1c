"""A command run beside the running node of its site (round 19 F2, F3, F5): ``archive`` cannot undo the node's
archival, the site lock holds through a symlinked database path, and a ``[web] bind`` ``run`` cannot use is refused
before ``run``, which names the real reason when it cannot listen."""

from __future__ import annotations

import os
import socket
import sqlite3
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from fastapi import FastAPI
from sqlalchemy import select

from cartera.core.errors import CarteraError, ConfigError
from cartera.core.hooks import load_plugins
from cartera.core.store.schema import RecordingRow
from cartera.core.store.site_lock import SiteAlreadyRunning, hold_site
from cartera.node import Node
from cartera.recordings.archival import ArchiveRun
from cartera.recordings.upload import Pending
from cartera.web.server import WebServer
from tests.conftest import run_site_process, write_sites
from tests.peers.net import free_port
from tests.peers.s3 import spool_recordings, write_archival_site
from tests.recording_spool import report_spool
from tests.test_web_pages import web_settings

pytestmark = pytest.mark.abuse


def _localdir_site(tmp_path: Path, archival: str = "", database: str | None = None) -> Path:
    site = write_archival_site(tmp_path, 'plugin = "localdir"\npath = "archive"', archival=archival)
    if database is not None:
        site.write_text(site.read_text().replace("[sites.t]\n", f'[sites.t]\ndatabase = "{database}"\n', 1))
    return site


def _states(site: Path) -> list[tuple[int, str]]:
    with sqlite3.connect(site.parent / "var" / "t.db") as db:
        return db.execute("select id, state from recordings order by id").fetchall()


def _node_states(node: Node) -> list[tuple[int, str]]:
    with node.db.session() as session:
        rows = session.execute(select(RecordingRow.id, RecordingRow.state).order_by(RecordingRow.id)).all()
    return [(row.id, row.state) for row in rows]


def _a_archives_after_b_read(
    a: Node, b: Node, spool: Path, files: int, after_a: Callable[[], object] = lambda: None
) -> tuple[ArchiveRun, ArchiveRun]:
    """The red team's forced ordering, with the real code: B (``archive`` from the command line) reads the
    catalog, then A (the running node's job) runs a whole archival (then ``after_a``), then B uploads what it
    read. Both runs."""
    assert a.archiver is not None
    assert b.archiver is not None
    spool_recordings(spool, files, 20_000)
    assert report_spool(a, spool) == files
    read, by_a = b.archiver.recordings.pending, []

    def read_then_a_archives() -> list[Pending]:
        rows = read()
        assert a.archiver is not None
        by_a.append(a.archiver.run_once())
        after_a()
        return rows

    b.archiver.recordings.pending = read_then_a_archives  # type: ignore[method-assign]
    late = b.archiver.run_once()
    return by_a[0], late


@pytest.mark.postgres
def test_on_postgresql_a_late_missing_report_keeps_the_recording_verified_and_archive_is_refused(
    tmp_path: Path, postgres_url: str, open_node: Callable[[Path], Node]
) -> None:
    site = _localdir_site(tmp_path, "local_retention_hours = 0", database=postgres_url)
    a = open_node(site)
    first, late = _a_archives_after_b_read(a, open_node(site), tmp_path / "spool", 1)
    assert (first.archived, first.deleted_local) == (1, 1)
    assert (late.archived, late.missing, late.failed) == (0, 0, 0)
    assert _node_states(a) == [(1, "verified")]
    with hold_site(a.db, "t"):  # the running node's lease
        refused = run_site_process(site, "archive")
    assert refused.returncode == 2, refused.stderr
    assert "its node archives the recordings: stop it to run 'archive' by hand" in refused.stderr


def test_a_late_missing_report_never_downgrades_a_verified_recording(
    tmp_path: Path, open_node: Callable[[Path], Node]
) -> None:
    """A archived the recording and freed its local copy; B's upload finds the file gone: it stays verified."""
    site = _localdir_site(tmp_path, "local_retention_hours = 0")
    first, late = _a_archives_after_b_read(open_node(site), open_node(site), tmp_path / "spool", 1)
    assert (first.archived, first.deleted_local) == (1, 1)
    assert (late.archived, late.missing, late.failed) == (0, 0, 0)
    assert late.ok
    assert _states(site) == [(1, "verified")]
    with sqlite3.connect(tmp_path / "var" / "t.db") as db:
        assert db.execute("select error, failures from recordings").fetchall() == [(None, 0)]


def test_a_second_verified_upload_is_not_committed_twice(tmp_path: Path, open_node: Callable[[Path], Node]) -> None:
    """A archived (the local copies kept); B's uploads verify too: the rows stay A's, each recording is archived
    once (one count, A's verified_at)."""
    site = _localdir_site(tmp_path, "local_retention_hours = 48")
    by_a: list[tuple[int, str]] = []

    def verified_at() -> list[tuple[int, str]]:
        with sqlite3.connect(tmp_path / "var" / "t.db") as db:
            return db.execute("select id, verified_at from recordings order by id").fetchall()

    a, b = open_node(site), open_node(site)
    first, late = _a_archives_after_b_read(a, b, tmp_path / "spool", 2, after_a=lambda: by_a.extend(verified_at()))
    assert first.archived == 2
    assert (late.archived, late.missing, late.failed) == (0, 0, 0)
    assert _states(site) == [(1, "verified"), (2, "verified")]
    assert verified_at() == by_a


def test_archive_refuses_while_the_site_runs(tmp_path: Path, open_node: Callable[[Path], Node]) -> None:
    site = _localdir_site(tmp_path)
    spool_recordings(tmp_path / "spool", 1, 20_000)
    node = open_node(site)
    assert node.archiver is not None
    report_spool(node, tmp_path / "spool")
    with hold_site(node.db, "t"):  # the running node
        for args in (("archive",), ("archive", "--backfill")):
            refused = run_site_process(site, *args)
            assert refused.returncode == 2, refused.stderr
            assert f"site 't' is already running (pid {os.getpid()} on host" in refused.stderr
            assert "its node archives the recordings: stop it to run 'archive' by hand" in refused.stderr
            assert _states(site) == [(1, "found")]
    done = run_site_process(site, "archive")
    assert done.returncode == 0, done.stderr
    assert _states(site) == [(1, "verified")]


def test_the_site_lock_holds_through_a_symlinked_database_path(tmp_path: Path, open_node: Callable[..., Node]) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    real = tmp_path / "a" / "t.db"
    running = open_node(write_sites(tmp_path / "a", database=f"sqlite:///{real}"))
    (tmp_path / "b" / "t.db").symlink_to(real)
    second = open_node(write_sites(tmp_path / "b", database=f"sqlite:///{tmp_path / 'b' / 't.db'}"))
    with hold_site(running.db, "t"), pytest.raises(SiteAlreadyRunning, match="site 't' is already running"):
        second.run(duration=1)
    assert not (tmp_path / "b" / "t.db.t.lock").exists()


@pytest.mark.parametrize(
    ("bind", "says"),
    [
        ("999.1.1.1", "'999.1.1.1' is not an IP address"),
        ("127.0.0.1 ", "'127.0.0.1 ' has blanks"),
        ("", "empty"),
        ("host name", "has blanks"),
        ("bad_host!", "is neither an IP address nor a host name"),
    ],
)
def test_an_unusable_bind_is_refused_by_the_config(tmp_path: Path, bind: str, says: str) -> None:
    with pytest.raises(ConfigError, match=rf"web.bind.*{says}"):
        Node.open(web_settings(tmp_path, f'bind = "{bind}"'), "t", load_plugins(entry_points=False))


def test_check_says_a_bind_name_does_not_resolve(tmp_path: Path) -> None:
    config = web_settings(tmp_path, 'bind = "example.invalid"')
    checked = run_site_process(config, "check")
    assert checked.returncode != 0
    assert "web" in checked.stdout
    assert "bind 'example.invalid' does not resolve" in checked.stdout


def test_check_passes_a_bind_that_resolves(tmp_path: Path) -> None:
    node = Node.open(web_settings(tmp_path, 'bind = "localhost"'), "t", load_plugins(entry_points=False))
    try:
        lines = {line.what: line.result for line in node.check()}
        assert lines["web"].ok, lines["web"].detail
    finally:
        node.close()


def test_run_names_the_real_reason_it_cannot_listen() -> None:
    taken = socket.create_server(("127.0.0.1", 0))
    port = taken.getsockname()[1]
    try:
        with pytest.raises(CarteraError, match=rf"cannot listen on 127.0.0.1:{port}: .*Address already in use"):
            WebServer(FastAPI(), "127.0.0.1", port).start()
    finally:
        taken.close()
    with pytest.raises(CarteraError, match=r"cannot listen on example.invalid:\d+: .*(not known|resolution)"):
        WebServer(FastAPI(), "example.invalid", free_port()).start()


def test_check_tries_the_bind_and_fails_when_another_process_holds_the_port(tmp_path: Path) -> None:
    """Round 21 C-F10: check said 'listens on 127.0.0.1:PORT' while another process held the port; run then
    failed."""
    node = Node.open(write_sites(tmp_path), "t", load_plugins(entry_points=False))
    port = node.site.section.web.port
    try:
        with socket.create_server(("127.0.0.1", port)):
            web = {line.what: line.result for line in node.check()}["web"]
            assert not web.ok
            assert web.detail == (
                f"cannot listen on 127.0.0.1:{port}: Address already in use (sites.toml [web] bind and port)"
            )
        web = {line.what: line.result for line in node.check()}["web"]
        assert (web.ok, web.detail) == (True, f"listens on 127.0.0.1:{port} (tried)")  # let go again
        socket.create_server(("127.0.0.1", port)).close()
    finally:
        node.close()


@pytest.mark.parametrize("store", ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def test_check_beside_the_sites_running_node_does_not_try_the_port_it_holds(
    tmp_path: Path, store: str, request: pytest.FixtureRequest
) -> None:
    database = request.getfixturevalue("postgres_url") if store == "postgresql" else None
    running = Node.open(write_sites(tmp_path, database=database), "t", load_plugins(entry_points=False))
    port = running.site.section.web.port
    checking = Node.open(tmp_path / "sites.toml", "t", load_plugins(entry_points=False))
    try:
        with hold_site(running.db, "t"), socket.create_server(("127.0.0.1", port)):  # the running node's listener
            web = {line.what: line.result for line in checking.check()}["web"]
            assert web.ok, web.detail
            assert web.detail.startswith(f"127.0.0.1:{port} is the site's running node's (pid {os.getpid()} on host ")
            assert web.detail.endswith("): not tried")
    finally:
        checking.close()
        running.close()


def test_check_beside_the_sites_running_node_tries_a_port_or_address_it_does_not_hold(tmp_path: Path) -> None:
    """Round 22 C-F1: beside the running node, any taken port (another process's) or an address not of this host
    passed as the node's ('not tried'), and the restart with that sites.toml failed."""
    running = Node.open(write_sites(tmp_path), "t", load_plugins(entry_points=False))
    port, other = running.site.section.web.port, free_port()
    holder = subprocess.Popen(  # another process holds the port sites.toml is changed to
        [sys.executable, "-c", f"import socket,sys,time; s=socket.create_server(('127.0.0.1',{other})); "
         "print('ok', flush=True); time.sleep(120)"],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert holder.stdout is not None
        assert holder.stdout.readline() == "ok\n"
        with hold_site(running.db, "t"), socket.create_server(("127.0.0.1", port)):  # the running node's listener
            for changed, refused in ((f"port = {other}", "Address already in use"), (None, None)):
                config = tmp_path / "sites.toml"
                text = config.read_text()
                if changed is not None:
                    config.write_text(text.replace(f"port = {port}", changed))
                checking = Node.open(config, "t", load_plugins(entry_points=False))
                try:
                    web = {line.what: line.result for line in checking.check()}["web"]
                finally:
                    checking.close()
                    config.write_text(text)
                if refused is None:
                    assert web.ok, web.detail  # its own port: not tried
                else:
                    assert not web.ok
                    assert web.detail.startswith(f"cannot listen on 127.0.0.1:{other}: {refused}")
    finally:
        holder.kill()
        holder.wait()
        running.close()
