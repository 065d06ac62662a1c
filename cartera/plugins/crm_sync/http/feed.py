"""The activity export as creditors pull it: a SQLite file in the adapter's data directory, keyed by seq.

Appending an export core sends again (after a crash between ``export`` and core's cursor update) changes
nothing, so a creditor paging with ``after=SEQ`` sees every activity once, in seq order.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator, Sequence
from contextlib import closing, contextmanager
from pathlib import Path

from cartera.plugin import Activity
from cartera.plugins.crm_sync.http.models import ActivityOut

_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS activity (seq INTEGER PRIMARY KEY, creditor TEXT NOT NULL, body TEXT NOT NULL)",
    "CREATE INDEX IF NOT EXISTS activity_by_creditor ON activity (creditor, seq)",
)


class ActivityFeed:
    def __init__(self, path: Path) -> None:
        self.path = path

    def create(self) -> None:
        with self._connection() as connection:
            for statement in _SCHEMA:
                connection.execute(statement)

    def append(self, activities: Sequence[Activity]) -> None:
        """Store ``activities`` in one transaction, durably; seqs already stored are left as they are."""
        rows = [(a.seq, a.creditor, ActivityOut.of(a).model_dump_json()) for a in activities]
        with self._connection() as connection:
            connection.executemany("INSERT OR IGNORE INTO activity (seq, creditor, body) VALUES (?, ?, ?)", rows)

    def page(self, creditor: str, after: int, limit: int) -> tuple[list[ActivityOut], bool]:
        """Up to ``limit`` activities of ``creditor`` with seq above ``after``, and whether more follow."""
        with self._connection() as connection:
            bodies = connection.execute(
                "SELECT body FROM activity WHERE creditor = ? AND seq > ? ORDER BY seq LIMIT ?",
                (creditor, after, limit + 1),
            ).fetchall()
        page = [ActivityOut.model_validate_json(body) for (body,) in bodies[:limit]]
        return page, len(bodies) > limit

    @contextmanager
    def _connection(self) -> Iterator[sqlite3.Connection]:
        with closing(sqlite3.connect(self.path, timeout=30)) as connection:
            connection.execute("PRAGMA synchronous = FULL")
            with connection:
                yield connection
