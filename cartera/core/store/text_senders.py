"""Which texts are still being sent: every process sending a site's text (the node, an ``sms`` command beside it)
holds the site's *senders' lock* shared from before the text's row is stored ``queued`` until the gateway's answer
is stored. Whoever takes it exclusively (:func:`no_text_in_flight`) knows that no live process is between those
two steps, so a ``queued`` row with no gateway id is one a killed process left: the node settles those
(:meth:`cartera.contact.texts.TextService.reconcile_texts`). The lock goes with its holder, kill -9 included.

SQLite: an ``flock`` on ``<db>.<site>.texts.lock`` beside the database file's real path (as the site lock,
:mod:`cartera.core.store.site_lock`). PostgreSQL: a session advisory lock on a connection of its own (shared by
senders, exclusive for the settler), so processes on other machines sharing the database count too. A private
in-memory store has no other process: always free.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

from sqlalchemy import Connection, text

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


@contextmanager
def sending_texts(db: Database, site: str) -> Iterator[None]:
    """Hold the site's senders' lock shared for the block: a text of ``site`` is between its ``queued`` row and its
    stored answer. Waits only while a settler holds it (a few queries)."""
    keys = {"c": _CLASS, "k": _site_key(site)}
    if db.url.get_backend_name() == "postgresql":
        with _own_connection(db) as conn:
            conn.execute(text("SELECT pg_advisory_lock_shared(:c, :k)"), keys)
            try:
                yield
            finally:
                try:
                    conn.execute(text("SELECT pg_advisory_unlock_shared(:c, :k)"), keys)
                except Exception:  # the connection is gone, and its lock with it
                    conn.invalidate()
        return
    path = _lock_file(db, site)
    if path is None:
        yield
        return
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_SH)
        yield
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
