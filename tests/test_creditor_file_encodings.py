"""Creditor files in the wrong encoding: refused naming file, line, value and the likely right encoding, never
stored as mojibake; only the documented encodings are accepted; the import summary says how a file was read."""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from pydantic import ValidationError

from cartera.core.models import AssignmentRow, FileRejected
from cartera.core.store.schema import Debtor
from cartera.node import Node
from cartera.portfolio.files.config import CsvFormatConfig
from cartera.portfolio.files.reader import AssignmentReader, read_local
from tests.conftest import run_site, write_portfolio, write_sites

HEADER = "cuenta;nombre;telefono1;saldo\n"
NAMES = ("José Núñez", "Begoña Muñoz", "ÑANDÚ ÁLVAREZ", "Müller Ibáñez", "Ángel O'Higgins", "Pérez\u2013Gómez €")


def _reader(**settings: Any) -> AssignmentReader:
    return AssignmentReader(CsvFormatConfig.model_validate({"creditor": "BCO", "portfolio": "T"} | settings))


def _rows(path: Path, **settings: Any) -> list[AssignmentRow]:
    return [item for item in read_local(_reader(**settings), path).items if isinstance(item, AssignmentRow)]


def _rejected(path: Path, **settings: Any) -> str:
    with pytest.raises(FileRejected) as rejected:
        list(read_local(_reader(**settings), path).items)
    assert rejected.value.source == str(path)
    return rejected.value.reason


def _file(tmp_path: Path, data: bytes) -> Path:
    path = tmp_path / "asignacion.csv"
    path.write_bytes(data)
    return path


@pytest.mark.parametrize("key", ["encoding", "legacy_encoding"])
@pytest.mark.parametrize("codec", ["cp850", "mac-roman", "utf-16", "klingon", "ascii", "iso-8859-15"])
def test_only_the_documented_encodings_are_accepted(key: str, codec: str) -> None:
    allowed = "utf-8, utf-8-sig, windows-1252 or latin-1" if key == "encoding" else "windows-1252 or latin-1"
    with pytest.raises(ValidationError, match=f"is not an allowed encoding \\(use {allowed}\\)"):
        _reader(**{key: codec})
    with pytest.raises(ValidationError, match="use utf-8, utf-8-sig, windows-1252 or latin-1"):
        _reader(export={"encoding": codec})


def test_legacy_encoding_is_a_single_byte_one() -> None:
    with pytest.raises(ValidationError, match=r"'utf-8' is not an allowed encoding \(use windows-1252 or latin-1\)"):
        _reader(legacy_encoding="utf-8")
    for codec in ("windows-1252", "cp1252", "latin-1", "ISO-8859-1"):
        assert _reader(legacy_encoding=codec).fmt.legacy_encoding == codec
        assert _reader(encoding=codec, export={"encoding": codec}).fmt.encoding == codec


def test_utf8_file_read_as_windows_1252_is_refused_not_stored_as_mojibake(tmp_path: Path) -> None:
    path = _file(tmp_path, (HEADER + "CR-1;Ana;3001234567;1\nCR-2;José Núñez;3001234567;2\n").encode())
    reason = _rejected(path, encoding="windows-1252")
    assert reason.startswith("line 3: 'JosÃ© NÃºÃ±ez' looks like UTF-8 text read as windows-1252")
    assert "the file is probably utf-8" in reason


def test_mojibake_in_a_utf8_file_is_refused(tmp_path: Path) -> None:
    """A creditor system that already misread the text and wrote it as UTF-8: no setting can repair it."""
    path = _file(tmp_path, (HEADER + "CR-1;JosÃ© NÃºÃ±ez;3001234567;1\n").encode())
    reason = _rejected(path)
    assert reason.startswith("line 2: 'JosÃ© NÃºÃ±ez' looks like UTF-8 text read as")
    assert "re-export" in reason


def test_windows_1252_read_as_latin_1_is_refused(tmp_path: Path) -> None:
    path = _file(tmp_path, (HEADER + "CR-1;Pérez \u2013 Gómez;3001234567;1\n").encode("windows-1252"))
    reason = _rejected(path, encoding="latin-1")
    assert reason.startswith("line 2: 'Pérez \\x96 Gómez' holds a C1 control character")
    assert "the file is probably windows-1252" in reason
    assert [row.debtor_name for row in _rows(path, encoding="windows-1252")] == ["Pérez \u2013 Gómez"]


def test_windows_1252_file_forced_to_utf8_names_the_likely_encoding(tmp_path: Path) -> None:
    path = _file(tmp_path, (HEADER + "CR-1;José;3001234567;1\n").encode("windows-1252"))
    reason = _rejected(path, encoding="utf-8")
    assert reason.startswith("line 2: byte 0xe9 at column 9 is not valid utf-8")
    assert "probably windows-1252" in reason


@pytest.mark.parametrize("codec", ["utf-8", "utf-8-sig", "windows-1252"])
def test_spanish_names_read_right_in_every_encoding(tmp_path: Path, codec: str) -> None:
    body = HEADER + "".join(f"CR-{n};{name};3001234567;1\n" for n, name in enumerate(NAMES))
    path = _file(tmp_path, body.encode(codec))
    assert [row.debtor_name for row in _rows(path)] == list(NAMES)
    assert [row.debtor_name for row in _rows(path, encoding=codec)] == list(NAMES)


def test_import_refuses_mojibake_keeps_what_is_stored_and_says_how_files_were_read(
    tmp_path: Path, open_node: Callable[[Path], Node]
) -> None:
    config = write_sites(tmp_path)
    config.write_text(
        config.read_text().replace('portfolio = "TARJETAS"', 'portfolio = "TARJETAS"\nencoding = "windows-1252"')
    )
    first = tmp_path / "primera.csv"
    first.write_bytes("cuenta,nombre,telefono1,saldo\nCR-1,Begoña,3001234567,1000\n".encode("windows-1252"))
    imported = run_site(config, "import", str(first))
    assert imported.returncode == 0, imported.stderr
    assert "read as windows-1252, delimiter ','" in imported.stdout
    assert "1 new" in imported.stdout
    utf8 = tmp_path / "utf8.csv"
    utf8.write_text(HEADER + "CR-1;José Núñez;3001234567;2000\nCR-2;Ana;3101234567;5\n", encoding="utf-8")
    refused = run_site(config, "import", str(utf8))
    assert refused.returncode == 1
    assert f"{utf8}: line 2: 'JosÃ© NÃºÃ±ez' looks like UTF-8 text read as windows-1252" in refused.stderr
    assert "nothing was loaded" in refused.stderr
    with_bom = write_portfolio(tmp_path, ["CR-1;José Núñez;3001234567;;2000;COP"])
    refused = run_site(config, "import", str(with_bom))
    assert f"{with_bom}: line 1: 'ï»¿cuenta' looks like UTF-8 text read as windows-1252" in refused.stderr
    with open_node(config).db.session() as session:
        assert list(session.scalars(sa.select(Debtor.name))) == ["Begoña"]


def test_sync_log_names_encoding_and_delimiter(
    tmp_path: Path, open_node: Callable[[Path], Node], caplog: pytest.LogCaptureFixture
) -> None:
    config = write_sites(tmp_path)
    write_portfolio(tmp_path / "inbox", ["CR-1;Begoña;3001234567;;1000;COP"])
    node = open_node(config)
    with caplog.at_level(logging.INFO, logger="cartera.assignments"):
        run = node.creditor_sync().run_once()
    assert [report.read_as for report in run.imports] == ["utf-8-sig, delimiter ';'"]
    imported = [r for r in caplog.records if r.getMessage() == "assignments.imported"]
    assert [r.fields["read_as"] for r in imported] == ["utf-8-sig, delimiter ';'"]  # type: ignore[attr-defined]


def test_a_row_with_cells_past_the_header_is_quarantined_naming_both_counts(tmp_path: Path) -> None:
    """Round 21 A-F13: a cell past the header (an unquoted delimiter in a name) was read as every optional column
    the header lacks, and the row's error named a column the file does not have. Empty trailing cells are fine."""
    header = "cuenta;nombre;telefono1;telefono2;saldo;moneda\n"
    rows = (
        "BCO-1;Ana;3001234567;;1000;COP;retirar\nBCO-2;Eva;3001234568;;2000;COP;;\nBCO-3;Luz; Peña;3001234569;;9;COP\n"
    )
    items = list(read_local(_reader(), _file(tmp_path, (header + rows).encode())).items)
    errors = [(item.line, item.field, item.reason) for item in items if not isinstance(item, AssignmentRow)]
    assert [item.account_ref for item in items if isinstance(item, AssignmentRow)] == ["BCO-2"]
    assert [(line, field) for line, field, _ in errors] == [(2, "row"), (4, "row")]
    assert errors[0][2].startswith("7 cells, the header has 6")
    assert errors[1][2].startswith("7 cells, the header has 6")
