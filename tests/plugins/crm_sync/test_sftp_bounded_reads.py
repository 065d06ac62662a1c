"""Round 23 A-F3: a download (and the read again of a file's bytes before it is archived) held every answer of a
whole-file read-ahead in memory, whatever its length, before the byte limit was checked: a server answering each
32 KiB READ with megabytes, the first one last, made one download hold hundreds of times ``max_file_bytes``. The
reads are now a small window, and an answer longer than its READ fails the file. The in-process SFTP server plays
the hostile server."""

from __future__ import annotations

import hashlib
import logging
import tracemalloc
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import paramiko
import pytest
from paramiko.sftp import CMD_DATA, CMD_READ

from cartera.plugins.crm_sync.sftp_csv import client as sftp_client
from cartera.plugins.crm_sync.sftp_csv.client import FileUnreadable, RemoteFile
from cartera.plugins.crm_sync.sftp_csv.plugin import SftpCsvSync
from tests.plugins.crm_sync.sftp_in_process import InProcessSftp, files_folder

pytestmark = pytest.mark.abuse

SIZE = 2 << 20  #: the file's size as listed and fstat'ed: 64 READs of 32 KiB
CSV = b"cuenta,nombre,telefono1,saldo\n" + b"".join(b"CR-%06d,Ana,3001234567,100\n" % n for n in range(8_000))


class HoldingServer(paramiko.SFTPServer):
    """Holds back the READ for offset 0 and answers every other READ at once with ``answer(length)`` bytes (the
    held one once ``release`` READs were answered); counts the READs received."""

    answer: Callable[[int], bytes] = staticmethod(lambda length: b"y" * length)
    release = SIZE // 32768 - 1
    reads: list[int]  #: offsets of the READs received, in order (shared with the test)

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self.held: tuple[int, int] | None = None
        self.answered = 0

    def _process(self, t: int, request_number: int, msg: paramiko.Message) -> None:
        if t != CMD_READ:
            super()._process(t, request_number, msg)  # type: ignore[misc]
            return
        msg.get_binary()
        offset, length = msg.get_int64(), msg.get_int()
        self.reads.append(offset)
        if offset == 0:
            self.held = (request_number, length)
        else:
            self._response(request_number, CMD_DATA, self.answer(length))  # type: ignore[attr-defined]
            self.answered += 1
        if self.held is not None and self.answered >= self.release:
            number, length = self.held
            self.held = None
            self._response(number, CMD_DATA, self.answer(length))  # type: ignore[attr-defined]


def _server(tmp_path: Path, answer: Callable[[int], bytes], release: int) -> tuple[InProcessSftp, list[int]]:
    reads: list[int] = []

    class Server(HoldingServer):
        pass

    Server.answer = staticmethod(answer)
    Server.release = release
    Server.reads = reads
    return InProcessSftp(tmp_path, files_folder({"a.csv": b"x" * SIZE}), Server), reads


@pytest.fixture
def oversized(tmp_path: Path) -> Iterator[tuple[InProcessSftp, list[int]]]:
    """Answers each READ of 32 KiB with 1 MiB (held: the one for offset 0, until 63 others were answered)."""
    server, reads = _server(tmp_path, lambda _: b"y" * (1 << 20), SIZE // 32768 - 1)
    yield server, reads
    server.close()


def _peak(call: Callable[[], Any]) -> tuple[Any, int]:
    """What ``call`` returned (or raised), and the most bytes Python held meanwhile (the server's included)."""
    tracemalloc.start()
    try:
        try:
            result: Any = call()
        except Exception as exc:  # the test looks at it
            result = exc
        return result, tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_read_answers_longer_than_asked_fail_the_file_without_being_held(
    tmp_path: Path, oversized: tuple[InProcessSftp, list[int]], caplog: pytest.LogCaptureFixture
) -> None:
    """The report's server: 63 answers of 1 MiB were held (63 MiB for a 4 MiB max_file_bytes) before the held
    first one came. Now the first answer longer than its READ fails this file (one warning), nothing held."""
    server, _ = oversized
    sync = server.sync(tmp_path / "data", max_file_bytes=4 << 20, download_timeout_s=600)
    caplog.set_level(logging.WARNING)
    try:
        batches, peak = _peak(lambda: list(sync.fetch()))
    finally:
        sync.stop()
    assert batches == []
    assert peak < 12 << 20, f"{peak >> 20} MiB held"
    (warning,) = [r for r in caplog.records if r.getMessage() == "crm_sync.sftp.file_unreadable"]
    assert "malformed answer from the server (1048576 bytes for a read of 32768)" in warning.fields["why"]  # type: ignore[attr-defined]


def test_reading_a_file_again_refuses_answers_longer_than_asked_without_holding_them(
    tmp_path: Path, oversized: tuple[InProcessSftp, list[int]]
) -> None:
    """The same server to the read again of a file's bytes (before its archive rename, a stuck file's check)."""
    server, _ = oversized
    sync = server.sync(tmp_path / "data", download_timeout_s=600)
    try:
        raised, peak = _peak(lambda: sync._session.sha256(RemoteFile("/inbox/a.csv", SIZE, 1_700_000_000, True)))
    finally:
        sync.stop()
    assert peak < 12 << 20, f"{peak >> 20} MiB held"
    assert isinstance(raised, FileUnreadable)
    assert "(1048576 bytes for a read of 32768)" in str(raised)


def test_a_download_keeps_a_small_window_of_reads_in_flight(tmp_path: Path) -> None:
    """A server holding back the first READ's answer (answering the others at once, as asked): the node asks at
    most READS_AHEAD reads ahead, so at most that many answers wait in memory (a whole-file read-ahead asked all
    64); the download is cut by its deadline."""
    server, reads = _server(tmp_path, lambda length: b"y" * length, SIZE)  # the held answer never comes
    sync = server.sync(tmp_path / "data", download_timeout_s=2)
    try:
        remote = RemoteFile("/inbox/a.csv", SIZE, 1_700_000_000, True)
        with pytest.raises(sftp_client.DownloadTooSlow):
            sync._session.download(remote, tmp_path / "a.csv")
    finally:
        sync.stop()
        server.close()
    assert 0 in reads
    assert len(reads) == sftp_client.READS_AHEAD


def test_a_server_answering_in_order_and_short_is_downloaded_whole(tmp_path: Path) -> None:
    """Answers shorter than asked (a server's right) are followed by a READ for the rest, the READs ahead kept:
    the bytes arrive whole, in order, and their hash is the file's."""
    files = {"a.csv": CSV}
    server = InProcessSftp(
        tmp_path, files_folder(files, lambda name, offset, length: files[name][offset : offset + min(length, 1000)])
    )
    sync: SftpCsvSync = server.sync(tmp_path / "data", max_file_bytes=len(CSV))
    try:
        remote = RemoteFile("/inbox/a.csv", len(CSV), 1_700_000_000, True)
        digest = sync._session.download(remote, tmp_path / "a.csv")
        again = sync._session.sha256(remote)
    finally:
        sync.stop()
        server.close()
    assert (tmp_path / "a.csv").read_bytes() == CSV
    assert digest == again == hashlib.sha256(CSV).hexdigest()
