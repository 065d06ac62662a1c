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

import logging
import socket
from typing import Any

import botocore.awsrequest
from urllib3.connectionpool import HTTPConnectionPool

from cartera.plugin import DeadlineWatchdog, RequestDeadline, event

MAX_ANSWER_EXTENSION_S = 3600.0
"""The most time an answer's announced Content-Length adds to a request's deadline (1 GiB at 300 KiB/s): the
store chooses that length, and 1e11 bytes at the default 64 KiB/s would otherwise give a try ~17 days."""


class Deadlines:
    """How long each of one client's requests may take, enforced by the client's watchdog."""

    def __init__(self, base_s: float, min_rate_bytes_s: float, where: str, log: logging.Logger) -> None:
        self.base_s = base_s
        self.min_rate_bytes_s = min_rate_bytes_s
        self._where = where
        self._log = log
        self.watchdog = DeadlineWatchdog("s3-deadlines", log, self._expired, endpoint=where)

    def seconds_for(self, size: int) -> float:
        """The deadline of a request moving ``size`` bytes of body."""
        return self.base_s + max(size, 0) / self.min_rate_bytes_s

    def start(self, method: str, body_size: int) -> RequestDeadline:
        """The deadline of a request starting now with ``body_size`` bytes of body."""
        return self.watchdog.start(self.seconds_for(body_size), method)

    def extension(self, size: int) -> float:
        """The time an answer announcing ``size`` bytes of body adds to its request's deadline."""
        return min(max(size, 0) / self.min_rate_bytes_s, MAX_ANSWER_EXTENSION_S)

    def _expired(self, deadline: RequestDeadline) -> None:
        event(
            self._log,
            "s3.request_deadline",
            logging.WARNING,
            endpoint=self._where,
            method=deadline.label,
            deadline_s=round(deadline.seconds, 1),
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
    """Mixed before botocore's connection class: starts a deadline as each request starts, and hands it the
    request's socket."""

    deadlines: Deadlines | None = None
    deadline: RequestDeadline | None = None  #: the deadline of the request running, or of the last one
    sock: socket.socket | None  # botocore's connection's

    @property
    def deadline_expired(self) -> bool:
        return self.deadline is not None and self.deadline.expired

    def _new_conn(self) -> socket.socket:
        sock: socket.socket = super()._new_conn()  # type: ignore[misc]
        if self.deadline is not None and not self.deadline.done:
            self.deadline.watch(sock)
        return sock

    def connect(self) -> None:
        super().connect()  # type: ignore[misc]
        if self.deadline_expired:  # the deadline passed while connecting
            self.close()
            raise TimeoutError("the store did not answer within the request's deadline")

    def request(self, method: str, url: str, body: Any = None, headers: Any = None, *args: Any, **kwargs: Any) -> Any:
        if self.deadlines is not None:
            self.finish_deadline()
            self.deadline = self.deadlines.start(method, _body_size(body, headers))
            if self.sock is not None:  # reused from the pool (a new one is watched as it connects)
                self.deadline.watch(self.sock)
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
        if self.deadline is not None and self.deadlines is not None:
            self.deadline.extend(self.deadlines.extension(int(getattr(response, "length_remaining", None) or 0)))
            raw = getattr(response, "_fp", None)  # http.client's response, reading the socket through .fp
            if raw is not None and getattr(raw, "fp", None) is not None:
                raw.fp = _DeadlineReader(raw.fp, self)
        return response

    def finish_deadline(self) -> None:
        """The request is over: its socket is no longer cut at its deadline."""
        if self.deadline is not None:
            self.deadline.finish()

    def close(self) -> None:
        self.finish_deadline()
        super().close()  # type: ignore[misc]


class _DeadlineHTTPConnection(_DeadlineConnection, botocore.awsrequest.AWSHTTPConnection):  # type: ignore[misc]
    pass


class _DeadlineHTTPSConnection(_DeadlineConnection, botocore.awsrequest.AWSHTTPSConnection):  # type: ignore[misc]
    pass


class _DeadlinePool:
    """Mixed before botocore's pool class: hands its deadlines to each connection, whose request's deadline ends
    when the pool takes it back."""

    deadlines: Deadlines

    def _new_conn(self) -> Any:
        conn = super()._new_conn()  # type: ignore[misc]
        conn.deadlines = self.deadlines
        return conn

    def _put_conn(self, conn: Any) -> None:
        if conn is not None:
            conn.finish_deadline()
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
