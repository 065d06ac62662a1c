"""Streaming assignment files: encoding, delimiter and header first, then one row at a time.

One chunked pass computes the sha256 (and whether the bytes are UTF-8); each iteration of a batch's items
parses the file again (decoding blocks of whole lines, parsing one row at a time) and checks the bytes did not
change meanwhile: a file by its :class:`FileIdentity` (so its bytes are hashed once per import, by the first
pass), bytes in memory by their sha256. Only ASCII-compatible encodings are read, so lines split at
``b"\\n"``. Decoded text that looks like mojibake (UTF-8 read as a single-byte code page, a C1 control
character of Windows-1252 read as Latin-1, text misread before the file was written) rejects the file, naming
the line, the value and the likely right encoding: stored, it would be wrong on every letter and every export.
"""

from __future__ import annotations

import codecs
import csv
import hashlib
import io
import itertools
import os
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import IO

from ftfy import fix_encoding_and_explain
from ftfy.badness import is_bad

from cartera.core.models import AssignmentAction, AssignmentBatch, AssignmentRow, FileRejected, RowError
from cartera.portfolio.files.config import ENCODINGS, LEGACY_ENCODINGS, CsvFormatConfig, codec_name
from cartera.portfolio.files.values import (
    C1_CONTROLS,
    escape_controls,
    has_c1_control,
    header_key,
    parse_amount,
    parse_date,
)

CHUNK_SIZE = 1 << 20
#: The longest line read (an assignment row is a few hundred bytes): a longer one rejects the file before it is
#: held whole, since each line is decoded and parsed in one piece.
MAX_LINE_BYTES = 1 << 20
_CURRENCY = re.compile(r"[A-Z]{3}")
_ZERO = Decimal(0)
#: A well-formed UTF-8 multi-byte character; Spanish Windows-1252 text practically never forms one.
_UTF8_SEQUENCE = re.compile(rb"[\xc2-\xdf][\x80-\xbf]|[\xe0-\xef][\x80-\xbf]{2}|[\xf0-\xf4][\x80-\xbf]{3}")
#: Every byte but UTF-8's continuation bytes: a chunk left empty by deleting them holds no multi-byte character.
_NOT_CONTINUATION = bytes(byte for byte in range(256) if not 0x80 <= byte <= 0xBF)

_DAMAGED = "UTF-8 (the file mixes UTF-8 characters with other bytes: damaged or mixed; re-export it)"


def _read_as_legacy(first: int, last: int) -> str:
    """The characters bytes ``first``..``last`` stand for in the legacy encodings, escaped for a regex class."""
    chars = {bytes([byte]).decode(codec, "ignore") for byte in range(first, last + 1) for codec in LEGACY_ENCODINGS}
    return re.escape("".join(sorted(chars)))


#: Where decoded text may hold mojibake, for ftfy to judge: a UTF-8 lead byte followed by a continuation byte,
#: each read as a legacy character (as UTF-8 read one byte a character gives), or a C1 control character.
_SUSPECT = re.compile(f"[{_read_as_legacy(0xC2, 0xF4)}][{_read_as_legacy(0x80, 0xBF)}]|[{C1_CONTROLS}]")

#: Opens the file's bytes from the start; called once per pass.
Opener = Callable[[], IO[bytes]]

_CHANGED = "the file changed while it was being read; import it again"


@dataclass(frozen=True)
class FileIdentity:
    """What the file system tells of a file: a write changes its size or its modification and change times, a
    replacement its device or inode. Equal identities stand for the same bytes (a rewrite of the same size
    within one tick of the file system's clock would not show: that is the price of not hashing again)."""

    device: int
    inode: int
    size: int
    mtime_ns: int
    ctime_ns: int

    @classmethod
    def of(cls, status: os.stat_result) -> FileIdentity:
        return cls(status.st_dev, status.st_ino, status.st_size, status.st_mtime_ns, status.st_ctime_ns)


def file_identity(stream: IO[bytes]) -> FileIdentity | None:
    """The identity of the file ``stream`` reads; None for bytes that are not a file (in memory)."""
    try:
        descriptor = stream.fileno()
    except (OSError, ValueError):  # io.UnsupportedOperation
        return None
    return FileIdentity.of(os.fstat(descriptor))


@dataclass(frozen=True)
class Scan:
    """What one pass over a file's bytes tells: its sha256, whether it decodes as UTF-8, and whether it holds
    UTF-8 multi-byte characters at all (a file that does but is not UTF-8 is damaged, not a legacy export)."""

    sha256: str
    utf8: bool
    has_utf8_sequences: bool
    header: bytes  #: the first line (of the first chunk at most), for the delimiter and the BOM
    #: the file's identity, the same before and after the pass; None for bytes in memory or a file written to
    #: during the pass (later passes then compare the sha256)
    identity: FileIdentity | None


def scan(stream: IO[bytes]) -> Scan:
    before = file_identity(stream)
    digest = hashlib.sha256()
    decoder = codecs.getincrementaldecoder("utf-8")()
    utf8, sequences = True, False
    header = None
    while chunk := stream.read(CHUNK_SIZE):
        if header is None:
            header = chunk.split(b"\n", 1)[0]
        digest.update(chunk)
        if not sequences and chunk.translate(None, _NOT_CONTINUATION):  # the regex only where it may match
            sequences = _UTF8_SEQUENCE.search(chunk) is not None
        if utf8:
            try:
                decoder.decode(chunk)
            except UnicodeDecodeError:
                utf8 = False
    if utf8:
        try:
            decoder.decode(b"", final=True)
        except UnicodeDecodeError:
            utf8 = False
    identity = before if before is not None and file_identity(stream) == before else None
    return Scan(digest.hexdigest(), utf8, sequences, header or b"", identity)


@dataclass(frozen=True)
class Dialect:
    """How one file is read: the codec, how its errors name the encoding, the delimiter."""

    encoding: str
    label: str
    delimiter: str
    shown: str  #: for the import summary: ``utf-8-sig, delimiter ';'``


@dataclass(frozen=True)
class _Layout:
    """Positions of our fields in one file's header; an absent optional column points past the header's last
    column, at the empty cell every row is padded with."""

    width: int
    account_ref: int
    debtor_name: int
    phones: tuple[int, ...]
    balance: int
    currency: int
    action: int
    payment_date: int
    payment_ref: int


class AssignmentReader:
    """Reads one creditor's assignment files in the layout ``fmt`` describes."""

    def __init__(self, fmt: CsvFormatConfig) -> None:
        self.fmt = fmt
        self._actions = {header_key(value): action for value, action in fmt.actions.items()}
        self._action_names = ", ".join(repr(value) for value in fmt.actions if value)

    def batch(self, source: str, opener: Opener) -> AssignmentBatch:
        """Hash the file now; its ``items`` parse it lazily, afresh on every iteration."""
        with opener() as stream:
            facts = scan(stream)
        dialect = self._dialect(facts)
        items = _Items(self, source, opener, facts.sha256, facts.identity, dialect)
        return AssignmentBatch(source, facts.sha256, items, read_as=dialect.shown)

    def _dialect(self, facts: Scan) -> Dialect:
        if self.fmt.encoding is not None:
            encoding = self.fmt.encoding
            label = encoding
            if codec_name(encoding) == "utf-8" and not facts.utf8:
                label += " (the file is probably windows-1252 or latin-1: set encoding to it)"
        else:
            damaged = facts.has_utf8_sequences and not facts.utf8
            encoding = "utf-8" if facts.utf8 or damaged else self.fmt.legacy_encoding
            label = _DAMAGED if damaged else f"UTF-8 or {self.fmt.legacy_encoding.title()}"
        codec = codec_name(encoding)
        if codec in ("utf-8", "utf-8-sig"):
            encoding = "utf-8-sig"
            shown = "utf-8-sig" if facts.header.startswith(codecs.BOM_UTF8) else "utf-8"
        else:
            shown = ENCODINGS[codec]
        header = facts.header
        delimiter = self.fmt.delimiter or (";" if header.count(b";") >= header.count(b",") else ",")
        return Dialect(encoding, label, delimiter, f"{shown}, delimiter {delimiter!r}")

    def rows(
        self, source: str, opener: Opener, sha256: str, identity: FileIdentity | None, dialect: Dialect
    ) -> Iterator[AssignmentRow | RowError]:
        """Stream the rows of the file; :class:`FileRejected` comes before any row when the header is wrong or
        the file is no longer the one of ``identity``, and after the last when it changed meanwhile (without an
        identity: when the bytes read are not those of ``sha256``)."""
        digest = hashlib.sha256() if identity is None else None
        with opener() as stream:
            if identity is not None and file_identity(stream) != identity:
                raise FileRejected(source, _CHANGED)
            lines = _decoded_lines(stream, dialect, source, digest.update if digest is not None else _not_hashed)
            first = next(lines, None)
            if first is None:
                raise FileRejected(source, "empty file: no header line")
            reader = csv.reader(itertools.chain([first], lines), delimiter=dialect.delimiter)
            try:
                parse = self._row_parser(self._layout(next(reader), source))
                previous = reader.line_num
                for cells in reader:
                    line, previous = previous + 1, reader.line_num
                    if "".join(cells).strip():  # blank lines and rows of empty cells are skipped
                        yield parse(cells, line)
            except csv.Error as exc:
                raise FileRejected(source, f"line {reader.line_num}: {exc}") from None
            if identity is not None and file_identity(stream) != identity:
                raise FileRejected(source, _CHANGED)
        if digest is not None and digest.hexdigest() != sha256:
            raise FileRejected(source, _CHANGED)

    def _layout(self, header: list[str], source: str) -> _Layout:
        positions: dict[str, int] = {}
        for column, name in enumerate(header):
            positions.setdefault(header_key(name), column)
        columns = self.fmt.columns
        names = (columns.account_ref, columns.debtor_name, columns.balance)
        account_ref, debtor_name, balance = (positions.get(header_key(name)) for name in names)
        phones = tuple(index for name in columns.phones if (index := positions.get(header_key(name))) is not None)
        if account_ref is None or debtor_name is None or balance is None or not phones:
            missing = [name for name in names if header_key(name) not in positions]
            if not phones:
                missing.append(" or ".join(columns.phones))
            raise FileRejected(
                source,
                f"line 1: missing required column(s) {', '.join(missing)} in the header "
                f"(found: {_excerpt(', '.join(name.strip() for name in header))})",
            )
        absent = len(header)

        def optional(name: str) -> int:
            return positions.get(header_key(name), absent)

        return _Layout(
            width=absent + 1,
            account_ref=account_ref,
            debtor_name=debtor_name,
            phones=phones,
            balance=balance,
            currency=optional(columns.currency),
            action=optional(columns.action),
            payment_date=optional(columns.payment_date),
            payment_ref=optional(columns.payment_ref),
        )

    def _action(self, text: str) -> AssignmentAction | None:
        action = self._actions.get(text)
        return action if action is not None else self._actions.get(header_key(text))

    def _row_parser(self, layout: _Layout) -> Callable[[list[str], int], AssignmentRow | RowError]:
        """The row parser of one file: the layout's positions and the format's settings bound once."""
        fmt, columns = self.fmt, self.fmt.columns
        width, ref_at, name_at, phones_at = layout.width, layout.account_ref, layout.debtor_name, layout.phones
        balance_at, currency_at, action_at = layout.balance, layout.currency, layout.action
        date_at, payment_ref_at = layout.payment_date, layout.payment_ref
        creditor, portfolio, decimal_comma, default_currency = (
            fmt.creditor,
            fmt.portfolio,
            fmt.decimal_comma,
            fmt.currency,
        )
        action_of, currencies = self._action, set[str]()
        withdraw, payment_action = AssignmentAction.WITHDRAW, AssignmentAction.PAYMENT

        def parse(cells: list[str], line: int) -> AssignmentRow | RowError:
            if len(cells) < width:
                cells.extend([""] * (width - len(cells)))
            account_ref = cells[ref_at].strip()
            if not account_ref:
                return RowError(line, "account_ref", f"column {columns.account_ref!r} is empty")
            raw_action = cells[action_at].strip()
            action = action_of(raw_action)
            if action is None:
                return RowError(line, "action", f"unknown action {raw_action!r} (use {self._action_names})")
            raw_amount = cells[balance_at].strip()
            amount = parse_amount(raw_amount, decimal_comma)
            if not raw_amount and action is withdraw:
                amount = _ZERO
            if amount is None:
                return RowError(line, "balance", f"column {columns.balance!r}: {raw_amount!r} is not an amount")
            payment = action is payment_action
            if amount < 0 or (payment and amount == 0):
                return RowError(line, "balance", f"column {columns.balance!r}: {raw_amount!r} must be positive")
            currency = (cells[currency_at].strip() or default_currency).upper()
            if currency not in currencies:  # at most 26³ distinct codes pass
                if not _CURRENCY.fullmatch(currency):
                    return RowError(line, "currency", f"{currency!r} is not an ISO 4217 currency code")
                currencies.add(currency)
            phones = tuple([phone for index in phones_at if (phone := cells[index].strip())])
            if not payment:
                return AssignmentRow(
                    line, creditor, portfolio, account_ref, cells[name_at].strip(), phones, amount, currency, action
                )
            paid_on = None
            if raw_date := cells[date_at].strip():
                paid_on = parse_date(raw_date, fmt.date_formats)
                if paid_on is None:
                    formats = " or ".join(fmt.date_formats)
                    return RowError(
                        line, "payment_date", f"column {columns.payment_date!r}: {raw_date!r} is not {formats}"
                    )
            return AssignmentRow(
                line=line,
                creditor=creditor,
                portfolio=portfolio,
                account_ref=account_ref,
                debtor_name=cells[name_at].strip(),
                phones=phones,
                balance=_ZERO,
                currency=currency,
                action=action,
                payment_amount=amount,
                paid_on=paid_on,
                payment_ref=cells[payment_ref_at].strip() or None,
            )

        return parse


@dataclass(frozen=True)
class _Items:
    """A batch's items: iterating streams the file again from the start."""

    reader: AssignmentReader
    source: str
    opener: Opener
    sha256: str
    identity: FileIdentity | None
    dialect: Dialect

    def __iter__(self) -> Iterator[AssignmentRow | RowError]:
        return self.reader.rows(self.source, self.opener, self.sha256, self.identity, self.dialect)


def read_identity(batch: AssignmentBatch) -> FileIdentity | None:
    """The identity of the file ``batch`` holds the bytes of (every pass over its items checks it), so an
    adapter knows the file unchanged without reading it again; None for a batch not read from a file here, or
    from a file written to while it was hashed."""
    items = batch.items
    return items.identity if isinstance(items, _Items) else None


def _not_hashed(chunk: bytes) -> None:
    """A pass that checks the file's identity instead of hashing its bytes again."""


def _decoded_lines(stream: IO[bytes], dialect: Dialect, source: str, seen: Callable[[bytes], object]) -> Iterator[str]:
    """The stream's lines (split at ``\\n``, ends kept), decoded a block of whole lines at a time. The lines
    before an undecodable one come out first, then :class:`FileRejected` names its line and column; a block
    holding mojibake is refused before any of its lines comes out, and so is a line longer than
    :data:`MAX_LINE_BYTES` before it is held whole (a creditor's one-line gigabyte costs neither memory nor time)."""
    encoding, label = dialect.encoding, dialect.label
    decoder = codecs.getincrementaldecoder(encoding)()
    lines_before = 0
    try:
        for block in _line_blocks(stream, seen):
            try:
                text = decoder.decode(block)
            except UnicodeDecodeError:
                for number, raw in enumerate(io.BytesIO(block), lines_before + 1):
                    try:
                        yield raw.decode(encoding)
                    except UnicodeDecodeError as exc:
                        byte, column = raw[exc.start], exc.start + 1
                        reason = f"line {number}: byte 0x{byte:02x} at column {column} is not valid {label}"
                        raise FileRejected(source, reason) from None
                raise FileRejected(source, f"not valid {label} after line {lines_before}") from None
            if not text.isascii() and (mojibake := _mojibake(text, dialect)) is not None:
                line, reason = mojibake
                raise FileRejected(source, f"line {lines_before + line}: {reason}")
            lines_before += block.count(b"\n")
            yield from io.StringIO(text, newline="\n")
    except _LineTooLong:
        reason = f"line {lines_before + 1} is longer than {MAX_LINE_BYTES} bytes: not an assignment file"
        raise FileRejected(source, reason) from None


def _excerpt(text: str, limit: int = 80) -> str:
    """The start of ``text`` (a header line as found), escaped for a terminal: a file that is not an assignment
    file at all (a secret, a log) is not echoed into reports and logs."""
    return escape_controls(text[:limit]) + ("..." if len(text) > limit else "")


def _mojibake(text: str, dialect: Dialect) -> tuple[int, str] | None:
    """The first line of ``text`` (counted from 1) with a cell ftfy finds mis-decoded, and why it is refused."""
    end = 0
    while (suspect := _SUSPECT.search(text, end)) is not None:
        start = text.rfind("\n", 0, suspect.start()) + 1
        end = text.find("\n", suspect.end()) + 1 or len(text)
        for cell in text[start:end].rstrip("\r\n").split(dialect.delimiter):
            if is_bad(cell):
                return text.count("\n", 0, start) + 1, _why_mojibake(cell.strip(), codec_name(dialect.encoding))
    return None


def _why_mojibake(value: str, codec: str) -> str:
    single_byte = codec in LEGACY_ENCODINGS
    steps = [step for _, step in fix_encoding_and_explain(value).explanation or ()]
    if "utf-8" in steps:
        read_as = ENCODINGS[codec] if single_byte else "windows-1252 or latin-1"
        what = f"{value!r} looks like UTF-8 text read as {read_as} (mojibake)"
        remedy = 'the file is probably utf-8: set encoding = "utf-8" or leave it unset' if single_byte else ""
    elif has_c1_control(value):
        what = f"{value!r} holds a C1 control character, which no name or address has"
        fixed = single_byte and _cp1252(value)
        remedy = 'the file is probably windows-1252: set encoding = "windows-1252"' if fixed else ""
    else:
        what = f"{value!r} looks like text decoded with the wrong encoding (mojibake)"
        remedy = ""
    return f"{what}; {remedy or 'the text was misread before the file was written: re-export it'}"


def _cp1252(latin1: str) -> bool:
    """Whether text read as Latin-1 reads as Windows-1252 (whose letters and signs sit where Latin-1 has C1)."""
    try:
        latin1.encode("latin-1").decode("cp1252")
    except UnicodeError:
        return False
    return True


class _LineTooLong(Exception):
    """A line runs past :data:`MAX_LINE_BYTES`."""


def _line_blocks(stream: IO[bytes], seen: Callable[[bytes], object]) -> Iterator[bytes]:
    """The stream in blocks of about :data:`CHUNK_SIZE` bytes that end at a line end (or the stream's end);
    :class:`_LineTooLong` as soon as a line passes :data:`MAX_LINE_BYTES`, before it is kept whole."""
    tail = b""
    while chunk := stream.read(CHUNK_SIZE):
        seen(chunk)
        block = tail + chunk
        end = block.rfind(b"\n") + 1
        if end:
            yield block[:end]
        tail = block[end:]
        if len(tail) > MAX_LINE_BYTES:
            raise _LineTooLong
    if tail:
        yield tail


def read_local(reader: AssignmentReader, path: Path, source: str | None = None) -> AssignmentBatch:
    """An assignment file on this machine as a batch named ``source`` (default: the path); unreadable files
    are rejected."""
    name = source or str(path)
    try:
        return reader.batch(name, lambda: path.open("rb"))
    except OSError as exc:
        raise FileRejected(name, f"cannot read: {exc.strerror or exc}") from None
