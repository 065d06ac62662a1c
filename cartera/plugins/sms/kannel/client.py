"""HTTP to Kannel: smsbox's ``sendsms`` and bearerbox's status page, credentials never in a log or an error.

Kannel takes its credentials in the URL query, so every text this module puts into an exception or a
detail passes :meth:`KannelClient.redact` first, and so does each line urllib3 and uvicorn's access log write
(request URLs: sendsms with the password, Kannel's callbacks with the token).

Each request has a wall-clock deadline (``timeout_s``, connecting to the last byte of the body), not only a
bound on each socket read: a box that drips its headers or body a byte at a time would otherwise hold the
sender (the campaign's tick, and with it the node's stop) forever. A watchdog thread shuts the request's socket
down when its deadline passes (:class:`cartera.plugin.DeadlineWatchdog`). The body read is bounded too (smsbox
answers one line).
"""

from __future__ import annotations

import logging
import socket
import threading
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, quote_plus

import urllib3
from urllib3.connection import HTTPConnection, HTTPSConnection

from cartera.plugin import MASK, DeadlineWatchdog, RequestDeadline
from cartera.plugins.sms.kannel.config import KannelConfig

SENDSMS_PATH = "/cgi-bin/sendsms"
_URL_LOGGERS = ("urllib3.connectionpool", "uvicorn.access")
STATUS_PATH = "/status.txt"
SENDSMS_MAX_BYTES = 4096  #: the most of smsbox's answer read (it answers one line: ``0: Accepted for delivery``)
STATUS_MAX_BYTES = 1 << 20  #: the most of bearerbox's status.txt read (a few lines per box and SMSC connection)


class KannelUnavailable(Exception):
    """smsbox or bearerbox did not answer (refused, timed out, closed): its message is safe to log. :attr:`sent`
    says whether the request was written whole before that (the box may have taken it and acted on it)."""

    def __init__(self, message: str, *, sent: bool = False) -> None:
        super().__init__(message)
        self.sent = sent


@dataclass(frozen=True, slots=True)
class Reply:
    """What a Kannel box answered: the HTTP status and the one-line body (``0: Accepted for delivery``)."""

    status: int
    body: str

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300


#: The deadline of the request the current thread is making (urllib3 runs it in the caller's thread).
_requests = threading.local()


def _watch(sock: socket.socket) -> None:
    deadline: RequestDeadline | None = getattr(_requests, "deadline", None)
    if deadline is not None:
        deadline.watch(sock)


class _WatchedConnection(HTTPConnection):
    """A pooled connection that hands its socket to the deadline of the request it runs."""

    def _new_conn(self) -> socket.socket:
        sock = super()._new_conn()
        _watch(sock)
        return sock

    def request(self, *args: Any, **kwargs: Any) -> None:
        if self.sock is not None:  # reused from the pool (a new one is watched as it connects)
            _watch(self.sock)
        super().request(*args, **kwargs)
        _requests.sent = True  # written whole: the box may act on it, whatever becomes of its answer


class _WatchedHTTPSConnection(_WatchedConnection, HTTPSConnection):
    pass


class _Pool(urllib3.HTTPConnectionPool):
    ConnectionCls = _WatchedConnection


class _HTTPSPool(urllib3.HTTPSConnectionPool):
    ConnectionCls = _WatchedHTTPSConnection


class _RedactingFilter(logging.Filter):
    """Masks a client's credentials in the records of the loggers that write request URLs."""

    def __init__(self, client: KannelClient) -> None:
        super().__init__()
        self._client = client

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg, record.args = self._client.redact(record.getMessage()), None
        return True


class KannelClient:
    """A pooled HTTP client for one Kannel (urllib3: with concurrent senders it keeps up with Kannel's own
    client, where httpx managed half of it); thread-safe."""

    def __init__(self, config: KannelConfig) -> None:
        self.config = config
        self._http = urllib3.PoolManager(
            num_pools=2, maxsize=config.max_connections, timeout=urllib3.Timeout(total=config.timeout_s), retries=False
        )
        self._http.pool_classes_by_scheme = {"http": _Pool, "https": _HTTPSPool}
        self._watchdog = DeadlineWatchdog("kannel-deadlines", logging.getLogger(__name__))
        secrets = [config.username, config.password.get_secret_value()]
        secrets += [s.get_secret_value() for s in (config.status_password, config.callback_token) if s is not None]
        forms = {form for secret in secrets if secret for form in (secret, quote(secret, safe=""), quote_plus(secret))}
        self._secrets = sorted(forms, key=len, reverse=True)
        self._log_filter = _RedactingFilter(self)
        for name in _URL_LOGGERS:
            logging.getLogger(name).addFilter(self._log_filter)

    def close(self) -> None:
        self._http.clear()
        self._watchdog.close()
        for name in _URL_LOGGERS:
            logging.getLogger(name).removeFilter(self._log_filter)

    def redact(self, text: str) -> str:
        """``text`` with the configured username, passwords and token masked (plain and URL-encoded)."""
        for secret in self._secrets:
            text = text.replace(secret, MASK)
        return text

    def sendsms(self, params: dict[str, str]) -> Reply:
        """One ``sendsms`` request as the configured user with ``params`` (to, text, dlr-url...)."""
        query = {"username": self.config.username, "password": self.config.password.get_secret_value(), **params}
        return self._get(f"{self.config.smsbox_url}{SENDSMS_PATH}", query, "smsbox", SENDSMS_MAX_BYTES)

    def bearerbox_status(self) -> Reply:
        """bearerbox's plain-text status page (``Status: running...``, one line per SMSC connection)."""
        if self.config.status_url is None:
            raise ValueError("no status_url configured")
        password = self.config.status_password.get_secret_value() if self.config.status_password else ""
        url = f"{self.config.status_url}{STATUS_PATH}"
        return self._get(url, {"password": password}, "bearerbox", STATUS_MAX_BYTES)

    def _get(self, url: str, params: dict[str, str], box: str, limit: int) -> Reply:
        """The box's answer within ``timeout_s`` of wall-clock time, its body cut after ``limit`` bytes."""
        deadline = self._watchdog.start(self.config.timeout_s, box)
        _requests.deadline, _requests.sent = deadline, False
        response: urllib3.BaseHTTPResponse | None = None
        body, problem = b"", None
        try:
            response = self._http.request("GET", url, fields=params, preload_content=False, decode_content=False)
            body = _read_at_most(response, limit)
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            problem = str(exc) or type(exc).__name__
        finally:
            _requests.deadline = None
            if deadline.finish():
                problem = f"no full answer within timeout_s ({self.config.timeout_s:g} s)"
        if response is not None and (problem is not None or len(body) > limit):
            response.close()  # the rest is never read: the connection is not reused
        if response is not None:
            response.release_conn()
        if problem is not None:
            sent = bool(getattr(_requests, "sent", False))
            raise KannelUnavailable(self.redact(f"{box} at {url} did not answer: {problem}"), sent=sent)
        text = body[:limit].decode("utf-8", "replace").strip()
        if len(body) > limit:
            text += f" [... cut after {limit} bytes]"
        assert response is not None
        return Reply(response.status, self.redact(text))


def _read_at_most(response: urllib3.BaseHTTPResponse, limit: int) -> bytes:
    """The body up to its end, or its first ``limit + 1`` bytes when it is longer."""
    body = b""
    while len(body) <= limit:
        chunk = response.read(limit + 1 - len(body))
        if not chunk:
            break
        body += chunk
    return body
