"""The http plugin's batch spool under concurrent use by the API and the sync job."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from cartera.plugins.crm_sync.http.batches import BatchSpool
from cartera.plugins.crm_sync.http.models import BatchIn

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
