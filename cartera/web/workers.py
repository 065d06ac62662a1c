"""The pages' blocking work (sign-ins, searches, fetches) runs in a small pool of threads, with at most ``queue``
requests waiting; beyond that the pages answer 503 at once, writing nothing to the store (the log counts them).
Password hashing, the CPU-heavy part, runs on low-priority threads of its own that hold no store lock: a low
priority thread holding SQLite's write lock would keep the scheduled jobs waiting whenever the CPU is busy. A burst
of sign-ins can take neither the CPU nor the store from the node's scheduled jobs (campaign tick, archival).

Anonymous work (the sign-in form, sign-in posts, any pooled request carrying no session cookie) runs in a lane of
its own (half the workers, at least one, and ``queue`` waiting): a stranger's flood fills that lane only and is
shed there (503), and signed-in users' requests keep their workers and queue (round 20 H4).

What anyone may ask again and again and all askers share (``/metrics``, ``/healthz``: no sign-in) is a
:class:`SharedResult`: one computation at a time on a thread of its own, awaited by every concurrent request on the
event loop (holding no thread), and served as is to later ones for a second (round 21 M1)."""

from __future__ import annotations

import asyncio
import functools
import os
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Generic, ParamSpec, TypeVar

from starlette.requests import HTTPConnection

P = ParamSpec("P")
R = TypeVar("R")
RETRY_AFTER_S = 2
NICENESS = 10  #: the hashing threads' scheduling priority below the node's own threads (Linux: per thread)


class Overloaded(Exception):
    """Every worker busy and the queue full: answered 503 with ``Retry-After``."""


class _Lane:
    """Workers with at most ``size + queue`` requests admitted (running or waiting)."""

    def __init__(self, size: int, queue: int, name: str) -> None:
        self._admitted = threading.BoundedSemaphore(size + queue)
        self._pool = ThreadPoolExecutor(size, thread_name_prefix=name)

    def run(self, work: Callable[[], R]) -> R:
        if not self._admitted.acquire(blocking=False):
            raise Overloaded
        try:
            return self._pool.submit(work).result()
        finally:
            self._admitted.release()


class WorkerPool:
    def __init__(self, size: int, queue: int, session_cookie: str = "") -> None:
        self._signed_in = _Lane(size, queue, "cartera-web-worker")
        self._anonymous = _Lane(max(1, size // 2), queue, "cartera-web-anonymous")
        self._session_cookie = session_cookie
        self._hashing = ThreadPoolExecutor(size, thread_name_prefix="cartera-web-hashing", initializer=_lower_priority)

    def run(self, work: Callable[[], R], *, anonymous: bool = False) -> R:
        """``work``'s result, computed by a worker of its lane; raises :class:`Overloaded` when that lane's queue
        is full."""
        return (self._anonymous if anonymous else self._signed_in).run(work)

    def low_priority(self, work: Callable[[], R]) -> R:
        """``work``'s result, computed on a low-priority thread: CPU-heavy work (a password hash) that must not
        hold a store lock (a worker waits for it)."""
        return self._hashing.submit(work).result()

    def pooled(self, endpoint: Callable[P, R]) -> Callable[P, R]:
        """``endpoint`` (a blocking route) run through :meth:`run`: in the anonymous lane when its request carries
        no session cookie."""
        return self._wrapped(endpoint, always_anonymous=False)

    def anonymous(self, endpoint: Callable[P, R]) -> Callable[P, R]:
        """``endpoint`` (a blocking route strangers use: signing in) run in the anonymous lane, whatever cookie
        its request carries."""
        return self._wrapped(endpoint, always_anonymous=True)

    def _wrapped(self, endpoint: Callable[P, R], *, always_anonymous: bool) -> Callable[P, R]:
        @functools.wraps(endpoint)
        def pooled_endpoint(*args: P.args, **kwargs: P.kwargs) -> R:
            anonymous = always_anonymous or not self._has_session(list(args) + list(kwargs.values()))
            return self.run(functools.partial(endpoint, *args, **kwargs), anonymous=anonymous)

        return pooled_endpoint

    def _has_session(self, values: list[object]) -> bool:
        requests = [value for value in values if isinstance(value, HTTPConnection)]
        return bool(requests) and bool(requests[0].cookies.get(self._session_cookie))


class SharedResult(Generic[R]):
    """``compute``'s result shared by all who ask: one computation at a time, on a thread of its own; a request
    arriving while it runs waits for it on the event loop (no thread held), and one arriving at most ``fresh()``
    seconds after it finished gets that result as is. However many ask at once, the store sees one reader and
    the pages' threads none; a failed computation is not kept (the next request computes again)."""

    def __init__(self, compute: Callable[[], R], fresh: Callable[[], float], name: str) -> None:
        self._compute, self._fresh = compute, fresh
        self._thread = ThreadPoolExecutor(1, thread_name_prefix=name)
        self._lock = threading.Lock()
        self._running: Future[R] | None = None
        self._last: tuple[float, R] | None = None  #: when the last computation finished, its result

    async def get(self) -> R:
        with self._lock:
            last = self._last
            if last is not None and time.monotonic() - last[0] <= self._fresh():
                return last[1]
            if self._running is None:
                self._running = self._thread.submit(self._run)
            running = self._running
        # shielded: a request whose client left must not cancel the computation the others wait for
        return await asyncio.shield(asyncio.wrap_future(running))

    def _run(self) -> R:
        try:
            result = self._compute()
        except BaseException:
            with self._lock:
                self._running = None
            raise
        with self._lock:
            self._last, self._running = (time.monotonic(), result), None
        return result


def _lower_priority() -> None:
    """Linux nices threads one by one, and argon2's own threads inherit it; elsewhere this would nice the
    whole process, so it is left alone."""
    if sys.platform == "linux":
        thread = threading.get_native_id()  # below the node's own priority, whatever the node was started with
        os.setpriority(os.PRIO_PROCESS, thread, min(os.getpriority(os.PRIO_PROCESS, thread) + NICENESS, 19))
