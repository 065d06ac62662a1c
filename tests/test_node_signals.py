"""A node stops on SIGTERM whichever of its threads the kernel hands the signal to."""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Callable
from pathlib import Path

from cartera.node import Node
from tests.conftest import write_sites


def test_a_sigterm_handed_to_another_thread_stops_the_node(tmp_path: Path, open_node: Callable[[Path], Node]) -> None:
    """CPython runs the handler in the main thread only; a node waiting without end for its stop event never woke
    to run it (seen: SIGTERM ignored for 15 minutes on a loaded machine, until the test's watchdog killed it)."""
    node = open_node(write_sites(tmp_path))
    before = signal.getsignal(signal.SIGTERM)
    watchdog_fired = threading.Event()

    def sigterm_from_another_thread() -> None:
        while signal.getsignal(signal.SIGTERM) is before:  # the node's handler is not installed yet
            time.sleep(0.05)
        time.sleep(0.5)
        signal.pthread_kill(threading.get_ident(), signal.SIGTERM)  # to this thread, not the main one

    def watchdog() -> None:
        watchdog_fired.set()
        node.stop()

    sender = threading.Thread(target=sigterm_from_another_thread)
    timer = threading.Timer(60, watchdog)
    sender.start()
    timer.start()
    try:
        node.run()
    finally:
        timer.cancel()
        sender.join()
    assert not watchdog_fired.is_set(), "the node ignored SIGTERM until the watchdog stopped it"
    assert signal.getsignal(signal.SIGTERM) is before
