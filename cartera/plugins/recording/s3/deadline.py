"""A wall-clock deadline on every HTTP request to the store, on top of botocore's per-read timeout.

botocore's ``read_timeout`` bounds each read from the socket, so a store that answers one header line (or one
body byte) at a time within it never times out: archival, ``check`` and the node's stop waited on it forever.
Here each request (each try of botocore's retries, each part of a multipart upload) gets a deadline of
``deadline_s`` plus one second per ``min_rate_kib_s`` KiB of body sent or announced in the answer's
Content-Length (that announced length, which the store chooses, adds at most MAX_ANSWER_EXTENSION_S), so a large
upload or read still goes through at that rate. A watchdog thread, which no error ends, shuts down the
socket of a request past its deadline: the request fails like a read timeout and botocore retries it or
gives up (the plugin's StoreUnavailable). The connection classes are this client's own (never process-wide)."""

from __future__ import annotations

import contextlib
import logging
import socket
import threading
import time
from typing import Any

import botocore.awsrequest
from urllib3.connectionpool import HTTPConnectionPool

from cartera.plugin import event

MAX_ANSWER_EXTENSION_S = 3600.0
"""The most time an answer's announced Content-Length adds to a request's deadline (1 GiB at 300 KiB/s): the
store chooses that length, and 1e11 bytes at the default 64 KiB/s would otherwise give a try ~17 days."""
_MAX_WAIT_S = 60.0  # the watchdog wakes at least this often (a far deadline never overflows the wait)


class Deadlines:
    """The deadlines of one client's requests, and the watchdog that enforces them."""

    def __init__(self, base_s: float, min_rate_bytes_s: float, where: str, log: logging.Logger) -> None:
        self.base_s = base_s
        self.min_rate_bytes_s = min_rate_bytes_s
        self._where = where
        self._log = log
        self._cond = threading.Condition()
        self._due: dict[Any, tuple[float, float, str]] = {}  # connection -> (monotonic due, seconds, method)
        self._watchdog: threading.Thread | None = None

    def seconds_for(self, size: int) -> float:
        """The deadline of a request moving ``size`` bytes of body."""
        return self.base_s + max(size, 0) / self.min_rate_bytes_s

    def arm(self, conn: Any, method: str, body_size: int) -> None:
        seconds = self.seconds_for(body_size)
        with self._cond:
            conn.deadline_expired = False
            self._due[conn] = (time.monotonic() + seconds, seconds, method)
            if self._watchdog is None:
                self._watchdog = threading.Thread(target=self._watch, name="s3-deadlines", daemon=True)
                self._watchdog.start()
            self._cond.notify()

    def extend(self, conn: Any, size: int) -> None:
        """More time for a request whose answer announces ``size`` bytes of body."""
        if size <= 0:
            return
        more = min(size / self.min_rate_bytes_s, MAX_ANSWER_EXTENSION_S)
        with self._cond:
            if conn in self._due:
                due, seconds, method = self._due[conn]
                self._due[conn] = (due + more, seconds + more, method)

    def armed(self, conn: Any) -> bool:
        with self._cond:
            return conn in self._due

    def disarm(self, conn: Any) -> None:
        with self._cond:
            self._due.pop(conn, None)

    def _watch(self) -> None:
        with self._cond:
            try:
                while self._due:
                    try:
                        self._expire_due()
                    except Exception as exc:  # the watchdog never dies: later requests would have no deadline
                        event(
                            self._log,
                            "s3.deadline_watchdog_error",
                            logging.ERROR,
                            endpoint=self._where,
                            error=repr(exc),
                        )
                        self._cond.wait(1.0)
            finally:
                self._watchdog = None

    def _expire_due(self) -> None:
        """Expire the requests past their deadline, then wait for the next deadline (or a new request)."""
        now = time.monotonic()
        for conn, (due, seconds, method) in list(self._due.items()):
            if due <= now:
                del self._due[conn]
                self._expire(conn, seconds, method)
        if self._due:
            wait = min(due for due, _, _ in self._due.values()) - now
            self._cond.wait(min(max(0.0, wait), _MAX_WAIT_S))

    def _expire(self, conn: Any, seconds: float, method: str) -> None:
        conn.deadline_expired = True
        sock = getattr(conn, "sock", None)
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
        event(
            self._log,
            "s3.request_deadline",
            logging.WARNING,
            endpoint=self._where,
            method=method,
            deadline_s=round(seconds, 1),
        )


def _body_size(body: Any, headers: Any) -> int:
    length = headers.get("Content-Length") if headers is not None else None
    if length is not None:
        try:
            return int(length)
        except ValueError:
            return 0
    return len(body) if isinstance(body, (bytes, bytearray)) else 0


class _DeadlineReader:
    """The socket file of an answer's body: the end of the stream the watchdog caused is an error, not the end
    of a body of unknown length (a truncated read)."""

    def __init__(self, fp: Any, conn: _DeadlineConnection) -> None:
        self._fp = fp
        self._conn = conn

    def _checked(self, got: Any) -> Any:
        if self._conn.deadline_expired:
            raise TimeoutError("the store did not send its answer within the request's deadline")
        return got

    def read(self, *args: Any) -> Any:
        return self._checked(self._fp.read(*args))

    def read1(self, *args: Any) -> Any:
        return self._checked(self._fp.read1(*args))

    def readinto(self, buffer: Any) -> Any:
        return self._checked(self._fp.readinto(buffer))

    def readline(self, *args: Any) -> Any:
        return self._checked(self._fp.readline(*args))

    def peek(self, *args: Any) -> Any:
        return self._checked(self._fp.peek(*args))

    def __getattr__(self, name: str) -> Any:
        return getattr(self._fp, name)


class _DeadlineConnection:
    """Mixed before botocore's connection class: arms the deadline as each request starts."""

    deadlines: Deadlines | None = None
    deadline_expired = False

    def connect(self) -> None:
        armed = self.deadlines is not None and self.deadlines.armed(self)
        super().connect()  # type: ignore[misc]
        if armed and self.deadline_expired:  # the deadline passed while connecting
            self.close()
            raise TimeoutError("the store did not answer within the request's deadline")

    def request(self, method: str, url: str, body: Any = None, headers: Any = None, *args: Any, **kwargs: Any) -> Any:
        if self.deadlines is not None:
            self.deadlines.arm(self, method, _body_size(body, headers))
        return super().request(method, url, body, headers, *args, **kwargs)  # type: ignore[misc]

    def getresponse(self) -> Any:
        try:
            response = super().getresponse()  # type: ignore[misc]
        except Exception as exc:
            if self.deadline_expired:  # urllib3 makes it a ReadTimeoutError, botocore's ReadTimeoutError
                raise TimeoutError("the store did not answer within the request's deadline") from exc
            raise
        if self.deadline_expired:  # http.client takes the end of the stream for the end of the headers
            raise TimeoutError("the store did not answer within the request's deadline")
        if self.deadlines is not None:
            self.deadlines.extend(self, int(getattr(response, "length_remaining", None) or 0))
            raw = getattr(response, "_fp", None)  # http.client's response, reading the socket through .fp
            if raw is not None and getattr(raw, "fp", None) is not None:
                raw.fp = _DeadlineReader(raw.fp, self)
        return response

    def close(self) -> None:
        if self.deadlines is not None:
            self.deadlines.disarm(self)
        super().close()  # type: ignore[misc]


class _DeadlineHTTPConnection(_DeadlineConnection, botocore.awsrequest.AWSHTTPConnection):  # type: ignore[misc]
    pass


class _DeadlineHTTPSConnection(_DeadlineConnection, botocore.awsrequest.AWSHTTPSConnection):  # type: ignore[misc]
    pass


class _DeadlinePool:
    """Mixed before botocore's pool class: hands its deadlines to each connection, disarmed once released."""

    deadlines: Deadlines

    def _new_conn(self) -> Any:
        conn = super()._new_conn()  # type: ignore[misc]
        conn.deadlines = self.deadlines
        return conn

    def _put_conn(self, conn: Any) -> None:
        if conn is not None:
            self.deadlines.disarm(conn)
        super()._put_conn(conn)  # type: ignore[misc]


def install(client: Any, deadlines: Deadlines) -> None:
    """Give ``client`` (a boto3 client, before its first request) connection pools that enforce ``deadlines``."""
    pools: dict[str, type[HTTPConnectionPool]] = client._endpoint.http_session._pool_classes_by_scheme
    http_pool = type(
        "DeadlineHTTPConnectionPool",
        (_DeadlinePool, botocore.awsrequest.AWSHTTPConnectionPool),
        {"ConnectionCls": _DeadlineHTTPConnection, "deadlines": deadlines},
    )
    https_pool = type(
        "DeadlineHTTPSConnectionPool",
        (_DeadlinePool, botocore.awsrequest.AWSHTTPSConnectionPool),
        {"ConnectionCls": _DeadlineHTTPSConnection, "deadlines": deadlines},
    )
    pools["http"] = http_pool
    pools["https"] = https_pool
