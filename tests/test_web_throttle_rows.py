"""The sign-in throttle's rows are bounded by the tries its policies allow (round 21 M2): a try the address's lock
refuses writes nothing, and a key whose window has passed with no lock in force is forgotten."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import func, select

from cartera.core.store.database import Database
from cartera.core.store.schema import LoginThrottle
from cartera.users.sessions import ADDRESS_POLICY, PAIR_POLICY, LoginThrottler

STRANGER = "198.51.100.7"


@pytest.fixture
def db(tmp_path: Path) -> Iterator[Database]:
    db = Database(f"sqlite:///{tmp_path / 'throttle.db'}")
    db.migrate()
    try:
        yield db
    finally:
        db.dispose()


def rows(db: Database) -> int:
    with db.reading() as session:
        return session.scalar(select(func.count()).select_from(LoginThrottle)) or 0


def keys(db: Database) -> set[str]:
    with db.reading() as session:
        return set(session.scalars(select(LoginThrottle.key)))


def test_a_try_refused_by_the_addresss_lock_writes_nothing(db: Database) -> None:
    clock = [datetime(2026, 12, 1, 12, 0, tzinfo=UTC)]
    throttle = LoginThrottler(db, lambda: clock[0])
    for index in range(ADDRESS_POLICY.free):  # each a new user name: only the address's count locks it
        assert throttle.attempt(f"u{index}", STRANGER) is None
        throttle.failed(f"u{index}", STRANGER)
    locked = rows(db)
    assert locked == ADDRESS_POLICY.free + 1, "a row per user tried, and the address's"
    refused = [throttle.attempt(f"new{index}", STRANGER) for index in range(50)]
    assert None not in refused, "the address is locked"
    assert rows(db) == locked, "a try the address's lock refused left a row"
    assert throttle.attempt("ana", "203.0.113.5") is None, "another address still tries"


def test_keys_whose_window_passed_with_no_lock_in_force_are_forgotten(db: Database) -> None:
    clock = [datetime(2026, 12, 1, 12, 0, tzinfo=UTC)]
    throttle = LoginThrottler(db, lambda: clock[0])
    for index in range(5):
        assert throttle.attempt(f"u{index}", STRANGER) is None
        throttle.failed(f"u{index}", STRANGER)
    clock[0] += ADDRESS_POLICY.window + timedelta(seconds=1)
    assert throttle.attempt("beto", "192.0.2.1") is None
    assert f"addr:{STRANGER}" not in keys(db), "the address's window passed: its row is forgotten"
    assert f"pair:u0@{STRANGER}" in keys(db), "the pairs' window (a day) has not passed"
    clock[0] += PAIR_POLICY.window
    assert throttle.attempt("carla", "192.0.2.2") is None
    assert keys(db) == {"pair:carla@192.0.2.2", "addr:192.0.2.2"}
