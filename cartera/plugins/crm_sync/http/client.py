"""HTTP towards creditors: activity exports POSTed to their webhook, with retries; reachability probes."""

from __future__ import annotations

import contextlib
import json
import socket
import threading
import time
from collections.abc import Sequence
from typing import Any
from urllib.parse import urlsplit

import httpx

from cartera.plugin import Activity, CarteraError
from cartera.plugins.crm_sync.http.models import ActivityOut

_RETRYABLE = {408, 425, 429, 500, 502, 503, 504}
#: Most of a webhook's answer body read, bytes: only its status matters.
ANSWER_CAP = 64 << 10
DEFAULT_DEADLINE_S = 10.0


class WebhookFailed(CarteraError):
    """The creditor's webhook did not take an export."""


def display(url: str) -> str:
    """``url`` without credentials, query or fragment: safe in logs and errors."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{host}{port}{parts.path}"


def export_body(creditor: str, activities: Sequence[Activity]) -> bytes:
    """One webhook delivery: the creditor's activities, in seq order, with the seq range."""
    document = {
        "creditor": creditor,
        "first_seq": activities[0].seq,
        "last_seq": activities[-1].seq,
        "activities": [ActivityOut.of(activity).model_dump(mode="json") for activity in activities],
    }
    return json.dumps(document, ensure_ascii=False).encode()


class _DeadlinePassed(Exception):
    """The delivery's total deadline passed while its answer was still coming."""


class _Cutoff:
    """Shuts an exchange's connection down at its deadline, whatever it is waiting for.

    Per-operation timeouts cannot bound an exchange: a webhook sending one header byte a second never lets a read
    time out. httpx has no total timeout, so its ``trace`` extension hands over each connection as it is made;
    a timer thread shuts down a duplicate of its socket (``shutdown`` acts on the connection, the duplicate is
    ours to close, so a number reused after httpx closed its own is never touched, and TLS, which takes over the
    original socket, is cut as well). The blocked read then ends at once; ``close`` stops the timer and closes
    the duplicates, leaving no thread or socket behind."""

    def __init__(self, deadline: float) -> None:
        self._lock = threading.Lock()
        self._sockets: list[socket.socket] = []
        self.fired = False
        self._timer = threading.Timer(max(0.0, deadline - time.monotonic()), self._fire)
        self._timer.name = "webhook-deadline"
        self._timer.daemon = True
        self._timer.start()

    def trace(self, name: str, info: dict[str, Any]) -> None:
        """httpx's ``trace`` extension: keeps each connection made (a proxy's too) to shut it down in time."""
        if not name.endswith(("connect_tcp.complete", "connect_unix_socket.complete")):
            return
        made = info["return_value"].get_extra_info("socket")
        if made is None:
            return
        own = made.dup()
        with self._lock:
            self._sockets.append(own)
            if self.fired:
                self._shut(own)

    def _fire(self) -> None:
        with self._lock:
            self.fired = True
            for own in self._sockets:
                self._shut(own)

    @staticmethod
    def _shut(own: socket.socket) -> None:
        with contextlib.suppress(OSError):  # the peer may have closed it already
            own.shutdown(socket.SHUT_RDWR)

    def close(self) -> None:
        self._timer.cancel()
        self._timer.join()
        with self._lock:
            for own in self._sockets:
                own.close()
            self._sockets.clear()


class Webhook:
    """POSTs JSON to one creditor URL: retries timeouts, connection errors, 408/425/429 and 5xx with backoff.

    Only the status of an answer matters: at most ``ANSWER_CAP`` bytes of its body are read, the rest is
    discarded with the connection. One delivery, every try, wait and answer included, ends by ``deadline_s``:
    checked before each try, each connect waits at most what is left, and the connection is shut down when the
    deadline passes, whatever part of the exchange (request, status line, headers, body) it is in."""

    def __init__(
        self,
        url: str,
        token: str | None,
        *,
        attempts: int,
        timeout_s: float,
        backoff_s: float,
        deadline_s: float = DEFAULT_DEADLINE_S,
    ) -> None:
        self.url = url
        self._headers = {"Content-Type": "application/json"}
        if token:
            self._headers["Authorization"] = f"Bearer {token}"
        self._attempts, self._timeout_s, self._backoff_s = attempts, timeout_s, backoff_s
        self._deadline_s = deadline_s

    def deliver(self, body: bytes, idempotency_key: str) -> None:
        headers = self._headers | {"Idempotency-Key": idempotency_key}
        deadline = time.monotonic() + self._deadline_s
        problem = ""
        tries = 0
        for attempt in range(self._attempts):
            if attempt:
                pause = self._backoff_s * 2 ** (attempt - 1)
                if time.monotonic() + pause >= deadline:
                    problem += f", deadline of {self._deadline_s:g} s passed"
                    break
                time.sleep(pause)
            tries += 1
            try:
                status = self._status("POST", body, headers, deadline)
            except _DeadlinePassed:
                problem = f"deadline of {self._deadline_s:g} s passed"
                break
            except httpx.HTTPError as exc:
                problem = type(exc).__name__
                if time.monotonic() >= deadline:
                    problem += f", deadline of {self._deadline_s:g} s passed"
                    break
                continue
            if 200 <= status < 300:
                return
            problem = f"HTTP {status}"
            if status not in _RETRYABLE:
                break
        raise WebhookFailed(f"webhook {display(self.url)} refused the export ({problem}) after {tries} tries")

    def probe(self, timeout_s: float) -> str | None:
        """``None`` when the URL answers HTTP below 500 (any method may be refused), else what went wrong."""
        try:
            status = self._status("OPTIONS", None, self._headers, time.monotonic() + timeout_s)
        except _DeadlinePassed:
            return f"webhook {display(self.url)} unreachable: answer not complete in {timeout_s:g} s"
        except httpx.HTTPError as exc:
            return f"webhook {display(self.url)} unreachable: {type(exc).__name__}"
        if status >= 500:
            return f"webhook {display(self.url)} answers HTTP {status}"
        return None

    def _status(self, method: str, body: bytes | None, headers: dict[str, str], deadline: float) -> int:
        """The answer's status, its body read up to ``ANSWER_CAP`` bytes by ``deadline``, the rest dropped."""
        left = deadline - time.monotonic()
        if left <= 0:
            raise _DeadlinePassed
        timeout = httpx.Timeout(min(self._timeout_s, left))
        cutoff = _Cutoff(deadline)
        try:
            with (
                httpx.Client(timeout=timeout) as client,
                client.stream(
                    method, self.url, content=body, headers=headers, extensions={"trace": cutoff.trace}
                ) as response,
            ):
                read = 0
                for chunk in response.iter_raw():
                    read += len(chunk)
                    if read >= ANSWER_CAP or time.monotonic() >= deadline:
                        break
        except httpx.HTTPError:
            if cutoff.fired:
                raise _DeadlinePassed from None
            raise
        finally:
            cutoff.close()
        if cutoff.fired or time.monotonic() >= deadline:
            raise _DeadlinePassed
        return response.status_code
