"""One running node per site: an exclusive lock held for the node's lifetime, released with its process.

SQLite: ``flock`` on a file beside the database (``<db>.<site>.lock``), so a second node on that database
file is refused. PostgreSQL: a session advisory lock keyed by the site, so a node on another machine sharing
the database is refused too. Either lock goes when the process dies (kill -9 included), so the next start
still reconciles the calls a killed node left in flight.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy import text

from cartera.core.errors import CarteraError
from cartera.core.store.database import Database


class SiteAlreadyRunning(CarteraError):
    """Another node holds the site: this one must change nothing."""

    exit_code = 2


def _holder() -> str:
    return f"pid {os.getpid()} on host {socket.gethostname()}"


def _refusal(site: str, holder: str) -> SiteAlreadyRunning:
    return SiteAlreadyRunning(f"site {site!r} is already running ({holder or 'holder unknown'})")


@contextmanager
def hold_site(db: Database, site: str) -> Iterator[None]:
    """Hold ``site``'s lock for the block, or raise :class:`SiteAlreadyRunning` naming the holder."""
    if db.url.get_backend_name() == "postgresql":
        with _advisory_lock(db, site):
            yield
    elif db.url.database and db.url.database != ":memory:":
        with _file_lock(Path(db.url.database).with_name(f"{Path(db.url.database).name}.{site}.lock"), site):
            yield
    else:  # a private in-memory store: no other process can reach it
        yield


@contextmanager
def _file_lock(path: Path, site: str) -> Iterator[None]:
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise _refusal(site, os.pread(fd, 200, 0).decode(errors="replace").strip()) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, _holder().encode(), 0)
        yield
    finally:
        os.close(fd)  # releases the flock


@contextmanager
def _advisory_lock(db: Database, site: str) -> Iterator[None]:
    key = int.from_bytes(hashlib.sha256(f"cartera site {site}".encode()).digest()[:8], "big", signed=True)
    with db.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
        connection.execute(text("SELECT set_config('application_name', :name, false)"), {"name": _holder()})
        if not connection.scalar(text("SELECT pg_try_advisory_lock(CAST(:key AS bigint))"), {"key": key}):
            holder = connection.scalar(
                text(
                    "SELECT a.application_name FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid"
                    " WHERE l.locktype = 'advisory' AND l.granted"
                    " AND l.classid = ((CAST(:key AS bigint) >> 32) & 4294967295)::oid"
                    " AND l.objid = (CAST(:key AS bigint) & 4294967295)::oid"
                ),
                {"key": key},
            )
            raise _refusal(site, str(holder or ""))
        try:
            yield
        finally:
            connection.scalar(text("SELECT pg_advisory_unlock(CAST(:key AS bigint))"), {"key": key})
