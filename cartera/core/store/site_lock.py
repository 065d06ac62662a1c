"""One working node per site. SQLite: an exclusive ``flock`` on a file beside the database's real path
(``<db>.<site>.lock``: a symlink to the database finds the same lock) held for the node's lifetime, so a second
node on that database file is refused; it goes with the process (kill -9 included), so the next start still
reconciles the calls a killed node left in flight.
PostgreSQL: the site's lease (:mod:`cartera.core.store.site_lease`), so a node on another machine sharing the
database is refused too, or stands by and takes the site over once the working node's lease expires.
"""

from __future__ import annotations

import fcntl
import os
import socket
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

from cartera.core.errors import CarteraError, UsageError
from cartera.core.store.database import Database
from cartera.core.store.site_lease import LEASE_SECONDS, RENEW_SECONDS, LeaseLost, SiteLease, lease_holder


class SiteAlreadyRunning(CarteraError):
    """Another node holds the site: this one must change nothing."""

    exit_code = 2


def _holder() -> str:
    return f"pid {os.getpid()} on host {socket.gethostname()}"


def _refusal(site: str, holder: str) -> SiteAlreadyRunning:
    return SiteAlreadyRunning(f"site {site!r} is already running ({holder or 'holder unknown'})")


def _nothing() -> None:
    pass


@contextmanager
def hold_site(
    db: Database,
    site: str,
    *,
    standby: bool = False,
    stop: threading.Event | None = None,
    on_lost: Callable[[], None] = _nothing,
    lease_seconds: float = LEASE_SECONDS,
    renew_seconds: float = RENEW_SECONDS,
) -> Iterator[bool]:
    """Hold ``site`` for the block (it gets ``True``), or raise :class:`SiteAlreadyRunning` naming the holder.
    ``standby`` (PostgreSQL only) waits for the site's lease instead; the block gets ``False`` when ``stop`` was
    set first. On PostgreSQL ``on_lost`` is called when another node takes the site over, and the block's end
    raises :class:`~cartera.core.store.site_lease.LeaseLost`; the lease is renewed every ``renew_seconds`` and
    expires ``lease_seconds`` after the last renewal."""
    if db.url.get_backend_name() == "postgresql":
        lease = SiteLease(db, site, _holder(), on_lost, lease_seconds=lease_seconds, renew_seconds=renew_seconds)
        with _lease(lease, site, standby, stop or threading.Event()) as held:
            yield held
    elif standby:
        raise UsageError(f"site {site!r}: a standby node needs the site's database on PostgreSQL")
    elif db.url.database and db.url.database != ":memory:":
        real = Path(os.path.realpath(db.url.database))  # one lock per file, however its path is written (symlinks)
        with _file_lock(real.with_name(f"{real.name}.{site}.lock"), site):
            yield True
    else:  # a private in-memory store: no other process can reach it
        yield True


def running_here(db: Database, site: str) -> str | None:
    """Who holds ``site`` on this host now (``pid N on host H``), without taking it; ``None`` when no node does (or
    one on another host: PostgreSQL's lease). For ``check`` beside a running node: the port it listens on is its
    own. SQLite's lock is tried shared for an instant: a node starting in that instant is refused as if running."""
    if db.url.get_backend_name() == "postgresql":
        lease = lease_holder(db, site)
        if lease is None or not lease.describe(datetime.now(UTC))[0]:
            return None
        return lease.holder if lease.holder.endswith(f" on host {socket.gethostname()}") else None
    if not db.url.database or db.url.database == ":memory:":
        return None
    real = Path(os.path.realpath(db.url.database))
    try:
        fd = os.open(real.with_name(f"{real.name}.{site}.lock"), os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        return None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return os.pread(fd, 200, 0).decode(errors="replace").strip() or "holder unknown"
        return None
    finally:
        os.close(fd)  # releases a shared lock taken


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
def _lease(lease: SiteLease, site: str, standby: bool, stop: threading.Event) -> Iterator[bool]:
    if standby:
        if not lease.wait(stop):
            yield False
            return
    elif (active := lease.try_acquire()) is not None:
        raise SiteAlreadyRunning(
            f"site {site!r} is already running ({active.holder}, token {active.token}; its lease expires at"
            f" {active.expires_at:%H:%M:%S}Z if not renewed: `run --standby` waits for it)"
        )
    lease.start_renewing()
    try:
        yield True
    finally:
        lease.release()
    if lease.lost:
        raise LeaseLost(lease.lost)
