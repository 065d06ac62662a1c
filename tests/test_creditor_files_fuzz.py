"""Hostile creditor files: any bytes under any allowed layout settings give rows, row errors or one
:class:`FileRejected`, never another exception; a well-formed file in any allowed encoding and delimiter reads
back exactly the names, references and amounts written, never a silently different value."""

from __future__ import annotations

import codecs
import io
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cartera.core.models import AssignmentRow, FileRejected, RowError
from cartera.portfolio.files.config import CsvFormatConfig
from cartera.portfolio.files.reader import AssignmentReader

pytestmark = pytest.mark.abuse

FUZZ = settings(max_examples=300, deadline=None, derandomize=True, database=None)

_layouts = st.fixed_dictionaries(
    {"creditor": st.just("BCO"), "portfolio": st.just("T")},
    optional={
        "encoding": st.sampled_from(["utf-8", "utf-8-sig", "windows-1252", "latin-1"]),
        "legacy_encoding": st.sampled_from(["windows-1252", "latin-1"]),
        "delimiter": st.sampled_from([";", ","]),
        "decimal_comma": st.booleans(),
    },
)
_HEADER = ["cuenta", "nombre", "telefono1", "saldo", "moneda", "accion"]
_noise = st.one_of(
    st.binary(max_size=400),
    st.lists(
        st.lists(st.text(max_size=12) | st.sampled_from(["", '"', "\r", "1.000,5", "pago", "\x81", "Ã©"]), max_size=7),
        max_size=8,
    ).map(lambda rows: "\n".join(";".join(row) for row in [_HEADER, *rows]).encode("utf-8", "surrogatepass")),
)


def _read(layout: dict[str, Any], data: bytes) -> list[AssignmentRow | RowError]:
    reader = AssignmentReader(CsvFormatConfig.model_validate(layout))
    return list(reader.batch("fuzz.csv", lambda: io.BytesIO(data)).items)


@FUZZ
@given(layout=_layouts, data=_noise)
def test_any_bytes_give_rows_row_errors_or_one_rejection(layout: dict[str, Any], data: bytes) -> None:
    try:
        items = _read(layout, data)
    except FileRejected as exc:
        rejected = exc
    else:
        assert all(isinstance(item, AssignmentRow | RowError) and item.line >= 2 for item in items)
        return
    assert rejected.source == "fuzz.csv"
    assert rejected.reason
    assert "\n" not in rejected.reason


_NAME_LETTERS = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZáéíóúñüÁÉÍÓÚÑÜ '.-"
_rows = st.lists(
    st.tuples(
        st.from_regex(r"[A-Z]{2,4}-[0-9]{1,8}", fullmatch=True),
        st.text(_NAME_LETTERS, max_size=30).map(str.strip),
        st.integers(0, 10**11),
        st.booleans(),
    ),
    min_size=1,
    max_size=20,
)


def _amount(cents: int, with_cents: bool, decimal_comma: bool) -> str:
    """``cents`` as a creditor writes it: thousands grouped, two decimals or none."""
    whole, fraction = divmod(cents, 100)
    grouped = f"{whole:,}".replace(",", "." if decimal_comma else ",")
    return f"{grouped}{',' if decimal_comma else '.'}{fraction:02d}" if with_cents else grouped


def _reads_as(data: bytes, codec: str) -> str | None:
    """``data`` decoded as the reader decodes ``codec`` (a BOM dropped for UTF-8); ``None`` if it does not."""
    try:
        return data.decode("utf-8-sig" if codec.startswith("utf-8") else codec)
    except UnicodeDecodeError:
        return None


@FUZZ
@given(
    rows=_rows,
    encoding=st.sampled_from(["utf-8", "utf-8-sig", "windows-1252", "latin-1"]),
    read_with=st.sampled_from([None, "utf-8", "utf-8-sig", "windows-1252", "latin-1"]),
    delimiter=st.sampled_from([";", ","]),
    decimal_comma=st.booleans(),
)
def test_files_read_back_exactly_or_are_refused(
    rows: list[tuple[str, str, int, bool]], encoding: str, read_with: str | None, delimiter: str, decimal_comma: bool
) -> None:
    """Written in ``encoding``, read as ``read_with`` (``None``: detected): the very values, or a rejection
    when that encoding gives other text (mojibake, undecodable bytes). Never other names."""
    text = io.StringIO()
    text.write(delimiter.join(["cuenta", "nombre", "telefono1", "saldo"]) + "\r\n")
    for ref, name, cents, with_cents in rows:
        amount = _amount(cents, with_cents, decimal_comma)
        text.write(delimiter.join([ref, name, "3001234567", f'"{amount}"']) + "\r\n")
    data = text.getvalue().encode(encoding)
    assert data.startswith(codecs.BOM_UTF8) == (encoding == "utf-8-sig")
    layout: dict[str, Any] = {"creditor": "BCO", "portfolio": "T", "decimal_comma": decimal_comma}
    if read_with is not None:
        layout["encoding"] = read_with
    elif encoding == "latin-1":
        layout["legacy_encoding"] = "latin-1"
    if read_with is not None and _reads_as(data, read_with) != text.getvalue():
        with pytest.raises(FileRejected):
            _read(layout, data)
        return
    expected = [
        (ref, name, Decimal(cents if with_cents else cents - cents % 100) / 100)
        for ref, name, cents, with_cents in rows
    ]
    items = _read(layout, data)
    assert [(r.account_ref, r.debtor_name, r.balance) for r in items if isinstance(r, AssignmentRow)] == expected
