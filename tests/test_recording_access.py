"""A recording's download or URL is one pass: view, fetch, verify, audit: one catalog read, one audit row."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event

from cartera.core.store.schema import AuditEntry
from cartera.node import Node
from tests.test_web_pages import Site, sign_in
from tests.test_web_pages import site as pages_site

site = pages_site


@contextmanager
def catalog_reads(node: Node) -> Iterator[list[str]]:
    """The SELECTs on the recordings catalog while the block runs."""
    reads: list[str] = []

    def seen(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        if statement.lstrip().upper().startswith("SELECT") and "FROM recordings" in statement:
            reads.append(statement)

    event.listen(node.db.engine, "before_cursor_execute", seen)
    try:
        yield reads
    finally:
        event.remove(node.db.engine, "before_cursor_execute", seen)


def _actions(site: Site, since: int) -> list[str]:
    return [entry.action for entry in site.audits() if entry.id > since and entry.action != "web.request"]


def _last_id(site: Site) -> int:
    entries: list[AuditEntry] = site.audits()
    return entries[-1].id if entries else 0


def test_a_first_play_reads_the_catalog_once_and_writes_one_audit_row(site: Site) -> None:
    client = sign_in(site.client(), "ana")
    rid = site.seeded.recordings["BCO-1"]
    before = _last_id(site)
    with catalog_reads(site.node) as reads:
        answer = client.get(f"/recordings/{rid}/audio")
    assert answer.status_code == 200
    assert len(reads) == 1
    assert _actions(site, before) == ["recordings.play"]


def test_get_and_url_read_the_catalog_once_and_write_one_audit_row(site: Site, tmp_path: Path) -> None:
    rid = site.seeded.recordings["BCO-2"]
    before = _last_id(site)
    with catalog_reads(site.node) as reads:
        view = site.node.library.get(rid, tmp_path / "copy.wav", actor="os:tester")
    assert len(reads) == 1
    assert view.sha256 == site.seeded.sha256[rid]
    assert _actions(site, before) == ["recordings.get"]
    entry = site.audits("recordings.get")[-1]
    assert entry.details == {
        "sha256": view.sha256,
        "destination": str((tmp_path / "copy.wav").resolve()),
        "portfolio": "BANCO/TARJETAS",
    }
    before = _last_id(site)
    with catalog_reads(site.node) as reads, pytest.raises(Exception, match="cannot issue expiring URLs"):
        site.node.library.url(rid, 60, actor="os:tester")
    assert len(reads) == 1
    assert _actions(site, before) == []  # the store refused: nothing was handed out
