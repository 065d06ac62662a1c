"""The http plugin's batch spool under concurrent use by the API and the sync job."""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from cartera.plugins.crm_sync.http import batches
from cartera.plugins.crm_sync.http.batches import BatchSpool, parse
from cartera.plugins.crm_sync.http.models import BatchIn, rows_of

ROW = {"account_ref": "A-1", "name": "Ana", "phone1": "+573001234567", "balance": "10", "due_date": "2026-01-01"}


def test_a_result_read_while_the_sync_job_moves_the_batch_is_answered(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The API found a pending batch; the sync job acknowledged it before the API read it (a 500 in CI)."""
    spool = BatchSpool(tmp_path, "COP")
    spool.save(BatchIn.model_validate({"batch_id": "b-1", "creditor": "BCO", "portfolio": "T", "rows": [ROW]}))
    find = spool._find
    movers: list[threading.Thread] = []

    def find_then_acknowledge(creditor: str, batch_id: str) -> Path | None:
        path = find(creditor, batch_id)
        assert path is not None
        mover = threading.Thread(target=spool.mark_imported, args=(path,))
        movers.append(mover)
        mover.start()
        mover.join(timeout=0.5)  # the sync job's move, as soon as it can take place
        return path

    monkeypatch.setattr(spool, "_find", find_then_acknowledge)
    result = spool.result("BCO", "b-1")
    for mover in movers:
        mover.join()
    assert result is not None
    assert result.status in ("pending", "imported")
    monkeypatch.undo()
    assert spool.result("BCO", "b-1") == result.model_copy(update={"status": "imported"})


def batch_of(batch_id: str, creditor: str = "BCO", rows: int = 1) -> BatchIn:
    return BatchIn.model_validate({"batch_id": batch_id, "creditor": creditor, "portfolio": "T", "rows": [ROW] * rows})


@pytest.mark.abuse
def test_a_result_is_answered_without_parsing_the_stored_batch(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    spool = BatchSpool(tmp_path, "COP")
    saved, _ = spool.save(batch_of("b-1", rows=3))
    parsed: list[str] = []

    def counted(name: str, function: Callable[..., Any]) -> None:
        def call(*args: Any) -> Any:
            parsed.append(name)
            return function(*args)

        monkeypatch.setattr(batches, name, call)

    counted("parse", parse)
    counted("rows_of", rows_of)
    for _ in range(3):
        assert spool.result("BCO", "b-1") == saved
    (path,) = spool.pending()
    spool.mark_imported(path)
    assert spool.result("BCO", "b-1") == saved.model_copy(update={"status": "imported"})
    assert parsed == []


@pytest.mark.abuse
def test_a_result_never_parses_its_batch_so_a_save_never_waits_on_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Forty GETs of a 15 MB batch held another creditor's POST for 18-20 s behind the spool's lock: each GET
    parsed the batch under it. A GET reads the batch's small summary only."""
    spool = BatchSpool(tmp_path, "COP")
    spool.save(batch_of("big", creditor="OTRO", rows=50))

    def refuse(path: Path) -> Any:
        raise AssertionError(f"a GET parsed the batch {path.name}")

    monkeypatch.setattr(batches, "parse", refuse)
    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(lambda _: spool.result("OTRO", "big"), range(40)))
    assert {answer.rows for answer in answers if answer is not None} == {50}
    assert len(answers) == 40
    assert spool.save(batch_of("small"))[1]


@pytest.mark.abuse
def test_batches_set_aside_are_removed_after_the_retention_and_answered_until_then(tmp_path: Path) -> None:
    """Every pushed batch was kept for ever: a creditor with a token filled the node's disk at ~25 MB/s. A batch
    imported (or rejected) is kept ``keep_seconds`` from then, answered as before, then removed with its summary
    and rejection report; a re-push after that is a new batch (#14 round 16 M5)."""
    import os
    import time

    from cartera.plugin import RowError

    spool = BatchSpool(tmp_path, "COP", keep_seconds=30 * 86400)
    _, stored = spool.save(batch_of("b-1"))
    assert stored
    (path,) = spool.pending()
    spool.record_rejections(path, [RowError(2, "balance", "not an amount")])
    assert spool.mark_imported(path)
    spool.save(batch_of("b-2"))
    (other,) = spool.pending()
    assert spool.mark_rejected(other)
    assert spool.purge() == 0
    answered, stored = spool.save(batch_of("b-1"))  # within the retention: idempotent, as before
    assert (stored, answered.status, [row.reason for row in answered.rejected]) == (
        False,
        "imported",
        ["not an amount"],
    )
    old = time.time() - 31 * 86400
    for kept in tmp_path.glob("BCO/*/*.json"):
        os.utime(kept, (old, old))
    assert spool.purge() == 2
    assert sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*") if p.is_file()) == []
    assert spool.result("BCO", "b-1") is None
    again, stored = spool.save(batch_of("b-1"))
    assert (stored, again.status) == (True, "pending")
    assert BatchSpool(tmp_path, "COP").purge() == 0  # no retention set: kept for ever


@pytest.mark.abuse
def test_keep_batches_days_0_removes_a_batch_once_imported(tmp_path: Path) -> None:
    from cartera.core.clock import SimulatedClock
    from cartera.core.testing.context import CapturingContext
    from cartera.plugins.crm_sync.http.config import HttpApiConfig
    from cartera.plugins.crm_sync.http.plugin import HttpCrmSync

    token = "t" * 32
    config = HttpApiConfig.model_validate({"creditors": {"BCO": {"token": token}}, "keep_batches_days": 0})
    clock = SimulatedClock(datetime(2026, 3, 2, tzinfo=UTC), 1e-6)
    sync = HttpCrmSync(config, CapturingContext(tmp_path / "data", clock=clock))
    assert sync.spool.keep_seconds == 0
    sync.spool.save(batch_of("b-1"))
    (batch,) = sync.fetch()
    sync.acknowledge(batch)
    assert list((tmp_path / "data").rglob("*.json")) == []
    assert HttpApiConfig.model_validate({"creditors": {"BCO": {"token": token}}}).keep_batches_days == 30
