"""SIGINT/SIGTERM during a run: they ask the run to stop, and the wait for that request wakes to handle them."""

from __future__ import annotations

import logging
import math
import signal
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType

from cartera.core.logs import event

log = logging.getLogger("cartera.node")
SIGNAL_POLL_S = 0.5  #: how soon a signal the kernel gave another thread is handled


def wait_for_stop(stop: threading.Event, duration: float | None) -> None:
    """Until ``stop`` is set or ``duration`` seconds pass, waking every :data:`SIGNAL_POLL_S`. CPython runs signal
    handlers in the main thread only, and the kernel may hand SIGTERM to any other thread: an endless wait here
    then never woke to run the handler (a node ignored SIGTERM for 15 minutes on a loaded machine)."""
    deadline = math.inf if duration is None else time.monotonic() + duration
    while not stop.is_set() and (left := deadline - time.monotonic()) > 0:
        stop.wait(min(left, SIGNAL_POLL_S))


@contextmanager
def stop_on_signals(stop: threading.Event) -> Iterator[None]:
    """SIGINT/SIGTERM set ``stop`` (main thread only); previous handlers come back afterwards."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, _frame: FrameType | None) -> None:
        event(log, "node.signal", signal=signal.Signals(signum).name)
        stop.set()

    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)
