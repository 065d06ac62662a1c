"""The append-only audit log: who did what to which subject, when."""

from __future__ import annotations

import getpass
from datetime import datetime
from typing import Any

from sqlalchemy.orm import Session

from cartera.core.clock import Clock
from cartera.core.control_characters import escape_controls
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
    """One entry; control characters in its texts (a request's path, a name someone typed) stored escaped: a NUL
    is no text PostgreSQL stores, and the others would act on the terminal that shows the log."""
    session.add(
        AuditEntry(
            at=at, site=site, actor=_escaped(actor), action=action, subject=_escaped(subject), details=_escaped(details)
        )
    )


def _escaped(value: Any) -> Any:
    """``value`` with each control, bidi and format character in its texts escaped (``\\x00``), at any depth."""
    if isinstance(value, str):
        return escape_controls(value)
    if isinstance(value, dict):
        return {key: _escaped(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_escaped(item) for item in value]
    return value


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
