"""CSV assignment parsing and activity writing, independent of where the bytes come from.

Files are streamed: one chunked pass computes the sha256 (and whether the bytes are UTF-8), a second pass
parses rows one line at a time. Only ASCII-compatible encodings are read, so lines split at ``b"\\n"``.
"""

from __future__ import annotations

import codecs
import csv
import hashlib
import io
import itertools
import os
import re
import threading
import unicodedata
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import IO

from core.models import Activity, AssignmentAction, AssignmentBatch, AssignmentRow, FileRejected, RowError
from plugins.crm_sync.csv_dir.config import CsvFormatConfig

CHUNK_SIZE = 1 << 20

#: Opens the file's bytes from the start; called once per pass.
Opener = Callable[[], IO[bytes]]

EXPORT_COLUMNS = (
    "secuencia",
    "tipo",
    "fecha_hora",
    "acreedor",
    "cartera",
    "cuenta",
    "telefono",
    "resultado",
    "monto",
    "fecha_compromiso",
    "agente",
)

_ACTIONS = {
    "": AssignmentAction.ASSIGN,
    "asignar": AssignmentAction.ASSIGN,
    "assign": AssignmentAction.ASSIGN,
    "retirar": AssignmentAction.WITHDRAW,
    "withdraw": AssignmentAction.WITHDRAW,
    "pago": AssignmentAction.PAYMENT,
    "payment": AssignmentAction.PAYMENT,
}
_AMOUNT = re.compile(r"[+-]?\d+(?:[.,]\d+)*")
_CURRENCY = re.compile(r"[A-Z]{3}")


@dataclass(frozen=True)
class Scan:
    """What one pass over a file's bytes tells: its sha256 and whether it decodes as UTF-8."""

    sha256: str
    utf8: bool


def scan(stream: IO[bytes]) -> Scan:
    digest = hashlib.sha256()
    decoder = codecs.getincrementaldecoder("utf-8")()
    utf8 = True
    while chunk := stream.read(CHUNK_SIZE):
        digest.update(chunk)
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
    return Scan(digest.hexdigest(), utf8)


def header_key(text: str) -> str:
    """``text`` compared ignoring case, accents, surrounding spaces and a byte order mark."""
    folded = unicodedata.normalize("NFKD", text.strip().lstrip("\ufeff").strip().casefold())
    return "".join(char for char in folded if not unicodedata.combining(char))


def parse_amount(text: str, decimal_comma: bool | None) -> Decimal | None:
    """``text`` as a Decimal (``None`` when it is not an amount); ``decimal_comma=None`` decides per value."""
    compact = "".join(text.split()).removeprefix("$")
    if not _AMOUNT.fullmatch(compact):
        return None
    decimal = _decimal_separator(compact) if decimal_comma is None else ("," if decimal_comma else ".")
    thousands = "." if decimal == "," else ","
    whole, _, fraction = compact.partition(decimal)
    if not fraction and compact.endswith(decimal):
        return None
    if decimal in fraction or thousands in fraction:
        return None
    sign = whole[0] if whole[0] in "+-" else ""
    groups = whole.removeprefix(sign).split(thousands)
    if len(groups) > 1 and (len(groups[0]) > 3 or any(len(group) != 3 for group in groups[1:])):
        return None
    digits = "".join(groups)
    return Decimal(f"{sign}{digits}.{fraction}" if fraction else f"{sign}{digits}")


def _decimal_separator(amount: str) -> str:
    last = max(amount.rfind("."), amount.rfind(","))
    if last < 0:
        return "."
    mark = amount[last]
    other = "," if mark == "." else "."
    if other in amount:
        return mark
    if amount.count(mark) > 1 or len(amount) - last - 1 == 3:
        return other
    return mark


@dataclass(frozen=True)
class _Layout:
    """Positions of our fields in one file's header."""

    account_ref: int
    debtor_name: int
    phones: tuple[int, ...]
    balance: int
    currency: int | None
    action: int | None


class AssignmentReader:
    """Reads one creditor's assignment files in the layout ``fmt`` describes."""

    def __init__(self, fmt: CsvFormatConfig) -> None:
        self.fmt = fmt

    def batch(self, source: str, opener: Opener) -> AssignmentBatch:
        """Hash the file now; its ``items`` parse it lazily, afresh on every iteration."""
        with opener() as stream:
            facts = scan(stream)
        if self.fmt.encoding is not None:
            encoding = self.fmt.encoding
            if codecs.lookup(encoding).name == "utf-8":
                encoding = "utf-8-sig"
        else:
            encoding = "utf-8-sig" if facts.utf8 else "windows-1252"
        return AssignmentBatch(source, facts.sha256, _Items(self, source, opener, facts.sha256, encoding))

    def rows(self, source: str, opener: Opener, sha256: str, encoding: str) -> Iterator[AssignmentRow | RowError]:
        """Stream the rows of the file; :class:`FileRejected` comes before any row when the header is wrong."""
        digest = hashlib.sha256()
        with opener() as stream:
            label = self.fmt.encoding or "UTF-8 or Windows-1252"
            lines = _decoded_lines(stream, encoding, label, source, digest.update)
            first = next(lines, None)
            if first is None:
                raise FileRejected(source, "empty file: no header line")
            delimiter = self.fmt.delimiter or (";" if first.count(";") >= first.count(",") else ",")
            reader = csv.reader(itertools.chain([first], lines), delimiter=delimiter)
            try:
                layout = self._layout(next(reader), source)
                previous = reader.line_num
                for cells in reader:
                    line, previous = previous + 1, reader.line_num
                    if any(cell.strip() for cell in cells):
                        yield self._row(cells, line, layout)
            except csv.Error as exc:
                raise FileRejected(source, f"line {reader.line_num}: {exc}") from None
        if digest.hexdigest() != sha256:
            raise FileRejected(source, "the file changed while it was being read; import it again")

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
                f"missing required column(s) {', '.join(missing)} in the header "
                f"(found: {', '.join(name.strip() for name in header)})",
            )
        return _Layout(
            account_ref=account_ref,
            debtor_name=debtor_name,
            phones=phones,
            balance=balance,
            currency=positions.get(header_key(columns.currency)),
            action=positions.get(header_key(columns.action)),
        )

    def _row(self, cells: list[str], line: int, layout: _Layout) -> AssignmentRow | RowError:
        def cell(index: int | None) -> str:
            return cells[index].strip() if index is not None and index < len(cells) else ""

        columns = self.fmt.columns
        account_ref = cell(layout.account_ref)
        if not account_ref:
            return RowError(line, "account_ref", f"column {columns.account_ref!r} is empty")
        action = _ACTIONS.get(header_key(cell(layout.action)))
        if action is None:
            return RowError(line, "action", f"unknown action {cell(layout.action)!r} (use asignar, retirar or pago)")
        raw_amount = cell(layout.balance)
        amount = parse_amount(raw_amount, self.fmt.decimal_comma)
        if not raw_amount and action is AssignmentAction.WITHDRAW:
            amount = Decimal(0)
        if amount is None:
            return RowError(line, "balance", f"column {columns.balance!r}: {raw_amount!r} is not an amount")
        if amount < 0 or (action is AssignmentAction.PAYMENT and amount == 0):
            return RowError(line, "balance", f"column {columns.balance!r}: {raw_amount!r} must be positive")
        currency = (cell(layout.currency) or self.fmt.currency).upper()
        if not _CURRENCY.fullmatch(currency):
            return RowError(line, "currency", f"{currency!r} is not an ISO 4217 currency code")
        payment = action is AssignmentAction.PAYMENT
        return AssignmentRow(
            line=line,
            creditor=self.fmt.creditor,
            portfolio=self.fmt.portfolio,
            account_ref=account_ref,
            debtor_name=cell(layout.debtor_name),
            phones=tuple(phone for index in layout.phones if (phone := cell(index))),
            balance=Decimal(0) if payment else amount,
            currency=currency,
            action=action,
            payment_amount=amount if payment else None,
        )


class _Items:
    """A batch's items: iterating streams the file again from the start."""

    def __init__(self, reader: AssignmentReader, source: str, opener: Opener, sha256: str, encoding: str) -> None:
        self._args = (source, opener, sha256, encoding)
        self._reader = reader

    def __iter__(self) -> Iterator[AssignmentRow | RowError]:
        return self._reader.rows(*self._args)


def _decoded_lines(
    stream: IO[bytes], encoding: str, label: str, source: str, seen: Callable[[bytes], object]
) -> Iterator[str]:
    for number, raw in enumerate(stream, 1):
        seen(raw)
        try:
            text = raw.decode(encoding)
        except UnicodeDecodeError as exc:
            raise FileRejected(
                source,
                f"line {number}: byte 0x{raw[exc.start]:02x} at column {exc.start + 1} is not valid {label}",
            ) from None
        yield text


def export_name(activities: Sequence[Activity]) -> str:
    return f"activities-{activities[0].seq:08d}-{activities[-1].seq:08d}.csv"


def write_activities(sink: IO[bytes], activities: Sequence[Activity]) -> None:
    """The export as a spreadsheet opens it: UTF-8 with BOM, ';' delimited, decimal comma, CRLF."""
    text = io.TextIOWrapper(sink, encoding="utf-8-sig", newline="")
    writer = csv.writer(text, delimiter=";", lineterminator="\r\n")
    writer.writerow(EXPORT_COLUMNS)
    for activity in activities:
        writer.writerow(
            (
                activity.seq,
                activity.kind.value,
                activity.at.isoformat(),
                activity.creditor,
                activity.portfolio,
                activity.account_ref,
                activity.phone or "",
                activity.outcome or "",
                "" if activity.amount is None else f"{activity.amount:f}".replace(".", ","),
                "" if activity.due_date is None else activity.due_date.isoformat(),
                activity.agent or "",
            )
        )
    text.flush()
    text.detach()


def write_atomically(target: Path, write: Callable[[IO[bytes]], None]) -> None:
    """Write ``target`` through a hidden temporary file in its directory: readers never see it partial."""
    temp = target.with_name(f".{target.name}.{uuid.uuid4().hex}.tmp")
    try:
        with temp.open("xb") as sink:
            write(sink)
            sink.flush()
            os.fsync(sink.fileno())
        os.replace(temp, target)
    finally:
        temp.unlink(missing_ok=True)
    fsync_dir(target.parent)


class Ledger:
    """Content hashes of acknowledged files: an append-only text file of ``sha256  source`` lines."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()

    def __contains__(self, sha256: object) -> bool:
        try:
            with self.path.open(encoding="utf-8") as stream:
                return any(line.split(" ", 1)[0] == sha256 for line in stream)
        except FileNotFoundError:
            return False

    def add(self, sha256: str, source: str) -> None:
        with self._lock, self.path.open("a", encoding="utf-8") as stream:
            stream.write(f"{sha256}  {source}\n")
            stream.flush()
            os.fsync(stream.fileno())


def waiting_files(inbox: Path, pattern: str, archive: Path) -> list[Path]:
    """Files matching ``pattern`` in ``inbox``, by name, leaving out the archive."""
    archive = archive.resolve()
    found = (path for path in inbox.glob(pattern) if path.is_file() and archive not in path.resolve().parents)
    return sorted(found, key=lambda path: path.name)


def archive_file(path: Path, archive: Path, now: datetime) -> Path:
    """Move ``path`` into ``archive`` with one rename; a name already there gets a UTC timestamp suffix."""
    archive.mkdir(parents=True, exist_ok=True)
    target = archive / path.name
    stamp = now.astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")
    for counter in itertools.count():
        if not target.exists():
            break
        target = archive / f"{path.stem}-{stamp}{f'-{counter}' if counter else ''}{path.suffix}"
    os.replace(path, target)
    fsync_dir(archive)
    fsync_dir(path.parent)
    return target


def fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
