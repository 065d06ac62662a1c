"""What the PBX and the SMS gateway report while the store is out of reach (PostgreSQL restarted or failing over):
held in memory, in the order reported, and written once the store answers again, so no call's end, recording or
receipt is lost to an outage. Writing a report twice is harmless (a call's end, a recording's path are recorded
once), so a write whose commit the store made but could not confirm is simply written again."""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable

from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError

from cartera.core.logs import event

log = logging.getLogger("cartera.node")

RETRY_SECONDS = 1.0  #: how often the oldest held report is tried again


def store_unreachable(exc: BaseException) -> bool:
    """Whether ``exc`` says the store could not be reached or dropped the connection, rather than refusing a write."""
    return isinstance(exc, OperationalError | InterfaceError) or (
        isinstance(exc, DBAPIError) and exc.connection_invalidated
    )


class HeldReports:
    """Writes reports through :meth:`write`; one the store cannot take is held, and so is every later one until
    the held ones are written (by a thread trying the oldest every ``retry_seconds``)."""

    def __init__(self, retry_seconds: float = RETRY_SECONDS) -> None:
        self._retry_seconds = retry_seconds
        self._held: deque[tuple[str, Callable[[], object]]] = deque()
        self._lock = threading.Lock()
        self._emptied = threading.Condition(self._lock)
        self._writer: threading.Thread | None = None
        self._closed = False

    def __len__(self) -> int:
        with self._lock:
            return len(self._held)

    def write(self, what: str, write: Callable[[], object]) -> None:
        """Run ``write`` (the report ``what``, named in the logs) now, or hold it while the store is out of reach."""
        with self._lock:
            behind = bool(self._held)
            if behind:  # after the held ones, in order
                self._held.append((what, write))
                return
        try:
            write()
        except Exception as exc:
            if not store_unreachable(exc):
                raise
            self._hold(what, write, exc)

    def wait_written(self, timeout: float) -> bool:
        """Wait up to ``timeout`` seconds for every held report to be written; ``True`` once none is held."""
        with self._emptied:
            return self._emptied.wait_for(lambda: not self._held, timeout)

    def close(self, timeout: float) -> None:
        """Give the held reports ``timeout`` seconds more, then stop; what is still held is logged as lost (the
        next start settles those calls as a killed node's)."""
        self.wait_written(timeout)
        with self._lock:
            self._closed = True
            lost = [what for what, _ in self._held]
            self._held.clear()
        if lost:
            event(log, "store.reports_lost", logging.ERROR, count=len(lost), reports=",".join(lost))

    def _hold(self, what: str, write: Callable[[], object], exc: BaseException) -> None:
        with self._lock:
            if self._closed:
                event(log, "store.reports_lost", logging.ERROR, count=1, reports=what)
                return
            self._held.append((what, write))
            if self._writer is None:
                event(log, "store.reports_held", logging.WARNING, first=what, error=type(exc).__name__)
                self._writer = threading.Thread(target=self._write_held, name="held-reports", daemon=True)
                self._writer.start()

    def _write_held(self) -> None:
        began = time.monotonic()
        written = 0
        while True:
            with self._lock:
                if not self._held:  # said before waiters wake, so they find it logged
                    event(log, "store.reports_written", count=written, after_s=round(time.monotonic() - began, 1))
                    self._writer = None
                    self._emptied.notify_all()
                    return
                what, write = self._held[0]
            try:
                write()
            except Exception as exc:
                if store_unreachable(exc):
                    time.sleep(self._retry_seconds)
                    continue
                log.exception("writing the held report %s failed", what)
            with self._lock:
                if self._held and self._held[0][1] is write:  # not dropped by close() meanwhile
                    self._held.popleft()
            written += 1
