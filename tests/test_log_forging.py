"""A creditor's file name (or any logged value) holding a newline, a tab or ESC never forges a log line or a
line of the run summary."""

from __future__ import annotations

import io
import logging
import os
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import pytest
import sqlalchemy as sa

from cartera.cli.summary import site_summary
from cartera.core.audit import AuditLog
from cartera.core.clock import SimulatedClock
from cartera.core.logs import TextFormatter
from cartera.core.store.database import Database
from cartera.core.store.schema import AuditEntry
from cartera.node import Node
from tests.conftest import write_sites
from tests.peers.s3 import write_archival_site
from tests.recording_spool import report_spool

pytestmark = pytest.mark.abuse

FORGED = "a.csv\n2026-12-04T21:00:00.00Z ERROR cartera.sync sync.fake\tsource=\x1b[2Jx\u202e"


def test_a_text_log_value_holding_a_control_character_is_quoted_and_escaped() -> None:
    record = logging.LogRecord("cartera.sync", logging.ERROR, __file__, 1, "sync.file_rejected", None, None)
    record.fields = {"source": FORGED, "count": 2}
    line = TextFormatter().format(record)
    assert len(line.splitlines()) == 1
    assert line.isprintable()
    assert line.endswith(
        ' sync.file_rejected source="a.csv\\n2026-12-04T21:00:00.00Z ERROR cartera.sync sync.fake\\tsource='
        '\\u001b[2Jx\\u202e" count=2'
    )


def test_a_text_log_message_holding_a_control_character_is_escaped() -> None:
    """A message's arguments (a path, a peer's answer) are escaped like the fields: the message never forges a
    line either."""
    record = logging.LogRecord("cartera.plugin.dialer", logging.WARNING, __file__, 1, "left alone: %s", (FORGED,), None)
    record.fields = {"count": 2}
    line = TextFormatter().format(record)
    assert len(line.splitlines()) == 1
    assert line.isprintable()
    assert line.endswith(
        " left alone: a.csv\\n2026-12-04T21:00:00.00Z ERROR cartera.sync sync.fake\\tsource=\\x1b[2Jx\\u202e count=2"
    )


def test_a_spool_file_name_holding_a_newline_does_not_forge_a_log_line(
    tmp_path: Path, open_node: Callable[..., Node]
) -> None:
    """A symlink the PBX side drops in the recordings' spool, named with a newline and a whole log line."""
    archive = tmp_path / "archive"
    site = write_archival_site(tmp_path, f'plugin = "localdir"\npath = "{archive}"')
    os.symlink("/etc/hostname", tmp_path / "spool" / "x\n2026-12-05T03:00:00.00Z ERROR cartera.audit forged=yes.wav")
    node = open_node(site)
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(TextFormatter())
    logging.getLogger().addHandler(handler)
    try:
        assert report_spool(node, tmp_path / "spool") == 0
    finally:
        logging.getLogger().removeHandler(handler)
    (warning,) = [line for line in stream.getvalue().splitlines() if "left alone" in line]
    assert warning.endswith("/spool/x\\n2026-12-05T03:00:00.00Z ERROR cartera.audit forged=yes.wav")
    assert not any(line.startswith("2026-12-05T03:00:00.00Z") for line in stream.getvalue().splitlines())


def test_an_audit_entry_keeps_controls_and_bidi_marks_escaped(tmp_path: Path) -> None:
    """A right-to-left override in a typed name reordered the audit log as a terminal showed it."""
    db = Database(f"sqlite:///{tmp_path / 'store.db'}")
    db.migrate()
    try:
        log = AuditLog("demo", db, SimulatedClock(datetime(2026, 12, 4, tzinfo=UTC), 1))
        log.write(actor="ana\u202e", action="x", subject=FORGED, note=[FORGED])
        with db.reading() as session:
            entry = session.scalars(sa.select(AuditEntry)).one()
        assert entry.actor == "ana\\u202e"
        assert entry.subject.isprintable()
        assert entry.subject.endswith("source=\\x1b[2Jx\\u202e")
        assert entry.details == {"note": [entry.subject]}
    finally:
        db.dispose()


def test_the_run_summary_escapes_a_file_name_with_control_characters(
    tmp_path: Path, open_node: Callable[..., Node]
) -> None:
    node = open_node(write_sites(tmp_path))
    name = "a\x1b[2J\tb.csv"
    (tmp_path / "inbox" / name).write_text("cuenta;nombre;telefono1;saldo\nBCO-1;Ana;3001234567;1000\n", "utf-8")
    assert [report.new for report in node.creditor_sync().run_once().imports] == [1]
    summary = site_summary(node, node.clock.now(), 0.0)
    (imported,) = [line for line in summary.splitlines() if line.startswith("  imported")]
    assert "a\\x1b[2J\\tb.csv: " in imported
    assert "\x1b" not in summary
