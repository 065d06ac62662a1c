"""A creditor's SFTP server that never ends the inbox listing (round 21 A-F17): one more name per READDIR, each in
time, held the sync (and the node's stop, which waits for it) for ever, and the adapter's stop waited for the
session's lock the listing held. A paramiko server in this process, on 127.0.0.1."""

from __future__ import annotations

import itertools
import struct
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import paramiko
import pytest
from paramiko.message import Message
from paramiko.sftp import CMD_ATTRS, CMD_NAME, SFTP_EOF

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


def fetch_failure(sync: SftpCsvSync) -> SftpError:
    """What one fetch raised (it must end, within the guard), the adapter stopped after it."""
    try:
        thread, raised = fetch_in_thread(sync)
        thread.join(GUARD_S)
        assert not thread.is_alive(), "the fetch is still listing"
    finally:
        sync.stop()
    (error,) = raised
    assert isinstance(error, SftpError)
    return error


def stop_while_fetching(sync: SftpCsvSync, fetching: threading.Thread) -> None:
    """``sync.stop()`` while ``fetching`` waits on the server: the stop returns, and the fetch ends with it."""
    stopper = threading.Thread(target=sync.stop, daemon=True)
    stopper.start()
    stopper.join(GUARD_S)
    assert not stopper.is_alive(), "stop() waits for the server"
    fetching.join(GUARD_S)
    assert not fetching.is_alive(), "the fetch still waits on the server after stop()"


def test_a_listing_that_never_ends_is_cut_by_the_deadline_and_names_the_folder(
    tmp_path: Path, endless: EndlessServer
) -> None:
    sync = make_sync(tmp_path, endless, download_timeout_s=1)
    error = fetch_failure(sync)
    assert "listing /inbox" in str(error)
    assert "cut after 1 s (download_timeout_s)" in str(error)


@pytest.mark.parametrize("endless", [0.0], indirect=True)
def test_a_listing_past_the_most_entries_fails_naming_the_folder(
    tmp_path: Path, endless: EndlessServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A server sending names without end, fast: the memory the names take is bounded, not the time alone."""
    monkeypatch.setattr(sftp_client, "MAX_LISTED_ENTRIES", 200)
    sync = make_sync(tmp_path, endless, download_timeout_s=600)
    error = fetch_failure(sync)
    assert "/inbox lists more than 200 entries" in str(error)


def test_stop_closes_the_session_while_a_listing_holds_it(tmp_path: Path, endless: EndlessServer) -> None:
    sync = make_sync(tmp_path, endless, download_timeout_s=3600)
    thread, raised = fetch_in_thread(sync)
    assert endless.listing.wait(GUARD_S)
    stop_while_fetching(sync, thread)
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
        thread, _ = fetch_in_thread(sync)  # and a stop while it waits returns, ending the wait
        stop_while_fetching(sync, thread)
    finally:
        ended.set()
        server.close()


BOMB = 0xFFFFFFFF  #: the count a hostile answer claims (paramiko pads the reads past its end with zeros)
EXTENDED = struct.pack(">I", paramiko.SFTPAttributes.FLAG_EXTENDED)  #: attributes' flags: extended pairs follow


class CraftedServer(InProcessSftp):
    """A server whose READDIR is answered once with ``name`` (a NAME packet's bytes after the request id), then
    the end of the folder, and whose STAT/LSTAT/FSTAT are answered with ``attributes`` (an ATTRS packet's bytes
    after the request id); the inbox itself is a folder."""

    def __init__(self, tmp_path: Path, name: bytes, attributes: bytes = struct.pack(">I", 0)) -> None:
        class Handle(paramiko.SFTPHandle):
            sent = False

        class Server(paramiko.SFTPServer):
            def _open_folder(self, request_number: int, path: str) -> None:
                self._send_handle_response(request_number, Handle(), True)  # type: ignore[attr-defined]

            def _read_folder(self, request_number: int, folder: Handle) -> None:
                if folder.sent:
                    self._send_status(request_number, SFTP_EOF)  # type: ignore[attr-defined]
                    return
                folder.sent = True
                self._send_packet(CMD_NAME, Message(struct.pack(">I", request_number) + name))  # type: ignore[attr-defined]

            def _response(self, request_number: int, kind: int, *args: Any) -> None:
                if kind != CMD_ATTRS:
                    super()._response(request_number, kind, *args)  # type: ignore[misc]
                    return
                self._send_packet(CMD_ATTRS, Message(struct.pack(">I", request_number) + attributes))  # type: ignore[attr-defined]

        class Folder(paramiko.SFTPServerInterface):
            def stat(self, path: str) -> paramiko.SFTPAttributes:
                return paramiko.SFTPAttributes()  # answered with ``attributes`` (Server._response)

            lstat = stat

        super().__init__(tmp_path, Folder, Server)


def _entry(name: bytes, attributes: bytes) -> bytes:
    return struct.pack(">I", len(name)) + name + struct.pack(">I", 0) + attributes


def _in_thread(call: Any) -> tuple[threading.Thread, list[BaseException]]:
    raised: list[BaseException] = []

    def run() -> None:
        try:
            call()
        except BaseException as exc:  # the test looks at it
            raised.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, raised


def _listed(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """How many entries each listing parsed: a list growing while the listing runs (its length counted)."""
    counted: list[int] = []
    parse = sftp_client._listdir_attr

    def counting(sftp: paramiko.SFTPClient, path: str, where: str) -> list[tuple[paramiko.SFTPAttributes, int]]:
        try:
            entries = parse(sftp, path, where)
        except BaseException:
            counted.append(-1)
            raise
        counted.append(len(entries))
        return entries

    monkeypatch.setattr(sftp_client, "_listdir_attr", counting)
    return counted


@pytest.mark.parametrize("count", [1000, BOMB])
def test_a_listing_claiming_more_entries_than_its_bytes_hold_fails_as_malformed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, count: int
) -> None:
    """Round 22 A-F7: a 13-byte NAME answer claiming 0xFFFFFFFF entries made the node append empty entries (the
    reads past its end padded with zeros) until memory ran out; neither the deadline nor stop() ended it. A count
    the bytes cannot hold (each entry takes 12 at least) is a malformed answer, and nothing is listed. Past the
    most entries the listing fails inside the loop too (here 200: a bound even were the count trusted)."""
    monkeypatch.setattr(sftp_client, "MAX_LISTED_ENTRIES", 200)
    counted = _listed(monkeypatch)
    server = CraftedServer(tmp_path, struct.pack(">I", count))
    sync = server.sync(tmp_path / "data", download_timeout_s=600)
    try:
        error = fetch_failure(sync)
    finally:
        server.close()
    assert "/inbox: malformed answer" in str(error)
    assert counted == [-1]


@pytest.mark.parametrize("count", [1000, BOMB])
def test_a_listed_entry_claiming_more_extended_attributes_than_its_bytes_hold_fails_as_malformed(
    tmp_path: Path, count: int
) -> None:
    """Round 22 A-F7: one entry whose attributes claimed 0xFFFFFFFF extended pairs held paramiko's parser ~37
    minutes of CPU per entry, past the deadline and stop()."""
    name = struct.pack(">I", 1) + _entry(b"x.csv", EXTENDED + struct.pack(">I", count))
    server = CraftedServer(tmp_path, name)
    sync = server.sync(tmp_path / "data", download_timeout_s=600)
    try:
        error = fetch_failure(sync)
    finally:
        server.close()
    assert "/inbox: malformed answer" in str(error)


@pytest.mark.parametrize(
    "body",
    [
        EXTENDED + struct.pack(">I", 1000),
        EXTENDED + struct.pack(">I", BOMB),
        struct.pack(">I", paramiko.SFTPAttributes.FLAG_SIZE) + b"\x00\x01",  # a size cut short
    ],
    ids=["extended-1000", "extended-bomb", "truncated"],
)
def test_a_file_status_claiming_more_than_its_bytes_hold_fails_as_malformed(tmp_path: Path, body: bytes) -> None:
    """The same attributes in a STAT/LSTAT answer (the check that a fetched file did not change, the outbox's
    names taken): parsed strictly, a malformed answer naming the file."""
    server = CraftedServer(tmp_path, struct.pack(">I", 0), body)
    sync = server.sync(tmp_path / "data", download_timeout_s=600)
    session = sync._session
    try:
        thread, raised = _in_thread(lambda: session.stat("/inbox/x.csv"))
        thread.join(GUARD_S)
        assert not thread.is_alive(), "the check is still parsing"
    finally:
        sync.stop()
        server.close()
    (error,) = raised
    assert isinstance(error, SftpError)
    assert "/inbox/x.csv: malformed answer" in str(error)


def test_well_formed_attributes_with_extended_pairs_are_read(tmp_path: Path) -> None:
    """A server sending real extended pairs (and every field) is still understood, in a listing and a stat."""
    flags = 0x1 | 0x2 | 0x4 | 0x8 | paramiko.SFTPAttributes.FLAG_EXTENDED
    pair = struct.pack(">I", 3) + b"k@x" + struct.pack(">I", 1) + b"v"
    body = struct.pack(">IQIIIIII", flags, 7, 1000, 1000, 0o100644, 5, 6, 1) + pair
    name = struct.pack(">I", 2) + _entry(b"a.csv", body) + _entry(b"..", struct.pack(">I", 0))
    server = CraftedServer(tmp_path, name, body)
    sync = server.sync(tmp_path / "data", download_timeout_s=600)
    session = sync._session
    try:
        listed = session.waiting()
        now = session.stat("/inbox/a.csv")
    finally:
        sync.stop()
        server.close()
    assert [(r.path, r.size, r.mtime, r.regular) for r in listed] == [("/inbox/a.csv", 7, 6, True)]
    assert now is not None
    assert (now.size, now.mtime, now.regular) == (7, 6, True)
