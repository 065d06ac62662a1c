"""Which texts are still being sent: every process sending a site's text (the node, an ``sms`` command beside it)
holds the site's *senders' lock* shared from before the text's row is stored ``queued`` until the gateway's answer
is stored. Whoever takes it exclusively (:func:`no_text_in_flight`) knows that no live process is between those
two steps, so a ``queued`` row with no gateway id is one a killed process left: the node settles those
(:meth:`cartera.contact.texts.TextService.reconcile_texts`). The lock goes with its holder, kill -9 included.

SQLite: an ``flock`` on ``<db>.<site>.texts.lock`` beside the database file's real path (as the site lock,
:mod:`cartera.core.store.site_lock`). PostgreSQL: a session advisory lock (shared by senders, exclusive for the
settler; the senders' on one connection per process and site, outside the store's pool), so processes on other
machines sharing the database count too. A private in-memory store has no other process: always free.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

from sqlalchemy import Connection, create_engine, text
from sqlalchemy.pool import NullPool

from cartera.core.store.database import Database

#: The first key of the two-key advisory locks (a key space of its own: ``pg_advisory_lock(bigint)`` locks, the
#: compliance gate's, never meet them), "CTXT".
_CLASS = int.from_bytes(b"CTXT", "big")


def _site_key(site: str) -> int:
    """The second key: a signed 32-bit id of ``site``."""
    return int.from_bytes(hashlib.blake2b(site.encode(), digest_size=4).digest(), "big", signed=True)


def _lock_file(db: Database, site: str) -> Path | None:
    if not db.url.database or db.url.database == ":memory:":
        return None
    real = Path(os.path.realpath(db.url.database))
    return real.with_name(f"{real.name}.{site}.texts.lock")


@contextmanager
def _own_connection(db: Database) -> Iterator[Connection]:
    """A connection of the pool's for the lock alone, in autocommit: no transaction is held open meanwhile."""
    with db.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        yield conn


class SendingText:
    """A text's part of its site's senders' lock (:func:`sending_texts`)."""

    def lock_retaken(self) -> bool:
        """Before the gateway's call: ``True`` when the lock had been lost meanwhile (its connection dropped) and was
        taken again: a settler may have settled the text in between. SQLite's ``flock`` is never lost."""
        return False


class _SharedHold(SendingText):
    """One process's shared hold of a site's senders' lock on PostgreSQL, on a connection of its own outside the
    store's pool (round 22 C-F3: a pool connection per text in flight starved the store while a gateway was slow):
    taken while at least one of the process's texts of the site is in flight, released when the last one's answer is
    stored."""

    def __init__(self, db: Database, site: str) -> None:
        self._engine = create_engine(db.url, poolclass=NullPool, isolation_level="AUTOCOMMIT")
        self._keys = {"c": _CLASS, "k": _site_key(site)}
        self._mutex = threading.Lock()
        self._count = 0
        self._conn: Connection | None = None

    def enter(self) -> None:
        with self._mutex:
            if self._count == 0 or not self._alive():
                self._take()
            self._count += 1

    def leave(self) -> None:
        with self._mutex:
            self._count -= 1
            if self._count == 0:
                self._drop()

    def lock_retaken(self) -> bool:
        """Checks the lock's connection (round 22 C-F4: a dropped connection took the lock with it, silently, and
        the text went on unprotected); a lost one is replaced and the lock taken again (waiting for a settler)."""
        with self._mutex:
            if self._alive():
                return False
            self._take()
            return True

    def _alive(self) -> bool:
        if self._conn is None:
            return False
        try:
            self._conn.execute(text("SELECT 1"))
        except Exception:
            self._drop()
            return False
        return True

    def _take(self) -> None:
        self._drop()
        conn = self._engine.connect()
        try:
            conn.execute(text("SELECT pg_advisory_lock_shared(:c, :k)"), self._keys)
        except BaseException:
            with suppress(Exception):
                conn.invalidate()
                conn.close()
            raise
        self._conn = conn

    def _drop(self) -> None:
        conn, self._conn = self._conn, None
        if conn is None:
            return
        try:
            conn.execute(text("SELECT pg_advisory_unlock_shared(:c, :k)"), self._keys)
        except Exception:  # the connection is gone, and its lock with it
            with suppress(Exception):
                conn.invalidate()
        with suppress(Exception):
            conn.close()


_holds: dict[tuple[str, str], _SharedHold] = {}
_holds_mutex = threading.Lock()


def _hold(db: Database, site: str) -> _SharedHold:
    key = (db.url.render_as_string(hide_password=False), site)
    with _holds_mutex:
        if key not in _holds:
            _holds[key] = _SharedHold(db, site)
        return _holds[key]


@contextmanager
def sending_texts(db: Database, site: str) -> Iterator[SendingText]:
    """Hold the site's senders' lock shared for the block: a text of ``site`` is between its ``queued`` row and its
    stored answer. Waits only while a settler holds it (a few queries). On PostgreSQL the process's texts of the
    site share one hold (:class:`_SharedHold`); call :meth:`SendingText.lock_retaken` before the gateway's call."""
    if db.url.get_backend_name() == "postgresql":
        hold = _hold(db, site)
        hold.enter()
        try:
            yield hold
        finally:
            hold.leave()
        return
    path = _lock_file(db, site)
    if path is None:
        yield SendingText()
        return
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_SH)
        yield SendingText()
    finally:
        os.close(fd)  # releases the flock


@contextmanager
def no_text_in_flight(db: Database, site: str) -> Iterator[bool]:
    """Try the site's senders' lock exclusively for the block: ``True`` (held) when no process is sending a text of
    ``site``, ``False`` (not held) when one is; never waits. Senders wait for the block's end."""
    keys = {"c": _CLASS, "k": _site_key(site)}
    if db.url.get_backend_name() == "postgresql":
        with _own_connection(db) as conn:
            held = bool(conn.scalar(text("SELECT pg_try_advisory_lock(:c, :k)"), keys))
            try:
                yield held
            finally:
                if held:
                    try:
                        conn.execute(text("SELECT pg_advisory_unlock(:c, :k)"), keys)
                    except Exception:
                        conn.invalidate()
        return
    path = _lock_file(db, site)
    if path is None:
        yield True
        return
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            held = False
        else:
            held = True
        yield held
    finally:
        with suppress(OSError):
            os.close(fd)
