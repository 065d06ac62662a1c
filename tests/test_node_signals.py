"""A node stops on SIGTERM whichever of its threads the kernel hands the signal to, and starts no creditor sync
work once it is stopping."""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from cartera.core.store.schema import Account
from cartera.node import Node
from cartera.portfolio.importer import ImportReport
from tests.conftest import write_portfolio, write_sites


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


def _accounts(node: Node) -> int:
    with node.db.session() as session:
        return int(session.scalar(select(func.count()).select_from(Account)) or 0)


def test_a_stopping_node_starts_no_creditor_sync_run(tmp_path: Path, open_node: Callable[[Path], Node]) -> None:
    """The scheduler may fire the sync job between the stop request and its own shutdown: that run would wait
    each failing creditor's webhook deadline before the node could stop."""
    node = open_node(write_sites(tmp_path))
    delivered = write_portfolio(tmp_path / "inbox", ["BCO-1;Ana Gómez;300 123 4567;;1.250.000,00;COP"])
    node.stop()
    node.jobs.sync()  # what the scheduler runs
    assert delivered.exists()
    assert _accounts(node) == 0


def test_a_sync_run_in_progress_stops_before_the_next_delivery(
    tmp_path: Path, open_node: Callable[[Path], Node], monkeypatch: pytest.MonkeyPatch
) -> None:
    node = open_node(write_sites(tmp_path))
    first = write_portfolio(tmp_path / "inbox", ["BCO-1;Ana Gómez;300 123 4567;;1.250.000,00;COP"], "a.csv")
    second = write_portfolio(tmp_path / "inbox", ["BCO-2;Luis Díaz;300 765 4321;;2.000.000,00;COP"], "b.csv")
    importer = node.importer
    real_import = importer.import_batch

    def import_then_stop(*args: Any, **kwargs: Any) -> ImportReport:
        report = real_import(*args, **kwargs)
        node.stop()  # asked to stop while this delivery was imported
        return report

    monkeypatch.setattr(importer, "import_batch", import_then_stop)
    run = node.creditor_sync().run_once()
    assert len(run.imports) == 1
    assert not first.exists()
    assert second.exists()  # left for the next start
    assert _accounts(node) == 1
    assert run.exported == 0  # nor did it start the export
