"""A creditor's SFTP server that never ends the inbox listing (round 21 A-F17): one more name per READDIR, each in
time, held the sync (and the node's stop, which waits for it) for ever, and the adapter's stop waited for the
session's lock the listing held. A paramiko server in this process, on 127.0.0.1."""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import paramiko
import pytest

from cartera.plugins.crm_sync.sftp_csv import client as sftp_client
from cartera.plugins.crm_sync.sftp_csv.client import SftpError
from cartera.plugins.crm_sync.sftp_csv.plugin import SftpCsvSync
from tests.plugins.crm_sync.sftp_in_process import InProcessSftp

pytestmark = pytest.mark.abuse

GUARD_S = 60  #: how long a join waits before the test gives up on a thread (a guard, not the measure)


class EndlessServer(InProcessSftp):
    """An SFTP server whose every folder lists one more name per READDIR, after ``delay`` seconds, for ever."""

    def __init__(self, tmp_path: Path, delay: float) -> None:
        self.listing = threading.Event()  #: set once a name was sent
        names = itertools.count()
        listing = self.listing

        class Endless(paramiko.SFTPHandle):
            def _get_next_files(self) -> list[paramiko.SFTPAttributes]:
                time.sleep(delay)
                entry = paramiko.SFTPAttributes()
                entry.filename, entry.st_size, entry.st_mode, entry.st_mtime = f"a{next(names):09d}.csv", 1, 0o100644, 1
                listing.set()
                return [entry]

        class Server(paramiko.SFTPServer):
            def _open_folder(self, request_number: int, path: str) -> None:
                self._send_handle_response(request_number, Endless(), True)  # type: ignore[attr-defined]

        class Folder(paramiko.SFTPServerInterface):
            def stat(self, path: str) -> paramiko.SFTPAttributes:
                found = paramiko.SFTPAttributes()
                found.st_mode = 0o040755
                return found

            lstat = stat

        super().__init__(tmp_path, Folder, Server)


@pytest.fixture
def endless(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[EndlessServer]:
    server = EndlessServer(tmp_path, getattr(request, "param", 0.05))
    yield server
    server.close()


def make_sync(tmp_path: Path, server: EndlessServer, **overrides: Any) -> SftpCsvSync:
    return server.sync(tmp_path / "data", **overrides)


def fetch_in_thread(sync: SftpCsvSync) -> tuple[threading.Thread, list[BaseException]]:
    """``list(sync.fetch())`` in a thread; what it raised is appended to the list returned."""
    raised: list[BaseException] = []

    def fetch() -> None:
        try:
            list(sync.fetch())
        except BaseException as exc:  # the test looks at it
            raised.append(exc)

    thread = threading.Thread(target=fetch, daemon=True)
    thread.start()
    return thread, raised


def test_a_listing_that_never_ends_is_cut_by_the_deadline_and_names_the_folder(
    tmp_path: Path, endless: EndlessServer
) -> None:
    sync = make_sync(tmp_path, endless, download_timeout_s=1)
    try:
        thread, raised = fetch_in_thread(sync)
        thread.join(GUARD_S)
        assert not thread.is_alive(), "the fetch is still listing"
    finally:
        sync.stop()
    (error,) = raised
    assert isinstance(error, SftpError)
    assert "listing /inbox" in str(error)
    assert "cut after 1 s (download_timeout_s)" in str(error)


@pytest.mark.parametrize("endless", [0.0], indirect=True)
def test_a_listing_past_the_most_entries_fails_naming_the_folder(
    tmp_path: Path, endless: EndlessServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A server sending names without end, fast: the memory the names take is bounded, not the time alone."""
    monkeypatch.setattr(sftp_client, "MAX_LISTED_ENTRIES", 200)
    sync = make_sync(tmp_path, endless, download_timeout_s=600)
    try:
        thread, raised = fetch_in_thread(sync)
        thread.join(GUARD_S)
        assert not thread.is_alive(), "the fetch is still listing"
    finally:
        sync.stop()
    (error,) = raised
    assert isinstance(error, SftpError)
    assert "/inbox lists more than 200 entries" in str(error)


def test_stop_closes_the_session_while_a_listing_holds_it(tmp_path: Path, endless: EndlessServer) -> None:
    sync = make_sync(tmp_path, endless, download_timeout_s=3600)
    thread, raised = fetch_in_thread(sync)
    assert endless.listing.wait(GUARD_S)
    stopper = threading.Thread(target=sync.stop, daemon=True)
    stopper.start()
    stopper.join(GUARD_S)
    assert not stopper.is_alive(), "stop() waits for the listing"
    thread.join(GUARD_S)
    assert not thread.is_alive(), "the fetch is still listing after stop()"
    (error,) = raised
    assert isinstance(error, SftpError)


@pytest.mark.parametrize("timeout_s", [1, 30])  # the INIT's answer, waited for by timeout_s or download_timeout_s
def test_a_server_that_never_answers_the_sftp_init_is_cut_and_stop_returns(tmp_path: Path, timeout_s: int) -> None:
    """Round 22 A-F1: a server that logged in and never answered the SFTP INIT held the sync, check and the
    node's stop for ever: the session's opening was outside every deadline, and stop() could not close it."""
    ended = threading.Event()

    class Silent(paramiko.SubsystemHandler):
        """Takes the sftp subsystem and never answers the client's INIT (until the test ends)."""

        def __init__(self, channel: paramiko.Channel, name: str, server: paramiko.ServerInterface, *_: Any) -> None:
            super().__init__(channel, name, server)  # the folder class the server passes is not needed

        def start_subsystem(self, name: str, transport: paramiko.Transport, channel: paramiko.Channel) -> None:
            ended.wait(GUARD_S)

    server = InProcessSftp(tmp_path, paramiko.SFTPServerInterface, Silent)
    sync = server.sync(tmp_path / "data", timeout_s=timeout_s, download_timeout_s=2)
    try:
        thread, raised = fetch_in_thread(sync)
        thread.join(GUARD_S)
        assert not thread.is_alive(), "the fetch still waits for the server's VERSION"
        (error,) = raised
        assert isinstance(error, SftpError)
        assert "listing /inbox" in str(error)
        thread, raised = fetch_in_thread(sync)  # and a stop while it waits returns, ending the wait
        stopper = threading.Thread(target=sync.stop, daemon=True)
        stopper.start()
        stopper.join(GUARD_S)
        assert not stopper.is_alive(), "stop() waits for the session being opened"
        thread.join(GUARD_S)
        assert not thread.is_alive(), "the fetch still waits after stop()"
    finally:
        ended.set()
        server.close()
