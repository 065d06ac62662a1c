"""One working node per site on PostgreSQL, and a standby that takes over: a lease row in ``site_leases``.

The node that holds the site's lease renews it every :data:`RENEW_SECONDS`; it expires :data:`LEASE_SECONDS`
after the last renewal (the database's clock, so the nodes' clocks need not agree). A standby polls the row and
takes an expired (or released) lease, raising its fencing token by one. Every action that must happen once checks
the token in its own transaction (:meth:`SiteLease.check`, a ``FOR SHARE`` read of the row): a takeover's
``FOR UPDATE`` waits for those transactions to end, and once it commits a node with the old token is refused
(:class:`LeaseLost`) and stops.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import Connection, text
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from cartera.core.errors import CarteraError
from cartera.core.logs import event
from cartera.core.store.database import Database

log = logging.getLogger("cartera.node")

LEASE_SECONDS = 12.0  #: a lease not renewed for this long may be taken over
RENEW_SECONDS = 3.0  #: how often the holder renews its lease
POLL_SECONDS = 1.0  #: how often a standby looks at the lease

_NOW = "(clock_timestamp() AT TIME ZONE 'UTC')"
_EXPIRES = f"{_NOW} + make_interval(secs => :seconds)"


class LeaseLost(CarteraError):
    """Another node took this node's site over: this node's token is stale, it must change nothing more."""

    exit_code = 3


@dataclass(frozen=True)
class LeaseHolder:
    """A site's lease as the store has it: who holds it, with which token, until when (UTC)."""

    holder: str
    token: int
    expires_at: datetime

    def describe(self, now: datetime) -> tuple[bool, str]:
        """Whether a node holds the site at ``now``, and a line saying which (for ``check`` and ``/healthz``)."""
        if self.expires_at <= now:
            return False, f"no active node: the lease of {self.holder} (token {self.token}) expired"
        left = (self.expires_at - now).total_seconds()
        return True, f"active: {self.holder}, token {self.token}, lease renewed, {left:.0f} s left"


def lease_holder(db: Database, site: str) -> LeaseHolder | None:
    """The site's lease (``None``: no node ever held one, or the store is not PostgreSQL)."""
    if db.url.get_backend_name() != "postgresql":
        return None
    with db.engine.connect() as connection:
        row = connection.execute(
            text("SELECT holder, token, expires_at FROM site_leases WHERE site = :site"), {"site": site}
        ).first()
    return LeaseHolder(row.holder, row.token, row.expires_at.replace(tzinfo=UTC)) if row else None


class SiteLease:
    """This node's lease on ``site`` (PostgreSQL). ``holder`` names the node (pid and host); ``on_lost`` is called
    once, from the renewing thread or the refused action's, when another node is found holding the lease."""

    def __init__(
        self,
        db: Database,
        site: str,
        holder: str,
        on_lost: Callable[[], None],
        *,
        lease_seconds: float = LEASE_SECONDS,
        renew_seconds: float = RENEW_SECONDS,
    ) -> None:
        self._db, self._site, self.holder, self._on_lost = db, site, holder, on_lost
        self._lease_seconds, self._renew_seconds = lease_seconds, renew_seconds
        self.token: int | None = None  #: the fencing token, once acquired
        self.lost: str | None = None  #: why the lease was lost, once it was
        self._done = threading.Event()
        self._lost_lock = threading.Lock()
        self._renewer: threading.Thread | None = None

    def try_acquire(self) -> LeaseHolder | None:
        """Take the lease if no one holds it or its holder's expired; ``None`` then, else the live holder."""
        with self._db.engine.begin() as connection:
            connection.execute(
                text(
                    "INSERT INTO site_leases (site, token, holder, expires_at)"
                    f" VALUES (:site, 0, '', {_NOW}) ON CONFLICT (site) DO NOTHING"
                ),
                {"site": self._site},
            )
            row = connection.execute(
                text(
                    f"SELECT holder, token, expires_at, expires_at <= {_NOW} AS expired"
                    " FROM site_leases WHERE site = :site FOR UPDATE"
                ),
                {"site": self._site},
            ).one()
            if not row.expired:
                return LeaseHolder(row.holder, row.token, row.expires_at.replace(tzinfo=UTC))
            self.token = int(row.token) + 1
            connection.execute(
                text(
                    f"UPDATE site_leases SET token = :token, holder = :holder, expires_at = {_EXPIRES}"
                    " WHERE site = :site"
                ),
                {"site": self._site, "token": self.token, "holder": self.holder, "seconds": self._lease_seconds},
            )
        event(
            log,
            "lease.acquired",
            site=self._site,
            token=self.token,
            holder=self.holder,
            previous=row.holder or None,
            previous_expired_at=row.expires_at.replace(tzinfo=UTC).isoformat() if row.holder else None,
        )
        return None

    def wait(self, stop: threading.Event) -> bool:
        """Stand by until the lease is this node's (``True``) or ``stop`` is set (``False``)."""
        waited: LeaseHolder | None = None
        unreachable = False
        while not stop.is_set():
            try:
                holder = self.try_acquire()
            except SQLAlchemyError as exc:
                if not unreachable:  # once per outage
                    event(log, "lease.unreachable", logging.WARNING, site=self._site, error=type(exc).__name__)
                unreachable = True
            else:
                unreachable = False
                if holder is None:
                    return True
                if waited is None or waited.token != holder.token:
                    event(
                        log,
                        "lease.standby",
                        site=self._site,
                        active=holder.holder,
                        token=holder.token,
                        expires_at=holder.expires_at.isoformat(),
                    )
                waited = holder
            stop.wait(POLL_SECONDS)
        return False

    def start_renewing(self) -> None:
        """Renew the lease every ``renew_seconds`` on a thread, until :meth:`release`; installs the fence."""
        self._db.fence_check = self.check
        self._renewer = threading.Thread(target=self._renew_loop, name=f"lease-{self._site}", daemon=True)
        self._renewer.start()

    def check(self, session: Session) -> None:
        """The fence: raise :class:`LeaseLost` unless the site's token in the store is still this node's. The row
        stays share-locked until ``session`` ends, so no takeover commits between this check and the action."""
        token = session.scalar(text("SELECT token FROM site_leases WHERE site = :site FOR SHARE"), {"site": self._site})
        if token != self.token:
            raise self._lose(f"token {self.token} is stale: the site's lease has token {token}")

    def release(self) -> None:
        """Stop renewing and, unless lost, let the lease expire now so a standby takes over at once."""
        self._done.set()
        if self._renewer is not None:
            self._renewer.join()
        self._db.fence_check = None
        if self.lost is None and self.token is not None:
            try:
                with self._db.engine.begin() as connection:
                    self._renew(connection, 0)
            except SQLAlchemyError as exc:  # the lease then expires by itself
                event(log, "lease.release_failed", logging.WARNING, site=self._site, error=type(exc).__name__)
            else:
                event(log, "lease.released", site=self._site, token=self.token)

    def _renew_loop(self) -> None:
        """A store out of reach fails the renewals (logged once) and every fenced action, but loses nothing by
        itself: once it is back, the lease is renewed if no standby took it meanwhile, else the node stops."""
        failing_since: float | None = None
        while not self._done.wait(self._renew_seconds) and self.lost is None:
            try:
                with self._db.engine.begin() as connection:
                    renewed = self._renew(connection, self._lease_seconds)
            except SQLAlchemyError as exc:
                if failing_since is None:
                    failing_since = time.monotonic()
                    event(log, "lease.renew_failed", logging.WARNING, site=self._site, error=type(exc).__name__)
                continue
            if not renewed:
                self._lose("another node took the site's lease over")
            elif failing_since is not None:
                event(log, "lease.renewed", site=self._site, token=self.token, after_s=time.monotonic() - failing_since)
                failing_since = None

    def _renew(self, connection: Connection, seconds: float) -> bool:
        updated = connection.execute(
            text(f"UPDATE site_leases SET expires_at = {_EXPIRES} WHERE site = :site AND token = :token"),
            {"site": self._site, "token": self.token, "seconds": seconds},
        )
        return updated.rowcount == 1

    def _lose(self, why: str) -> LeaseLost:
        """Record the loss once (logged, ``on_lost`` called) and return the error naming it."""
        error = LeaseLost(f"site {self._site!r}: this node ({self.holder}, token {self.token}) lost the lease: {why}")
        with self._lost_lock:
            first = self.lost is None
            if first:
                self.lost = str(error)
        if first:
            event(log, "lease.lost", logging.ERROR, site=self._site, token=self.token, reason=why)
            self._on_lost()
        return error
