"""A creditor's file name (or any logged value) holding a newline, a tab or ESC never forges a log line or a
line of the run summary."""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

import pytest

from cartera.cli.summary import site_summary
from cartera.core.logs import TextFormatter
from cartera.node import Node
from tests.conftest import write_sites

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
