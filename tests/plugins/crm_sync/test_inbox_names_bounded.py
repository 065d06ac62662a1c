"""Round 23 A-F2: what an inbox lists must not grow the node's memory and log without limit. Every name warned
about (not a regular file, not UTF-8, too large) was kept for good in the adapter's warn-once set, so a server
(or a creditor's account) listing new names on every sync grew it sync after sync; and an SFTP server could list
names of any length (up to 16 MB each), kept whole and logged whole. The in-process SFTP server plays the
hostile server."""

from __future__ import annotations

import logging
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from cartera.plugins.crm_sync.sftp_csv import client as sftp_client
from tests.plugins.crm_sync.sftp_in_process import InProcessSftp, files_folder
from tests.plugins.crm_sync.test_csv_dir import FIXTURES, make_sync

pytestmark = pytest.mark.abuse

CSV = b"cuenta,nombre,telefono1,saldo\nCR-1,Ana,3001234567,100\n"


class ListedServer(InProcessSftp):
    """Lists what :attr:`listed` holds now (name: regular file's bytes, or None for a symlink); records the
    names opened."""

    def __init__(self, tmp_path: Path) -> None:
        self.listed: dict[str, bytes | None] = {}
        self.opened: list[str] = []
        super().__init__(tmp_path, files_folder(self.listed, opened=self.opened))


@pytest.fixture
def server(tmp_path: Path) -> Iterator[ListedServer]:
    listed = ListedServer(tmp_path)
    yield listed
    listed.close()


def _warned(caplog: pytest.LogCaptureFixture, name: str) -> list[dict[str, object]]:
    return [record.fields for record in caplog.records if record.getMessage() == name]  # type: ignore[attr-defined]


def test_sftp_warnings_about_names_no_longer_listed_are_forgotten(
    tmp_path: Path, server: ListedServer, caplog: pytest.LogCaptureFixture
) -> None:
    """A server listing fresh symlinks on every sync: the names warned about are kept only while listed (the
    set held 20 more per sync), and a name still listed is still warned about once only."""
    sync = server.sync(tmp_path / "data")
    caplog.set_level(logging.WARNING)
    held = []
    try:
        for sync_number in range(4):
            server.listed.clear()
            server.listed |= {f"r{sync_number}-{i:02d}.csv": None for i in range(20)} | {"stable.csv": None}
            assert list(sync.fetch()) == []
            held.append(len(sync._first_skip))
    finally:
        sync.stop()
    assert held == [21, 21, 21, 21]
    warned = [fields["file"] for fields in _warned(caplog, "crm_sync.sftp.not_a_regular_file")]
    assert len(warned) == 4 * 20 + 1
    assert sum(str(file).endswith("/inbox/stable.csv") for file in warned) == 1


def test_an_sftp_name_longer_than_the_most_bytes_is_skipped_with_one_warning_showing_it_cut(
    tmp_path: Path, server: ListedServer, caplog: pytest.LogCaptureFixture
) -> None:
    """A name past MAX_NAME_BYTES (1,024: a file system's own bound is 255) is never opened nor kept whole: one
    warning shows it cut, with its length; the rest of the inbox (a name of exactly the most bytes included) is
    fetched as before."""
    longest = "y" * (sftp_client.MAX_NAME_BYTES - 4) + ".csv"
    too_long = "x" * 200_000 + ".csv"
    server.listed |= {"a.csv": CSV, longest: CSV, too_long: CSV}
    sync = server.sync(tmp_path / "data")
    caplog.set_level(logging.WARNING)
    try:
        for _ in range(2):
            fetched = sorted(batch.source.rsplit("/", 1)[-1] for batch in sync.fetch())
            assert fetched == ["a.csv", longest]
        held = len(sync._first_skip)
    finally:
        sync.stop()
    assert too_long not in server.opened
    (warning,) = _warned(caplog, "crm_sync.sftp.name_too_long")
    shown = str(warning["file"])
    assert shown.startswith(f"{sync._session.where}/inbox/xxx")
    assert shown.endswith("…")
    assert len(shown) < 300
    assert warning["name_bytes"] == 200_004
    assert held == 1
    assert max(len(message) for message in caplog.messages) < 300


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="POSIX only")
def test_csv_warnings_about_names_no_longer_listed_are_forgotten(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The csv adapter's inbox (the creditor's account writes it): symlinks made fresh on every sync are kept
    only while listed, one still listed is warned about once only, and a refused archive folder is still said
    once."""
    outside = tmp_path / "outside.csv"
    shutil.copy(FIXTURES / "plain_comma.csv", outside)
    sync = make_sync(tmp_path)
    inbox = sync.config.inbox
    inbox.mkdir()
    (inbox / "stable.csv").symlink_to(outside)
    caplog.set_level(logging.WARNING)
    held = []
    for sync_number in range(4):
        for old in inbox.glob("r*.csv"):
            old.unlink()
        for i in range(20):
            (inbox / f"r{sync_number}-{i:02d}.csv").symlink_to(outside)
        assert list(sync.fetch()) == []
        held.append(len(sync._first_skip))
    assert held == [21, 21, 21, 21]
    warned = [fields["file"] for fields in _warned(caplog, "crm_sync.csv.not_a_regular_file")]
    assert len(warned) == 4 * 20 + 1
    assert warned.count(str(inbox / "stable.csv")) == 1


@pytest.mark.parametrize("archive", [None, "imported/2026"])
def test_csv_a_refused_archive_folder_is_still_said_once_across_syncs(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, archive: str | None
) -> None:
    """The warn-once set forgets the files no longer listed, never the archive (rejected) folder it refused nor a
    folder leading to it (round 24 A-F1: ``imported`` refused on the way to ``imported/2026`` was said again on
    every sync): the move retried on every sync is refused again, said once."""
    other_inbox = tmp_path / "otro-inbox"
    other_inbox.mkdir()
    settings: dict[str, Any] = {} if archive is None else {"archive": tmp_path / "inbox" / archive}
    sync = make_sync(tmp_path, **settings)
    inbox = sync.config.inbox
    inbox.mkdir()
    sync.start()
    (inbox / "imported").symlink_to(other_inbox, target_is_directory=True)
    shutil.copy(FIXTURES / "plain_comma.csv", inbox / "a.csv")
    caplog.set_level(logging.WARNING)
    (batch,) = sync.fetch()
    list(batch.items)
    sync.acknowledge(batch)
    for _ in range(3):
        assert list(sync.fetch()) == []
    assert list(other_inbox.iterdir()) == []
    assert len(_warned(caplog, "crm_sync.csv.folder_refused")) == 1
