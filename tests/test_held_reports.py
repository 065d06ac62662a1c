"""Reports the store cannot take are held in order and written once it answers (#18 item 3); the private
PostgreSQL restart is tests/test_store_outage.py."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

import pytest
from sqlalchemy.exc import IntegrityError, OperationalError

from cartera.runtime.held_reports import HeldReports


class Store:
    """A store that is down until ``up`` is set, recording what was written."""

    def __init__(self) -> None:
        self.up = threading.Event()
        self.written: list[str] = []

    def writer(self, report: str) -> tuple[str, Callable[[], None]]:
        def write() -> None:
            if not self.up.is_set():
                raise OperationalError("INSERT", {}, ConnectionRefusedError("connection refused"))
            self.written.append(report)

        return report, write


def test_reports_are_held_while_the_store_is_down_and_written_in_order_once_it_answers(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, "cartera")
    store = Store()
    reports = HeldReports(retry_seconds=0.01)
    store.up.set()
    reports.write(*store.writer("call 1"))
    store.up.clear()
    for name in ("agent of call 2", "call 2", "recording of call 2"):
        reports.write(*store.writer(name))
    assert len(reports) == 3
    assert not reports.wait_written(0.1)
    store.up.set()
    reports.write(*store.writer("call 3"))  # behind the held ones, not before them
    assert reports.wait_written(5)
    assert store.written == ["call 1", "agent of call 2", "call 2", "recording of call 2", "call 3"]
    events = [record.getMessage() for record in caplog.records]
    assert events.count("store.reports_held") == 1
    assert events.count("store.reports_written") == 1


def test_a_write_the_store_refuses_is_raised_not_held() -> None:
    reports = HeldReports()

    def refused() -> None:
        raise IntegrityError("INSERT", {}, ValueError("duplicate key"))

    with pytest.raises(IntegrityError):
        reports.write("call 1", refused)
    assert len(reports) == 0


def test_reports_still_held_when_the_node_closes_are_logged_as_lost(caplog: pytest.LogCaptureFixture) -> None:
    store = Store()
    reports = HeldReports(retry_seconds=0.01)
    reports.write(*store.writer("call 7"))
    reports.close(0.05)
    lost = [record for record in caplog.records if record.getMessage() == "store.reports_lost"]
    assert [(r.levelno, r.fields) for r in lost] == [(logging.ERROR, {"count": 1, "reports": "call 7"})]  # type: ignore[attr-defined]
    store.up.set()
    assert store.written == []
