"""Server-side sessions and login throttling, both kept in the store (a restart resets neither)."""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import delete, select

from core.store.database import Database
from core.store.schema import LoginThrottle, WebSession


@dataclass(frozen=True)
class SessionInfo:
    user_id: int
    csrf: str
    expires_at: datetime


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class SessionStore:
    """Sessions expire ``minutes`` after the last request (sliding); only token digests are stored."""

    def __init__(self, db: Database, minutes: float, now: Callable[[], datetime]) -> None:
        self.db, self.lifetime, self.now = db, timedelta(minutes=minutes), now

    def create(self, user_id: int) -> tuple[str, SessionInfo]:
        token, now = secrets.token_urlsafe(32), self.now()
        info = SessionInfo(user_id, secrets.token_urlsafe(32), now + self.lifetime)
        with self.db.session() as session:
            session.execute(delete(WebSession).where(WebSession.expires_at <= now))
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
        """The live session of ``token``, its expiry pushed forward; ``None`` when unknown or expired."""
        now = self.now()
        with self.db.session() as session:
            row = session.get(WebSession, _digest(token))
            if row is None or row.expires_at <= now:
                return None
            row.expires_at = now + self.lifetime
            return SessionInfo(row.user_id, row.csrf, row.expires_at)

    def end(self, token: str) -> None:
        with self.db.session() as session:
            session.execute(delete(WebSession).where(WebSession.token_sha256 == _digest(token)))


@dataclass(frozen=True)
class ThrottlePolicy:
    """``max_failures`` failed sign-ins within ``window`` lock the key for ``lockout``."""

    max_failures: int
    window: timedelta = timedelta(minutes=15)
    lockout: timedelta = timedelta(minutes=15)


USER_POLICY = ThrottlePolicy(max_failures=5)
ADDRESS_POLICY = ThrottlePolicy(max_failures=20)


class LoginThrottler:
    """Counts failed sign-ins per user name and per client address."""

    def __init__(self, db: Database, now: Callable[[], datetime]) -> None:
        self.db, self.now = db, now

    def locked_until(self, user: str, address: str) -> datetime | None:
        now = self.now()
        with self.db.session() as session:
            rows = session.scalars(select(LoginThrottle).where(LoginThrottle.key.in_(_keys(user, address))))
            until = [row.locked_until for row in rows if row.locked_until and row.locked_until > now]
        return max(until) if until else None

    def failed(self, user: str, address: str) -> None:
        now = self.now()
        with self.db.session() as session:
            for key, policy in zip(_keys(user, address), (USER_POLICY, ADDRESS_POLICY), strict=True):
                row = session.get(LoginThrottle, key)
                if row is None:
                    row = LoginThrottle(key=key, failures=0, window_start=now)
                    session.add(row)
                if now - row.window_start > policy.window:
                    row.failures, row.window_start = 0, now
                row.failures += 1
                if row.failures >= policy.max_failures:
                    row.locked_until, row.failures, row.window_start = now + policy.lockout, 0, now

    def succeeded(self, user: str) -> None:
        with self.db.session() as session:
            session.execute(delete(LoginThrottle).where(LoginThrottle.key == _keys(user, "")[0]))


def _keys(user: str, address: str) -> tuple[str, str]:
    return f"user:{user[:100]}", f"addr:{address[:100]}"
