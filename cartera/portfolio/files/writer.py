"""What goes back to the creditor, in its CSV dialect: activity exports and rejection reports."""

from __future__ import annotations

import csv
import io
import itertools
from collections.abc import Callable, Iterable, Iterator, Sequence
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import PurePosixPath
from typing import IO

from cartera.core.models import Activity, RowError
from cartera.portfolio.files.config import ExportFormatConfig


def export_name(activities: Sequence[Activity]) -> str:
    """The export's file name, from its first and last seq: the same activities always get the same name."""
    return f"activities-{activities[0].seq:08d}-{activities[-1].seq:08d}.csv"


REJECTIONS_SUFFIX = ".rechazos.csv"
MAX_REPORT_STEM_BYTES = 180  #: a report name, suffixed, and its temporary name fit a 255-byte file name


def rejection_name(source: str) -> str:
    """The rejection report's file name for the delivery ``source`` (a path or a remote name)."""
    return f"{_report_stem(source)}{REJECTIONS_SUFFIX}"


def rejection_names(source: str, now: datetime) -> Iterator[str]:
    """The names a rejection report of ``source`` may take, in order: :func:`rejection_name`, then with a UTC
    timestamp suffix (and a counter), as the archive names a file delivered again, so a report still in the
    outbox is never overwritten by the next one's."""
    stem = _report_stem(source)
    yield f"{stem}{REJECTIONS_SUFFIX}"
    stamp = now.astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")
    for counter in itertools.count():
        yield f"{stem}-{stamp}{f'-{counter}' if counter else ''}{REJECTIONS_SUFFIX}"


def _report_stem(source: str) -> str:
    """The delivery's name without its suffix, cut to :data:`MAX_REPORT_STEM_BYTES` (UTF-8)."""
    stem = PurePosixPath(source.replace(chr(92), "/")).stem
    while len(stem.encode("utf-8", "surrogateescape")) > MAX_REPORT_STEM_BYTES:
        stem = stem[:-1]
    return stem


def _amount(value: Decimal | None, fmt: ExportFormatConfig) -> str:
    if value is None:
        return ""
    text = f"{value:f}"
    return text.replace(".", ",") if fmt.decimal_comma else text


def _cells(activity: Activity, fmt: ExportFormatConfig) -> dict[str, object]:
    return {
        "seq": activity.seq,
        "kind": activity.kind.value,
        "at": activity.at.isoformat(),
        "creditor": activity.creditor,
        "portfolio": activity.portfolio,
        "account_ref": activity.account_ref,
        "phone": activity.phone or "",
        "outcome": activity.outcome or "",
        "amount": _amount(activity.amount, fmt),
        "due_date": "" if activity.due_date is None else activity.due_date.strftime(fmt.date_format),
        "agent": activity.agent or "",
        "attempt": "" if activity.attempt is None else activity.attempt,
    }


def _write(sink: IO[bytes], fmt: ExportFormatConfig, rows: Iterable[Sequence[object]]) -> None:
    """A character the encoding lacks (Ω or an emoji in windows-1252) is written escaped (``\\u03a9``), never
    an error: a report quoting a creditor's refused cell is always written."""
    text = io.TextIOWrapper(sink, encoding=fmt.encoding, errors="backslashreplace", newline="")
    csv.writer(text, delimiter=fmt.delimiter, lineterminator="\r\n").writerows(rows)
    text.flush()
    text.detach()


def activities_writer(activities: Sequence[Activity], fmt: ExportFormatConfig) -> Callable[[IO[bytes]], None]:
    """Writes the export: a header of the creditor's column names, then one line per activity."""
    fields = list(fmt.columns)

    def write(sink: IO[bytes]) -> None:
        rows = (tuple(cells[name] for name in fields) for cells in (_cells(a, fmt) for a in activities))
        _write(sink, fmt, itertools.chain([tuple(fmt.columns.values())], rows))

    return write


def rejections_writer(errors: Sequence[RowError], fmt: ExportFormatConfig) -> Callable[[IO[bytes]], None]:
    """Writes the rejection report: line, field and reason of every quarantined row."""

    def write(sink: IO[bytes]) -> None:
        rows = ((error.line, error.field, error.reason) for error in errors)
        _write(sink, fmt, itertools.chain([fmt.rejection_columns], rows))

    return write
