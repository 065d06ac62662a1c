"""A long import on SQLite stalls nothing that only reads, and a delivery past the size limit loads nothing."""

from __future__ import annotations

import hashlib
import json
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from decimal import Decimal
from pathlib import Path
from urllib.error import HTTPError

import pytest
from sqlalchemy import func, select, text

from cartera.core.models import AssignmentBatch, AssignmentRow, FileRejected, RowError
from cartera.core.store.schema import Account, ImportBatch
from cartera.node import Node
from cartera.web.app import build_app
from cartera.web.server import WebServer
from tests.conftest import write_sites
from tests.peers.net import free_port

pytestmark = pytest.mark.abuse


def rows(count: int) -> Iterator[AssignmentRow]:
    for n in range(count):
        phone = f"300 555 {n % 10000:04d}"
        yield AssignmentRow(n + 2, "BCO", "TARJETAS", f"R{n}", f"Deudor {n}", (phone,), Decimal(1), "COP")


def paused_batch(started: threading.Event, resume: threading.Event) -> AssignmentBatch:
    """A batch whose reading pauses midway, inside the import's transaction, until ``resume`` is set."""

    def items() -> Iterator[AssignmentRow | RowError]:
        yield from rows(6000)  # more than a chunk: the import has written
        started.set()
        resume.wait(30)
        yield from rows(10)

    return AssignmentBatch("big.csv", hashlib.sha256(b"big").hexdigest(), items())


def test_health_and_metrics_answer_at_once_during_a_long_import_on_sqlite(
    tmp_path: Path, open_node: Callable[..., Node]
) -> None:
    node = open_node(write_sites(tmp_path))
    started, resume = threading.Event(), threading.Event()
    importing = threading.Thread(target=node.importer.import_batch, args=(paused_batch(started, resume), "t"))
    port = free_port()
    with WebServer(build_app(node.web_services()), "127.0.0.1", port):
        importing.start()
        try:
            assert started.wait(30)
            begun = time.monotonic()
            with pytest.raises(HTTPError) as health:  # 503: no scheduler runs in this test, but the store is ok
                urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=20)
            assert json.load(health.value)["checks"]["store"] == "ok"
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=20) as metrics:
                assert metrics.status == 200
            assert time.monotonic() - begun < 2
        finally:
            resume.set()
            importing.join(30)
    with node.db.session() as session:
        assert session.scalar(select(func.count()).select_from(Account)) == 6000  # R0..R5999, the last 10 again


def test_a_reading_session_refuses_to_write(tmp_path: Path, open_node: Callable[..., Node]) -> None:
    node = open_node(write_sites(tmp_path))
    with pytest.raises(Exception, match="readonly"), node.db.reading() as session:
        session.execute(text("DELETE FROM import_batches"))
    with node.db.session() as session:  # a writer after a reader on the same pooled connection still writes
        session.execute(text("DELETE FROM import_batches"))


def test_a_delivery_past_the_row_limit_is_refused_whole_and_loads_nothing(
    tmp_path: Path, open_node: Callable[..., Node]
) -> None:
    config = write_sites(tmp_path)
    config.write_text(config.read_text().replace("[sites.t.sync]\n", "[sites.t.sync]\nmax_delivery_rows = 100\n"))
    node = open_node(config)
    too_big = AssignmentBatch("big.csv", hashlib.sha256(b"101").hexdigest(), rows(101))
    with pytest.raises(FileRejected, match=r"more than 100 rows \(\[sync\] max_delivery_rows\)"):
        node.importer.import_batch(too_big, "t")
    with node.db.session() as session:
        assert session.scalar(select(func.count()).select_from(Account)) == 0
        assert session.scalar(select(func.count()).select_from(ImportBatch)) == 0
    fits = node.importer.import_batch(AssignmentBatch("ok.csv", "ok", rows(100)), "t")
    assert fits.counts()["new"] == 100
