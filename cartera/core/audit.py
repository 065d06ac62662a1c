"""The append-only audit log: who did what to which subject, when."""

from __future__ import annotations

import getpass
from datetime import datetime
from typing import Any

from sqlalchemy.orm import Session

from cartera.core.clock import Clock
from cartera.core.store.database import Database
from cartera.core.store.schema import AuditEntry

SYSTEM = "system"


def os_user() -> str:
    """The operating-system user running a CLI command: the actor of its audit entries."""
    try:
        return f"os:{getpass.getuser()}"
    except (KeyError, OSError):
        return "os:unknown"


def audit(session: Session, *, at: datetime, site: str, actor: str, action: str, subject: str, **details: Any) -> None:
    session.add(AuditEntry(at=at, site=site, actor=actor, action=action, subject=subject, details=details))


class AuditLog:
    """One site's audit log, for a caller that holds no session: each entry is written in its own, at the site's
    clock's now."""

    def __init__(self, site: str, db: Database, clock: Clock) -> None:
        self._site = site
        self._db = db
        self._clock = clock

    def write(self, *, actor: str, action: str, subject: str, **details: Any) -> None:
        with self._db.session() as session:
            audit(
                session, at=self._clock.now(), site=self._site, actor=actor, action=action, subject=subject, **details
            )
