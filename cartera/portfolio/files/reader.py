"""Streaming assignment files: encoding, delimiter and header first, then one row at a time.

Making a batch reads nothing; each iteration of its items reads the file once, decoding blocks of whole lines,
parsing one row at a time and hashing the bytes on the way, so an import reads a file once (a file whose
encoding is not set and that turns out not to be UTF-8 too: see :func:`_decoded_lines`). The file must not
change meanwhile (:class:`FileReading`). Only ASCII-compatible encodings are read, so lines split at
``b"\\n"``. Decoded text that looks like mojibake (UTF-8 read as a single-byte code page, a C1 control character
of Windows-1252 read as Latin-1, text misread before the file was written) rejects the file, naming the line,
the value and the likely right encoding: stored, it would be wrong on every letter and every export.
"""

from __future__ import annotations

import codecs
import collections
import csv
import hashlib
import io
import itertools
import os
import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from pathlib import Path
from typing import IO, Protocol

from ftfy import fix_encoding_and_explain
from ftfy.badness import is_bad

from cartera.core.control_characters import C1_CONTROLS, escape_controls, has_c1_control
from cartera.core.models import AssignmentAction, AssignmentBatch, AssignmentRow, FileRejected, Reading, RowError
from cartera.portfolio.files.config import ENCODINGS, LEGACY_ENCODINGS, CsvFormatConfig, codec_name
from cartera.portfolio.files.values import (
    AmbiguousColumn,
    amount_problem,
    find_column,
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


class FileOverMaxBytes(FileRejected):
    """A file larger than the ``max_file_bytes`` its reader was given: said by its size before any byte is read,
    or once a pass reached the bound and the file had grown past it (nothing beyond the bound is read)."""


class _Readable(Protocol):
    def read(self, size: int, /) -> bytes: ...


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


def _has_utf8_sequence(chunk: bytes) -> bool:
    """Whether ``chunk`` holds a UTF-8 multi-byte character (one split between two chunks is not seen)."""
    return bool(chunk.translate(None, _NOT_CONTINUATION)) and _UTF8_SEQUENCE.search(chunk) is not None


class _Pass:
    """What one pass over a file learns: the sha256 of the chunks read, whether one held a UTF-8 multi-byte
    character, and (once the first line was read) how it reads the file."""

    def __init__(self) -> None:
        self.digest = hashlib.sha256()
        self.sequences = False
        self.dialect: Dialect | None = None

    def __call__(self, chunk: bytes) -> None:
        self.digest.update(chunk)
        self.sequences = self.sequences or _has_utf8_sequence(chunk)


@dataclass
class Dialect:
    """How one pass reads a file: the codec, how its errors name the encoding, the delimiter, the encoding the
    summary shows. ``legacy``: the encoding a file whose encoding is not set turns to at its first byte that is
    not UTF-8 (None once that is decided, and for a set encoding)."""

    encoding: str
    label: str
    delimiter: str
    shown: str
    legacy: str | None

    @property
    def read_as(self) -> str:
        """For the import summary: ``utf-8-sig, delimiter ';'``."""
        return f"{self.shown}, delimiter {self.delimiter!r}"

    def turn_legacy(self, legacy: str) -> None:
        """Read the rest of the file as ``legacy`` (what came before was ASCII: it reads alike)."""
        self.encoding, self.shown, self.legacy = legacy, ENCODINGS[codec_name(legacy)], None

    def damaged(self) -> None:
        """The file mixes UTF-8 characters with other bytes: its first byte that is not UTF-8 rejects it."""
        self.label, self.legacy = _DAMAGED, None


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
    due_date: int
    days_past_due: int
    risk_score: int


class AssignmentReader:
    """Reads one creditor's assignment files in the layout ``fmt`` describes."""

    def __init__(self, fmt: CsvFormatConfig, max_bytes: int | None = None) -> None:
        self.fmt = fmt
        #: the largest file read (``max_file_bytes``); None: no bound (bytes the node made itself)
        self.max_bytes = max_bytes
        self._actions = {header_key(value): action for value, action in fmt.actions.items()}
        self._action_names = ", ".join(repr(value) for value in fmt.actions if value)

    def batch(self, source: str, opener: Opener) -> AssignmentBatch:
        """The file as a batch, nothing of it read yet: its ``items`` stream it, afresh on every iteration, and
        hash it on the way (see :class:`FileReading`). A file larger than ``max_bytes`` by its size (fstat) is
        :class:`FileOverMaxBytes` at once, not a byte of it read."""
        with opener() as stream:
            identity = file_identity(stream)
        if self.max_bytes is not None and identity is not None and identity.size > self.max_bytes:
            raise FileOverMaxBytes(source, f"{identity.size} bytes, more than max_file_bytes ({self.max_bytes})")
        reading = FileReading(self, source, opener, identity)
        return AssignmentBatch(source, reading, reading)

    def _dialect(self, header: bytes) -> Dialect:
        """How a pass starts reading a file whose first line is ``header``: a set encoding, else UTF-8 (until a
        byte that is not UTF-8 shows)."""
        if self.fmt.encoding is not None:
            encoding = label = self.fmt.encoding
            if codec_name(encoding) == "utf-8":  # a label is only shown for a byte that is not the encoding
                label += " (the file is probably windows-1252 or latin-1: set encoding to it)"
        else:
            encoding, label = "utf-8", f"UTF-8 or {self.fmt.legacy_encoding.title()}"
        codec = codec_name(encoding)
        if codec in ("utf-8", "utf-8-sig"):
            encoding = "utf-8-sig"
            shown = "utf-8-sig" if header.startswith(codecs.BOM_UTF8) else "utf-8"
        else:
            shown = ENCODINGS[codec]
        delimiter = self.fmt.delimiter or (";" if header.count(b";") >= header.count(b",") else ",")
        return Dialect(encoding, label, delimiter, shown, None if self.fmt.encoding else self.fmt.legacy_encoding)

    def rows(self, source: str, stream: _Readable, seen: _Pass) -> Iterator[AssignmentRow | RowError]:
        """The rows of ``stream``, each chunk read handed to ``seen``; :class:`FileRejected` comes before any
        row when the header is wrong."""
        chunks = _chunks(stream, seen)
        first_chunk = next(chunks, b"")
        if problem := _unsupported_export(first_chunk):
            raise FileRejected(source, problem)
        dialect = seen.dialect = self._dialect(first_chunk.split(b"\n", 1)[0])
        lines = _decoded_lines(itertools.chain([first_chunk], chunks), dialect, source, seen)
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

    def _layout(self, header: list[str], source: str) -> _Layout:
        def find(name: str) -> int | None:
            try:
                return find_column(name, header)
            except AmbiguousColumn as exc:
                raise FileRejected(source, f"line 1: {exc}") from None

        columns = self.fmt.columns
        names = (columns.account_ref, columns.debtor_name, columns.balance)
        account_ref, debtor_name, balance = (find(name) for name in names)
        phones = tuple(index for name in columns.phones if (index := find(name)) is not None)
        if account_ref is None or debtor_name is None or balance is None or not phones:
            missing = [name for name in names if find(name) is None]
            if not phones:
                missing.append(" or ".join(columns.phones))
            raise FileRejected(
                source,
                f"line 1: missing required column(s) {', '.join(missing)} in the header "
                f"(found: {_excerpt(', '.join(name.strip() for name in header))})",
            )
        absent = len(header)

        def optional(name: str) -> int:
            index = find(name)
            return absent if index is None else index

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
            due_date=optional(columns.due_date),
            days_past_due=optional(columns.days_past_due),
            risk_score=optional(columns.risk_score),
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
        due_at, days_at, score_at = layout.due_date, layout.days_past_due, layout.risk_score

        def past_due(cells: list[str], line: int) -> tuple[date | None, int | None] | RowError:
            """The row's due date, else its days past due; an unreadable one of either fails the row."""
            if raw_due := cells[due_at].strip():
                due_on = parse_date(raw_due, fmt.date_formats)
                if due_on is None:
                    formats = " or ".join(fmt.date_formats)
                    return RowError(
                        line, "due_date", f"column {columns.due_date!r}: {_quoted(raw_due)} is not {formats}"
                    )
                return due_on, None
            if raw_days := cells[days_at].strip():
                if not raw_days.isascii() or not raw_days.isdigit() or len(raw_days) > 5:
                    return RowError(
                        line,
                        "days_past_due",
                        f"column {columns.days_past_due!r}: {_quoted(raw_days)} is not a number of days",
                    )
                return None, int(raw_days)
            return None, None

        def parse(cells: list[str], line: int) -> AssignmentRow | RowError:
            if len(cells) < width:
                cells.extend([""] * (width - len(cells)))
            elif (overflow := _past_header(cells, width - 1, line)) is not None:
                return overflow
            account_ref = cells[ref_at].strip()
            if not account_ref:
                return RowError(line, "account_ref", f"column {columns.account_ref!r} is empty")
            raw_action = cells[action_at].strip()
            action = action_of(raw_action)
            if action is None:
                return RowError(line, "action", f"unknown action {_quoted(raw_action)} (use {self._action_names})")
            raw_amount = cells[balance_at].strip()
            amount = _ZERO if not raw_amount and action is withdraw else parse_amount(raw_amount, decimal_comma)
            if amount is None:
                return RowError(line, "balance", f"column {columns.balance!r}: {_quoted(raw_amount)} is not an amount")
            if (problem := amount_problem(amount)) is not None:
                return RowError(line, "balance", f"column {columns.balance!r}: {_quoted(raw_amount)} {problem}")
            payment = action is payment_action
            if amount < 0 or (payment and amount == 0):
                return RowError(line, "balance", f"column {columns.balance!r}: {_quoted(raw_amount)} must be positive")
            currency = (cells[currency_at].strip() or default_currency).upper()
            if currency not in currencies:  # at most 26³ distinct codes pass
                if not _CURRENCY.fullmatch(currency):
                    return RowError(line, "currency", f"{_quoted(currency)} is not an ISO 4217 currency code")
                currencies.add(currency)
            phones = tuple([phone for index in phones_at if (phone := cells[index].strip())])
            if not payment:
                overdue = past_due(cells, line)
                if isinstance(overdue, RowError):
                    return overdue
                score = None
                if raw_score := cells[score_at].strip():
                    parsed = parse_amount(raw_score.removeprefix("-"), decimal_comma)
                    if parsed is None:
                        return RowError(
                            line, "risk_score", f"column {columns.risk_score!r}: {_quoted(raw_score)} is not a number"
                        )
                    score = -float(parsed) if raw_score.startswith("-") else float(parsed)
                return AssignmentRow(
                    line,
                    creditor,
                    portfolio,
                    account_ref,
                    cells[name_at].strip(),
                    phones,
                    amount,
                    currency,
                    action,
                    due_on=overdue[0],
                    days_past_due=overdue[1],
                    risk_score=score,
                )
            paid_on = None
            if raw_date := cells[date_at].strip():
                paid_on = parse_date(raw_date, fmt.date_formats)
                if paid_on is None:
                    formats = " or ".join(fmt.date_formats)
                    return RowError(
                        line, "payment_date", f"column {columns.payment_date!r}: {_quoted(raw_date)} is not {formats}"
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


def _past_header(cells: list[str], columns: int, line: int) -> RowError | None:
    """A row's error when it has a non-empty cell past the header's ``columns``: no column to read it as (most
    often a delimiter inside an unquoted value); empty trailing cells are fine."""
    if not any(cell.strip() for cell in cells[columns:]):
        return None
    used = max(index for index, cell in enumerate(cells) if cell.strip()) + 1
    return RowError(
        line, "row", f"{used} cells, the header has {columns}: a delimiter inside an unquoted value? (quote it)"
    )


class FileReading(Reading):
    """A file's items: every iteration streams the file from the start and hashes it on the way, so an import
    reads it once; its sha256 and how it was read are known once a pass reached the end. The file must keep the
    :class:`FileIdentity` it had when the batch was made, from the start to the end of every pass, and a pass
    after one that reached the end must read the same sha256; else :class:`FileRejected` (it changed)."""

    def __init__(self, reader: AssignmentReader, source: str, opener: Opener, identity: FileIdentity | None) -> None:
        self.reader, self.source, self.opener = reader, source, opener
        self.identity = identity  #: the file's when the batch was made (None for bytes in memory)
        self._sha256: str | None = None
        self._read_as: str | None = None

    def __iter__(self) -> Iterator[AssignmentRow | RowError]:
        seen = _Pass()
        with self.opener() as stream:
            opened = self._unchanged(stream)
            bounded = self._bounded(stream)
            try:
                yield from self.reader.rows(self.source, bounded, seen)
            except FileRejected:
                collections.deque(_chunks(bounded, seen), maxlen=0)  # the rest hashed: a rejected file's sha256
                if file_identity(stream) == opened:
                    self._learnt(seen)
                raise
            if file_identity(stream) != opened:
                raise FileRejected(self.source, _CHANGED)
        self._learnt(seen)

    def known_sha256(self) -> str | None:
        return self._sha256

    def sha256(self) -> str:
        if self._sha256 is None:
            digest = hashlib.sha256()
            with self.opener() as stream:
                opened = self._unchanged(stream)
                bounded = self._bounded(stream)
                while chunk := bounded.read(CHUNK_SIZE):
                    digest.update(chunk)
                if file_identity(stream) != opened:
                    raise FileRejected(self.source, _CHANGED)
            self._sha256 = digest.hexdigest()
        return self._sha256

    def read_as(self) -> str | None:
        return self._read_as

    def _learnt(self, seen: _Pass) -> None:
        """Keep what a pass over the whole file learnt; :class:`FileRejected` if an earlier one read other bytes."""
        sha256 = seen.digest.hexdigest()
        if self._sha256 is not None and sha256 != self._sha256:
            raise FileRejected(self.source, _CHANGED)
        self._sha256 = sha256
        self._read_as = seen.dialect.read_as if seen.dialect is not None else None

    def _bounded(self, stream: IO[bytes]) -> _Readable:
        """``stream``, read no further than the reader's ``max_bytes`` (a file grown past it since the batch was
        made: :class:`FileOverMaxBytes` at the bound)."""
        limit = self.reader.max_bytes
        return stream if limit is None else _Bounded(stream, limit, self.source)

    def _unchanged(self, stream: IO[bytes]) -> FileIdentity | None:
        """The identity of the file ``stream`` reads, which must be the batch's."""
        opened = file_identity(stream)
        if opened != self.identity:
            raise FileRejected(self.source, _CHANGED)
        return opened


def read_identity(batch: AssignmentBatch) -> FileIdentity | None:
    """The identity the file ``batch`` was read from had when the batch was made (every pass over its items
    checks it), so an adapter knows the file unchanged without reading it again; None for a batch not read from
    a file here."""
    return batch.hashed.identity if isinstance(batch.hashed, FileReading) else None


def _unsupported_export(head: bytes) -> str | None:
    """What makes a file starting with ``head`` none of the CSVs read here, said so that an operator can fix it:
    a spreadsheet's UTF-16 ("Unicode text") or bare-CR ("CSV (Macintosh)") export, which would otherwise get a
    header of NULs or Python's csv message about universal-newline mode; None when it may be one."""
    if head.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)) or b"\x00" in head[:2]:
        return (
            'line 1: the file is UTF-16 (a spreadsheet\'s "Unicode text" export), which is not supported: save it as '
            '"CSV UTF-8"'
        )
    if b"\r" in head.split(b"\n", 1)[0].rstrip(b"\r"):
        return (
            'line 1: line ends are bare CR, without LF (a spreadsheet\'s "CSV (Macintosh)" export), which is not '
            'supported: save it as "CSV UTF-8" (line ends LF or CRLF)'
        )
    return None


class _Bounded:
    """Reads of a file that stop at ``limit`` bytes from its start: there, a file holding more (by fstat; bytes
    in memory: one more byte) raises :class:`FileOverMaxBytes`, its end otherwise. So a file that grows while it is
    read (a creditor still writing, or a sparse file extended) costs at most ``limit`` bytes of reading."""

    def __init__(self, stream: IO[bytes], limit: int, source: str) -> None:
        self.stream, self.left, self.limit, self.source = stream, limit, limit, source

    def read(self, size: int, /) -> bytes:
        if self.left > 0:
            chunk = self.stream.read(min(size, self.left))
            self.left -= len(chunk)
            return chunk
        identity = file_identity(self.stream)
        if identity.size > self.limit if identity is not None else self.stream.read(1):
            raise FileOverMaxBytes(
                self.source, f"the file grew past max_file_bytes ({self.limit}) while it was being read"
            )
        return b""


def _chunks(stream: _Readable, seen: Callable[[bytes], object]) -> Iterator[bytes]:
    """``stream`` read :data:`CHUNK_SIZE` bytes at a time, each chunk handed to ``seen`` as it is read."""
    while chunk := stream.read(CHUNK_SIZE):
        seen(chunk)
        yield chunk


def _decoded_lines(chunks: Iterable[bytes], dialect: Dialect, source: str, seen: _Pass) -> Iterator[str]:
    """The lines of ``chunks`` (split at ``\\n``, ends kept), decoded a block of whole lines at a time. The lines
    before an undecodable one come out first, then :class:`FileRejected` names its line and column; a block
    holding mojibake is refused before any of its lines comes out, and so is a line longer than
    :data:`MAX_LINE_BYTES` before it is held whole (a creditor's one-line gigabyte costs neither memory nor time).

    A file whose encoding is not set is read as UTF-8 until a byte is not: if everything before was ASCII and no
    UTF-8 multi-byte character was read yet, it is read as ``dialect.legacy`` from that block on (the ASCII before
    reads alike), unless a UTF-8 multi-byte character shows later: then the file is damaged and that first byte
    rejects it (the import loads nothing of a rejected file). Otherwise it is damaged at once. Nothing is read
    twice."""
    decoder = codecs.getincrementaldecoder(dialect.encoding)()
    lines_before, ascii_before = 0, True
    damaged_at: str | None = None  #: why a file turned legacy is refused if a UTF-8 character shows after all
    try:
        for block in _line_blocks(chunks):
            text = _decoded(decoder, block)
            if text is None and dialect.legacy is not None:
                if ascii_before and not seen.sequences:
                    damaged_at = _undecodable(block, lines_before, dialect.encoding, _DAMAGED)[1]
                    dialect.turn_legacy(dialect.legacy)
                    decoder = codecs.getincrementaldecoder(dialect.encoding)()
                    text = _decoded(decoder, block)
                else:
                    dialect.damaged()
            if damaged_at is not None and seen.sequences:
                raise FileRejected(source, damaged_at)
            if text is None:
                lines, reason = _undecodable(block, lines_before, dialect.encoding, dialect.label)
                yield from lines
                raise FileRejected(source, reason)
            ascii_text = text.isascii()
            if not ascii_text and (mojibake := _mojibake(text, dialect)) is not None:
                line, reason = mojibake
                raise FileRejected(source, f"line {lines_before + line}: {reason}")
            ascii_before = ascii_before and ascii_text
            lines_before += block.count(b"\n")
            yield from io.StringIO(text, newline="\n")
    except _LineTooLong:
        reason = f"line {lines_before + 1} is longer than {MAX_LINE_BYTES} bytes: not an assignment file"
        raise FileRejected(source, reason) from None


def _decoded(decoder: codecs.IncrementalDecoder, block: bytes) -> str | None:
    """``block`` decoded, None when it holds a byte the encoding does not have; the last block of a file that
    does not end at a line end is the last (a character cut short there is not dropped: it is undecodable)."""
    try:
        return decoder.decode(block, final=not block.endswith(b"\n"))
    except UnicodeDecodeError:
        return None


def _undecodable(block: bytes, lines_before: int, encoding: str, label: str) -> tuple[list[str], str]:
    """The lines of ``block`` before its first undecodable one, decoded, and why that line is refused."""
    lines = []
    for number, raw in enumerate(io.BytesIO(block), lines_before + 1):
        try:
            lines.append(raw.decode(encoding))
        except UnicodeDecodeError as exc:
            byte, column = raw[exc.start], exc.start + 1
            return lines, f"line {number}: byte 0x{byte:02x} at column {column} is not valid {label}"
    return lines, f"not valid {label} after line {lines_before}"


def _quoted(cell: str, limit: int = 80) -> str:
    """A cell quoted in a row's reason: ``repr`` (escaped), cut to ``limit`` characters then ``...``, so a reason
    stays short whatever the file holds (it is logged and sent to the creditor's rejections table)."""
    shown = repr(cell[:limit])
    return shown if len(shown) <= limit + 2 and len(cell) <= limit else shown[:limit] + "..."


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


def _line_blocks(chunks: Iterable[bytes]) -> Iterator[bytes]:
    """``chunks`` in blocks of about :data:`CHUNK_SIZE` bytes that end at a line end (or the last chunk's end);
    :class:`_LineTooLong` as soon as a line passes :data:`MAX_LINE_BYTES`, before it is kept whole."""
    tail = b""
    for chunk in chunks:
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
