"""The node's files are not readable by other users of its host: the store and the creditors' files hold every
creditor's debtors (#14 red team round 7, H2)."""

from __future__ import annotations

import os
import sqlite3
import stat
from contextlib import closing
from pathlib import Path

import pytest

from tests.conftest import run_site, write_portfolio, write_sites


@pytest.mark.abuse
@pytest.mark.parametrize(("umask", "denied"), [(0o022, 0o007), (0o077, 0o077)])
def test_what_the_node_writes_is_never_world_readable_and_a_stricter_umask_is_kept(
    tmp_path: Path, umask: int, denied: int
) -> None:
    config = write_sites(tmp_path)
    assignment = write_portfolio(tmp_path, ["BCO-1;Ana Gómez;3001234567;;1000;COP"])
    environment = {"CARTERA_USER_PASSWORD": "a long password"}
    previous = os.umask(umask)  # what the node's process inherits
    try:
        for command in (["import", str(assignment)], ["users", "add", "ana", "--role", "auditor"]):
            result = run_site(config, *command, env=environment)
            assert result.returncode == 0, result.stderr
    finally:
        os.umask(previous)
    written = list((tmp_path / "var").rglob("*"))
    assert any(path.name == "t.db" for path in written)
    exposed = [f"{path}: {stat.filemode(path.lstat().st_mode)}" for path in written if path.lstat().st_mode & denied]
    assert exposed == []


@pytest.mark.abuse
@pytest.mark.parametrize("umask", [0o022, 0o002])
def test_the_store_spool_and_data_dirs_are_the_service_users_alone(tmp_path: Path, umask: int) -> None:
    """Not even the service's group reads the store (every creditor's debtors, the users' password hashes):
    files 0600, folders 0700 (#14 red team round 8, H2)."""
    config = write_sites(tmp_path)
    assignment = write_portfolio(tmp_path, ["BCO-1;Ana Gómez;3001234567;;1000;COP"])
    environment = {"CARTERA_USER_PASSWORD": "a long password"}
    previous = os.umask(umask)
    try:
        for command in (["import", str(assignment)], ["users", "add", "ana", "--role", "auditor"]):
            result = run_site(config, *command, env=environment)
            assert result.returncode == 0, result.stderr
    finally:
        os.umask(previous)
    written = list((tmp_path / "var").rglob("*"))
    assert {"t.db", "t"} <= {path.name for path in written}
    modes = {path: stat.S_IMODE(path.lstat().st_mode) for path in [tmp_path / "var", *written]}
    exposed = [f"{path}: {oct(mode)}" for path, mode in modes.items() if mode not in (0o600, 0o700)]
    assert exposed == []
    assert all(mode == 0o700 for path, mode in modes.items() if path.is_dir())
    with closing(sqlite3.connect(tmp_path / "var" / "t.db")) as store:  # SQLite gives -wal/-shm the store's mode
        store.execute("PRAGMA journal_mode=WAL")
        store.execute("CREATE TABLE probe (x)")
        journals = sorted((tmp_path / "var").glob("t.db-*"))
        assert [path.name for path in journals] == ["t.db-shm", "t.db-wal"]
        assert [stat.S_IMODE(path.stat().st_mode) for path in journals] == [0o600, 0o600]
