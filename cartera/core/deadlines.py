"""Wall-clock deadlines on blocking socket requests, for clients of peers that may answer a byte at a time.

A per-read timeout bounds each read, so a peer that drips its answer within it holds the caller (a campaign
tick, archival, the node's stop) forever. Here a request gets a :class:`RequestDeadline` from its client's
:class:`DeadlineWatchdog`, hands it each socket it runs on, and finishes it when over; when the deadline passes
first, the watchdog's thread shuts that socket down, which ends any read or write blocked on it, and the
request fails like a timeout.
"""

from __future__ import annotations

import contextlib
import heapq
import itertools
import logging
import os
import socket
import threading
import time
from collections.abc import Callable

from cartera.core.logs import event

_MAX_WAIT_S = 60.0  # the watchdog wakes at least this often (a far deadline never overflows its wait)


class RequestDeadline:
    """The deadline of one request. While the request runs it holds a duplicate of the socket the request is on
    (a duplicate still works once TLS has taken the original over), to shut down from the watchdog's thread."""

    def __init__(self, watchdog: DeadlineWatchdog, seconds: float, label: str) -> None:
        self.seconds = seconds  #: the time the request is given, extensions included
        self.label = label  #: what the request is, for the watchdog's log (``PUT``, ``smsbox``)
        self.at = time.monotonic() + seconds  #: when it passes (``time.monotonic()``)
        self.expired = False
        self.done = False
        self._watchdog = watchdog
        self._socket: socket.socket | None = None

    def watch(self, sock: socket.socket | int) -> None:
        """The request now runs on ``sock``, a socket or a driver's file descriptor (called from the request's
        thread, on connecting or on reuse)."""
        twin = socket.socket(fileno=os.dup(sock if isinstance(sock, int) else sock.fileno()))
        with self._watchdog.lock:
            old, self._socket = self._socket, twin
            if self.expired:  # it passed while connecting
                _shut_down(twin)
        if old is not None:
            old.close()

    def extend(self, seconds: float) -> None:
        """``seconds`` more for this request (a larger answer than the request knew of)."""
        if seconds > 0:
            self._watchdog.extend(self, seconds)

    def finish(self) -> bool:
        """The request is over: whether its deadline had passed. Its socket is never shut down afterwards."""
        with self._watchdog.lock:
            self.done = True
            twin, self._socket = self._socket, None
            expired = self.expired
        if twin is not None:
            twin.close()
        return expired

    def _expire(self) -> None:
        """The deadline passed (the watchdog's thread, holding its lock)."""
        self.expired = True
        if self._socket is not None:
            _shut_down(self._socket)


def _shut_down(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):  # already closed by the peer
        sock.shutdown(socket.SHUT_RDWR)


class DeadlineWatchdog:
    """One thread per client that expires its requests' deadlines in time order; started on the first request,
    ended by :meth:`close`. No error ends it: the client's later requests would have no deadline."""

    def __init__(
        self,
        name: str,
        log: logging.Logger,
        on_expire: Callable[[RequestDeadline], None] | None = None,
        **log_fields: object,
    ) -> None:
        """``name`` names the thread; ``on_expire`` (optional) is called from it for each request cut off;
        ``log_fields`` (the peer's address, say) go with the watchdog's own error events."""
        self.name = name
        self.lock = threading.Condition()
        self._log = log
        self._on_expire = on_expire
        self._log_fields = log_fields
        self._queue: list[tuple[float, int, RequestDeadline]] = []
        self._order = itertools.count()
        self._thread: threading.Thread | None = None

    def start(self, seconds: float, label: str = "") -> RequestDeadline:
        """The deadline of a request starting now and given ``seconds``."""
        deadline = RequestDeadline(self, seconds, label)
        with self.lock:
            self._push(deadline)
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name=self.name, daemon=True)
                self._thread.start()
        return deadline

    def extend(self, deadline: RequestDeadline, seconds: float) -> None:
        with self.lock:
            if not deadline.done and not deadline.expired:
                deadline.at += seconds
                deadline.seconds += seconds
                self._push(deadline)

    def close(self) -> None:
        """Stops the thread; requests still running keep no deadline."""
        with self.lock:
            thread, self._thread = self._thread, None
            self._queue.clear()
            self.lock.notify()
        if thread is not None and thread is not threading.current_thread():
            thread.join(5)

    def _push(self, deadline: RequestDeadline) -> None:
        heapq.heappush(self._queue, (deadline.at, next(self._order), deadline))
        self.lock.notify()

    def _run(self) -> None:
        me = threading.current_thread()
        with self.lock:
            while self._thread is me:
                try:
                    wait = self._expire_due()
                except Exception as exc:
                    event(self._log, "deadline.watchdog_error", logging.ERROR, error=repr(exc), **self._log_fields)
                    wait = 1.0
                self.lock.wait(wait)

    def _expire_due(self) -> float | None:
        """Expires the requests past their deadline; how long until the next one (None: none is waiting)."""
        now = time.monotonic()
        while self._queue:
            at, _, deadline = self._queue[0]
            if not (deadline.done or at != deadline.at or at <= now):  # neither over, extended, nor due
                return min(at - now, _MAX_WAIT_S)
            heapq.heappop(self._queue)
            if at == deadline.at and not deadline.done and not deadline.expired:
                deadline._expire()
                if self._on_expire is not None:
                    self._on_expire(deadline)
        return None
