"""Server-side sessions, sign-in pre-sessions and sign-in throttling, all kept in the store (a restart resets
none of them)."""

from __future__ import annotations

import contextlib
import hashlib
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import delete, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from cartera.core.store.database import Database
from cartera.core.store.schema import LoginThrottle, WebPreSession, WebSession

PRESESSION_LIFETIME = timedelta(minutes=30)


@dataclass(frozen=True)
class SessionInfo:
    user_id: int
    csrf: str
    expires_at: datetime


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class SessionStore:
    """Sessions expire ``idle_minutes`` after the last request and ``max_hours`` after sign-in, whichever
    comes first. A user has one session: signing in ends the older ones. Only token digests are stored."""

    def __init__(self, db: Database, idle_minutes: float, max_hours: float, now: Callable[[], datetime]) -> None:
        self.db, self.now = db, now
        self.idle, self.longest = timedelta(minutes=idle_minutes), timedelta(hours=max_hours)

    def create(self, user_id: int) -> tuple[str, SessionInfo]:
        token, now = secrets.token_urlsafe(32), self.now()
        info = SessionInfo(user_id, secrets.token_urlsafe(32), now + min(self.idle, self.longest))
        with self.db.session() as session:
            session.execute(delete(WebSession).where(or_(WebSession.expires_at <= now, WebSession.user_id == user_id)))
            session.add(
                WebSession(
                    token_sha256=_digest(token),
                    user_id=user_id,
                    csrf=info.csrf,
                    created_at=now,
                    expires_at=info.expires_at,
                )
            )
        return token, info

    def lookup(self, token: str) -> SessionInfo | None:
        """The live session of ``token``, its idle expiry pushed forward; ``None`` when unknown or expired."""
        now = self.now()
        with self.db.session() as session:
            row = session.get(WebSession, _digest(token))
            if row is None or row.expires_at <= now:
                return None
            row.expires_at = min(now + self.idle, row.created_at + self.longest)
            return SessionInfo(row.user_id, row.csrf, row.expires_at) if row.expires_at > now else None

    def end(self, token: str) -> None:
        with self.db.session() as session:
            session.execute(delete(WebSession).where(WebSession.token_sha256 == _digest(token)))

    def begin_sign_in(self) -> tuple[str, str]:
        """A pre-session for the sign-in form: its cookie token and the form's CSRF token."""
        token, csrf, now = secrets.token_urlsafe(32), secrets.token_urlsafe(32), self.now()
        with self.db.session() as session:
            session.execute(delete(WebPreSession).where(WebPreSession.expires_at <= now))
            session.add(WebPreSession(token_sha256=_digest(token), csrf=csrf, expires_at=now + PRESESSION_LIFETIME))
        return token, csrf

    def finish_sign_in(self, token: str) -> str | None:
        """The CSRF token issued with pre-session ``token``, which ends here (each is good for one try)."""
        with self.db.session() as session:
            row = session.get(WebPreSession, _digest(token))
            if row is None:
                return None
            session.delete(row)
            return row.csrf if row.expires_at > self.now() else None


@dataclass(frozen=True)
class ThrottlePolicy:
    """``free`` tries within ``window``; after that, each failure makes the next try wait twice as long as
    the last, from ``first_delay`` up to ``max_delay``."""

    free: int
    first_delay: timedelta
    max_delay: timedelta = timedelta(minutes=15)
    window: timedelta = timedelta(hours=24)

    def delay(self, failures: int) -> timedelta:
        if failures < self.free:
            return timedelta(0)
        return min(self.first_delay * (1 << min(failures - self.free, 20)), self.max_delay)


FREE_TRIES = 3
PAIR_POLICY = ThrottlePolicy(free=FREE_TRIES, first_delay=timedelta(seconds=5))  #: one user from one address
ADDRESS_POLICY = ThrottlePolicy(free=20, first_delay=timedelta(minutes=1), window=timedelta(minutes=15))
CHECKING = timedelta(minutes=1)  #: how long a claimed try holds the key while its password is checked
PURGE_EVERY = timedelta(minutes=1)  #: how often keys whose window passed are forgotten (when a key is added)
PAIR_PREFIX, ADDRESS_PREFIX = "pair:", "addr:"


class LoginThrottler:
    """Sign-in tries per (user, address) and per address (across users). A try is claimed, atomically, before
    its password is checked, so parallel tries check no more passwords than allowed; a user is never locked
    out everywhere because of tries from elsewhere."""

    def __init__(self, db: Database, now: Callable[[], datetime]) -> None:
        self.db, self.now = db, now
        self._next_purge: datetime | None = None

    def attempt(self, user: str, address: str) -> datetime | None:
        """Claim one password check: ``None`` when granted, else until when tries from here are refused. A try
        the address's lock refuses writes nothing (round 21 M2: a locked stranger's new user names each left a
        row, for ever)."""
        keyed = _keyed(user, address)
        by_address, policy = keyed[1]
        refused = self._locked(by_address, policy)
        if refused is not None:
            return refused
        for key, policy in keyed:
            refused = self._claim(key, policy)
            if refused is not None:
                return refused
        return None

    def failed(self, user: str, address: str) -> None:
        """The claimed try's password was wrong: the next try waits as the policies say."""
        with self.db.session() as session:
            for key, policy in _keyed(user, address):
                self._wait(session, key, policy, change=0)

    def succeeded(self, user: str, address: str) -> None:
        """The claimed try signed in: the pair starts over, and the address gets its try back."""
        (pair, _), (by_address, policy) = _keyed(user, address)
        with self.db.session() as session:
            session.execute(delete(LoginThrottle).where(LoginThrottle.key == pair))
            self._wait(session, by_address, policy, change=-1)

    def _wait(self, session: Session, key: str, policy: ThrottlePolicy, change: int) -> None:
        """Set when ``key`` may try next, after changing its count by ``change``; only the latest claim
        (whose count is still current) sets it."""
        failures = session.scalar(select(LoginThrottle.failures).where(LoginThrottle.key == key))
        if failures is not None:
            failures = max(failures + change, 0)
            session.execute(
                update(LoginThrottle)
                .where(LoginThrottle.key == key, LoginThrottle.failures == failures - change)
                .values(failures=failures, locked_until=self.now() + policy.delay(failures))
            )

    def _locked(self, key: str, policy: ThrottlePolicy) -> datetime | None:
        """Until when ``key`` refuses tries, as :meth:`_claim` would decide now; ``None`` when it would let one
        try. Only reads."""
        now, row = self.now(), LoginThrottle
        with self.db.reading() as session:
            found = session.execute(
                select(row.failures, row.window_start, row.locked_until).where(row.key == key)
            ).one_or_none()
        if found is None:
            return None
        failures, window_start, locked_until = found
        if window_start <= now - policy.window or failures < policy.free or locked_until is None:
            return None
        return locked_until if locked_until > now else None

    def _claim(self, key: str, policy: ThrottlePolicy) -> datetime | None:
        now = self.now()
        with contextlib.suppress(IntegrityError), self.db.session() as session:  # a parallel try made it first
            if session.get(LoginThrottle, key) is None:
                self._purge(session, now)
                session.add(LoginThrottle(key=key, failures=0, window_start=now))
        row = LoginThrottle
        with self.db.session() as session:
            session.execute(
                update(LoginThrottle)
                .where(row.key == key, row.window_start <= now - policy.window)
                .values(failures=0, window_start=now, locked_until=None)
            )
            claimed = session.scalar(  # one statement: a row lock (PostgreSQL) or the write lock (SQLite)
                update(LoginThrottle)
                .where(
                    row.key == key,
                    or_(row.failures < policy.free, row.locked_until.is_(None), row.locked_until <= now),
                )
                .values(failures=row.failures + 1, locked_until=now + CHECKING)
                .returning(row.failures)
            )
            if claimed is not None:
                return None
            return session.scalar(select(row.locked_until).where(row.key == key)) or now

    def _purge(self, session: Session, now: datetime) -> None:
        """Forget the keys whose window has passed with no lock in force (their next try would start them over),
        at most once a minute, when a key is added: the rows are bounded by the tries the policies allow."""
        if self._next_purge is not None and now < self._next_purge:
            return
        self._next_purge = now + PURGE_EVERY
        row = LoginThrottle
        unlocked = or_(row.locked_until.is_(None), row.locked_until <= now)
        for prefix, policy in ((PAIR_PREFIX, PAIR_POLICY), (ADDRESS_PREFIX, ADDRESS_POLICY)):
            session.execute(
                delete(row).where(row.key.startswith(prefix), row.window_start <= now - policy.window, unlocked)
            )


def _keyed(user: str, address: str) -> tuple[tuple[str, ThrottlePolicy], tuple[str, ThrottlePolicy]]:
    pair, by_address = f"{PAIR_PREFIX}{user[:64]}@{address[:58]}", f"{ADDRESS_PREFIX}{address[:100]}"
    return (pair, PAIR_POLICY), (by_address, ADDRESS_POLICY)
