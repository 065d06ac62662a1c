"""The process's one pjsua2 Endpoint, owned by one thread.

The pjsua2-pybind11 binding keeps the GIL during every call into pjsua and takes it for every callback, and it
has no ``libRegisterThread``. So:

- one thread, ``cartera-sip``, creates the library (pjlib registers the thread that creates it) and makes every
  pjsua2 call, running the tasks other threads queue for it; callbacks (on pjsip's worker thread) only take a
  snapshot and queue it for this thread too;
- the calls that take a call's lock (hang up, REFER) go through pjsua's C API with ctypes, which releases the
  GIL: a pybind11 call would hold it while pjsip's worker, holding that lock, waits for it in a callback;
- the Endpoint is shared by reference count: the first dialer to start creates it, the last one to stop
  destroys it, once every call has ended and its Call object was released (a Call outliving the library
  aborts the process in ``pjsua_call_set_user_data``).
"""

from __future__ import annotations

import collections
import ctypes
import heapq
import itertools
import logging
import queue
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from pathlib import Path
from typing import Any, ClassVar, TypeVar

import pjsua2 as pj

from cartera.plugin import CarteraError, event
from cartera.plugins.dialers.sip_trunk.config import CALLS_PER_ENGINE

log = logging.getLogger("cartera.plugin.sip_trunk")

T = TypeVar("T")

#: How long the owner thread waits for the library's calls to end before destroying it anyway.
DRAIN_TIMEOUT_S = 10.0
#: pjlib's select ioqueue holds at most 64 sockets (PJ_IOQUEUE_MAX_HANDLES) and keeps a closed socket's slot
#: for 500 ms (PJ_IOQUEUE_KEY_FREE_DELAY); it aborts the process when none is left. A call takes two (RTP and
#: RTCP), so calls are started only while those of the last 0.6 s and the live ones stay under this budget.
MEDIA_CALL_BUDGET = 28
SOCKET_FREE_DELAY_S = 0.6
PJ_SUCCESS = 0


class SipEngineError(CarteraError):
    """The SIP engine (pjsua2) could not be started or did not do what was asked."""


class _PjStr(ctypes.Structure):
    """pjlib's ``pj_str_t``."""

    _fields_ = [("ptr", ctypes.c_char_p), ("slen", ctypes.c_long)]

    @classmethod
    def of(cls, text: str) -> _PjStr:
        data = text.encode()
        return cls(data, len(data))


def _wheel_library(name: str) -> ctypes.CDLL:
    """One of pjproject's C libraries as the binding loaded it (from the wheel's ``pjsua2_pybind11.libs``)."""
    libs = Path(pj.__file__).resolve().parent / "pjsua2_pybind11.libs"
    found = sorted(libs.glob(f"{name}-*.so*"))
    if not found:
        raise SipEngineError(f"{name} not found in {libs} (pjsua2-pybind11 wheel layout changed?)")
    return ctypes.CDLL(str(found[0]))


def _pjsua_c_api() -> ctypes.CDLL:
    """pjsua's C API, for what the binding lacks or cannot do without holding the GIL."""
    lib = _wheel_library("libpjsua")
    lib.pjsua_call_hangup.argtypes = [ctypes.c_int, ctypes.c_uint, ctypes.c_void_p, ctypes.c_void_p]
    lib.pjsua_call_xfer.argtypes = [ctypes.c_int, ctypes.POINTER(_PjStr), ctypes.c_void_p]
    lib.pjsua_call_hangup_all.argtypes = []
    lib.pjsua_call_get_count.argtypes = []
    lib.pjsua_codec_set_priority.argtypes = [ctypes.POINTER(_PjStr), ctypes.c_uint8]
    return lib


class SipEngine:
    """The shared Endpoint: :meth:`acquire` it, run pjsua2 work with :meth:`run`/:meth:`post`, :meth:`release` it."""

    _lock: ClassVar[threading.Lock] = threading.Lock()
    _current: ClassVar[SipEngine | None] = None
    _users: ClassVar[int] = 0

    def __init__(self) -> None:
        self._tasks: queue.SimpleQueue[Callable[[], None] | None] = queue.SimpleQueue()
        self._timers: list[tuple[float, int, Callable[[], None]]] = []
        self._timer_ids = itertools.count()
        self._ready: Future[None] = Future()
        self._thread = threading.Thread(target=self._own, name="cartera-sip", daemon=True)
        self._calls: set[pj.Call] = set()
        self._ended: collections.deque[float] = collections.deque()  # when recent calls ended
        self._calls_lock = threading.Lock()
        self._c = _pjsua_c_api()
        self.endpoint: pj.Endpoint | None = None

    # --- sharing ----------------------------------------------------------------------------------------

    @classmethod
    def acquire(cls) -> SipEngine:
        """The process's engine, started on first use; raises :class:`SipEngineError` when pjsua cannot start."""
        with cls._lock:
            if cls._current is None:
                engine = cls()
                engine._thread.start()
                try:
                    engine._ready.result()
                except BaseException:
                    engine._thread.join()
                    raise
                cls._current = engine
            cls._users += 1
            return cls._current

    def release(self) -> None:
        """One user is done; the last one stops the engine (destroying the library) and waits for its thread."""
        with SipEngine._lock:
            SipEngine._users -= 1
            if SipEngine._users > 0:
                return
            SipEngine._current = None
            self._tasks.put(None)
            self._thread.join()

    # --- work for the owner thread ------------------------------------------------------------------------

    def run(self, task: Callable[[], T], timeout: float = 30.0) -> T:
        """Run ``task`` on the owner thread and return its result (or raise its exception)."""
        if threading.current_thread() is self._thread:
            return task()
        done: Future[T] = Future()

        def wrapped() -> None:
            try:
                done.set_result(task())
            except BaseException as exc:
                done.set_exception(exc)

        self._tasks.put(wrapped)
        return done.result(timeout)

    def post(self, task: Callable[[], None]) -> None:
        """Queue ``task`` for the owner thread (any thread, including pjsip's callbacks); returns at once."""
        self._tasks.put(task)

    def call_later(self, delay: float, task: Callable[[], None]) -> None:
        """Run ``task`` on the owner thread after ``delay`` seconds (owner thread only)."""
        heapq.heappush(self._timers, (time.monotonic() + delay, next(self._timer_ids), task))

    # --- calls ------------------------------------------------------------------------------------------

    def adopt(self, call: pj.Call) -> None:
        """Keep ``call`` alive until :meth:`forget` (which its DISCONNECTED callback calls)."""
        with self._calls_lock:
            self._calls.add(call)

    def forget(self, call: pj.Call) -> None:
        with self._calls_lock:
            if call in self._calls:
                self._calls.discard(call)
                self._ended.append(time.monotonic())

    def media_room(self) -> bool:
        """Whether a call may start now without running pjlib out of sockets (see MEDIA_CALL_BUDGET)."""
        with self._calls_lock:
            horizon = time.monotonic() - SOCKET_FREE_DELAY_S
            while self._ended and self._ended[0] < horizon:
                self._ended.popleft()
            return len(self._calls) + len(self._ended) < MEDIA_CALL_BUDGET

    @property
    def live_calls(self) -> int:
        with self._calls_lock:
            return len(self._calls)

    def call_count(self) -> int:
        """Calls pjsua holds now (a call's slot is freed just after its DISCONNECTED callback)."""
        return int(self._c.pjsua_call_get_count())

    def hangup(self, call_id: int, code: int = 0) -> int:
        """Hang up (or cancel) pjsua call ``call_id`` without holding the GIL; pjsua's status (0: done)."""
        return int(self._c.pjsua_call_hangup(call_id, code, None, None))

    def refer(self, call_id: int, target: str) -> int:
        """Send a REFER to ``target`` in call ``call_id`` without holding the GIL; pjsua's status (0: sent)."""
        return int(self._c.pjsua_call_xfer(call_id, ctypes.byref(_PjStr.of(target)), None))

    def set_codecs(self, codecs: Sequence[str]) -> None:
        """Offer only ``codecs``, in this order (owner thread)."""
        self._c.pjsua_codec_set_priority(ctypes.byref(_PjStr.of("")), 0)
        for rank, codec in enumerate(codecs):
            if self._c.pjsua_codec_set_priority(ctypes.byref(_PjStr.of(codec)), 254 - rank) != PJ_SUCCESS:
                raise SipEngineError(f"codec {codec!r} is not available in pjsua (codecs = [...] in sites.toml)")

    # --- the owner thread -----------------------------------------------------------------------------------

    def _own(self) -> None:
        try:
            self.endpoint = self._create()
        except BaseException as exc:
            self._ready.set_exception(SipEngineError(f"pjsua2 did not start: {exc}"))
            return
        self._ready.set_result(None)
        event(log, "sip.engine_started", version=self.endpoint.version.full)
        try:
            self._serve()
        finally:
            self._destroy(self.endpoint)
            self.endpoint = None

    @staticmethod
    def _create() -> pj.Endpoint:
        _wheel_library("libpj").pj_log_set_level(0)  # silent from the start (libCreate logs at level 4)
        endpoint = pj.Endpoint()
        endpoint.libCreate()
        config = pj.EpConfig()
        config.uaConfig.threadCnt = 1
        config.uaConfig.maxCalls = CALLS_PER_ENGINE
        config.logConfig.level = 0  # pjsip's own console log: errors reach the dialer as statuses instead
        config.logConfig.consoleLevel = 0
        config.logConfig.msgLogging = 0
        try:
            endpoint.libInit(config)
            endpoint.audDevManager.setNullDev()
            endpoint.libStart()
        except BaseException:
            endpoint.libDestroy()
            raise
        return endpoint

    def _serve(self) -> None:
        while True:
            wait = max(0.0, self._timers[0][0] - time.monotonic()) if self._timers else None
            try:
                task = self._tasks.get(timeout=wait)
            except queue.Empty:
                task = self._due_timer()
            if task is None:
                return
            self._guarded(task)

    def _due_timer(self) -> Callable[[], None]:
        _, _, task = heapq.heappop(self._timers)
        return task

    @staticmethod
    def _guarded(task: Callable[[], Any]) -> None:
        try:
            task()
        except Exception:
            log.exception("SIP engine task failed")

    def _destroy(self, endpoint: pj.Endpoint) -> None:
        """Hang up what is left, let every Call reach DISCONNECTED (and be released), then destroy the library."""
        if self.live_calls:
            self._c.pjsua_call_hangup_all()
        deadline = time.monotonic() + DRAIN_TIMEOUT_S
        while self.live_calls and time.monotonic() < deadline:
            time.sleep(0.02)
        while not self._tasks.empty():  # late snapshots from callbacks: their dialers are gone
            self._tasks.get_nowait()
        with self._calls_lock:
            stuck, self._calls = self._calls, set()
        if stuck:
            log.warning("SIP engine: %d calls did not end within %ss of shutdown", len(stuck), DRAIN_TIMEOUT_S)
        stuck.clear()  # their destructors hang them up while the library is still there
        endpoint.libDestroy()
        event(log, "sip.engine_stopped")
