"""The creditor's database through SQLAlchemy: pages of the assignments view, inserts into the activities table.

The URL's password never leaves this module: errors and ``display`` render the URL with ``***`` instead.
"""

from __future__ import annotations

import csv
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from functools import partial
from typing import Any

from sqlalchemy import (
    Float,
    Row,
    String,
    cast,
    column,
    create_engine,
    event,
    func,
    insert,
    inspect,
    literal,
    or_,
    select,
    table,
    tuple_,
)
from sqlalchemy.exc import NoSuchTableError, SQLAlchemyError
from sqlalchemy.sql.expression import ColumnElement, TableClause
from sqlalchemy.types import NullType, TypeEngine

from cartera.plugin import CarteraError, register_secret

STREAM_ROWS = 1000


class CreditorDatabaseError(CarteraError):
    """The creditor's database refused or failed a request; the message names the URL without its password."""


class StatementTimedOut(CreditorDatabaseError):
    """A statement ran past ``statement_timeout_s`` and the server cancelled it; the message names what it read."""


#: PostgreSQL's SQLSTATE of a statement cancelled (by its statement timeout among others).
QUERY_CANCELED = "57014"


@dataclass(frozen=True)
class Position:
    """Where reading the view stopped: the last row's watermark and key, each as the database's text of it
    (``CAST(column AS text)``), compared again as ``CAST(text AS the column's type)``: exact for every type
    whose text reads back as itself (numbers, float4 included, timestamps, ``'infinity'``, uuids, text)."""

    watermark: str
    key: str | None

    def to_json(self) -> dict[str, Any]:
        return {"watermark": {"type": "text", "value": self.watermark}, "key": {"type": "text", "value": self.key}}

    @classmethod
    def from_json(cls, document: Mapping[str, Any]) -> Position:
        """Also a position stored before the text form (tagged ``int``, ``datetime``, ``float``...: the value
        as the database reads it back). ``ValueError`` when it is not a position."""
        if not isinstance(document, Mapping) or not {"watermark", "key"} <= document.keys():
            raise ValueError("no watermark and key")
        watermark, key = _untagged(document["watermark"]), _untagged(document["key"])
        if watermark is None:
            raise ValueError("no watermark value")
        return cls(watermark, key)

    def describe(self, order: tuple[str, str]) -> str:
        """``after watermark=VALUE, key=VALUE`` for operators."""
        return f"after {order[0]}={_shown(self.watermark)}, {order[1]}={_shown('' if self.key is None else self.key)}"


#: The characters of a watermark or key shown in a position's description: it names an import's source, stored in
#: ``import_batches.source`` (VARCHAR(1024)), and a creditor's key can be of any length.
_SHOWN_CHARS = 200

#: The characters of the creditor database's error text kept in an error (it is logged and stored).
_ERROR_CHARS = 500


def _shown(text: str) -> str:
    return text if len(text) <= _SHOWN_CHARS else f"{text[:_SHOWN_CHARS]}... ({len(text)} characters)"


#: The tags of positions stored before the text form whose value was already the text the database reads back.
_TEXT_TAGS = frozenset({"text", "str", "datetime", "date", "Decimal", "float"})


def _untagged(tagged: Any) -> str | None:
    if not isinstance(tagged, Mapping) or not {"type", "value"} <= tagged.keys():
        raise ValueError("a value is not {type, value}")
    kind, value = tagged["type"], tagged["value"]
    if kind == "text" and value is None:
        return None
    if kind in _TEXT_TAGS and isinstance(value, str):
        return value
    if kind == "int" and type(value) is int:
        return str(value)
    if kind == "bool" and type(value) is bool:
        return "true" if value else "false"
    raise ValueError(f"a value of type {str(kind)[:20]!r} is not one a position holds")


def _text(value: Any) -> str:
    """A cell as the snapshot CSV holds it: decimal point, ISO 8601 dates, NULL empty. An integral float (a
    ``double precision`` phone or account column) is its integer's digits: ``300123456``, not ``300123456.0``, which
    a phone's separators stripped read as another number, ``3001234560``."""
    if value is None:
        return ""
    if isinstance(value, float):
        value = Decimal(repr(value))
        if value.is_finite() and value == value.to_integral_value():
            value = value.to_integral_value()
    if isinstance(value, Decimal):
        return format(value, "f")
    if isinstance(value, datetime | date):
        return value.isoformat()
    return str(value)


def cells(row: Sequence[Any]) -> list[str]:
    return [_text(value) for value in row]


def _typed(text: str, types: Mapping[str, TypeEngine[Any]], name: str, role: str, view: str) -> ColumnElement[Any]:
    """``CAST(text AS the column's type)``: the stored position compared exactly as the column's value."""
    kind = types.get(name)
    if kind is None or isinstance(kind, NullType):
        raise CreditorDatabaseError(
            f"view {view}: the {role} column {name!r} is of a type SQLAlchemy does not know, so a position in it "
            f"cannot be compared; use a timestamp, number or text column as the {role}"
        )
    return cast(literal(text, String), kind)


def cell_chars() -> int:
    """The characters of a cell read: one more than the snapshot's CSV reader takes in a field, so a longer cell
    still rejects its page, and no more."""
    return csv.field_size_limit() + 1


def is_cut(text: str | None) -> bool:
    """A watermark's or key's text was cut (:func:`cell_chars`): it is not the value's, and its page is rejected."""
    return text is not None and len(text) >= cell_chars()


def _cut(cell: ColumnElement[Any]) -> ColumnElement[Any]:
    """``SUBSTR(CAST(cell AS VARCHAR), 1, cell_chars())``: the cell's text, at most :func:`cell_chars` long."""
    return func.substr(cast(cell, String), 1, cell_chars())


def _table(name: str, columns: Sequence[str]) -> TableClause:
    schema, _, bare = name.rpartition(".")
    return table(bare, *(column(name) for name in dict.fromkeys(columns)), schema=schema or None)


def _session_settings(statement_timeout_ms: int, connection: Any, _record: Any) -> None:
    """Whatever the server's, role's or database's defaults: dates and timestamps as text in ISO 8601 (the
    snapshot's format), floats as text that reads back as the same float (``extra_float_digits`` 3: at 0 or
    less a float's text is rounded, and a watermark kept as it was read again, or rows after it skipped), and
    no statement running longer than ``statement_timeout_ms`` (a view that never answers held the sync, and the
    node's stop, for ever). Committed: a ``SET`` left in the connection's first transaction was rolled back when
    the pool took it back."""
    cursor = connection.cursor()
    cursor.execute("SET DateStyle TO ISO")
    cursor.execute("SET extra_float_digits TO 3")
    cursor.execute(f"SET statement_timeout TO {int(statement_timeout_ms)}")
    cursor.close()
    connection.commit()


class CreditorDatabase:
    """One creditor database; SQLAlchemy's pool keeps connections between syncs. On PostgreSQL no statement
    runs longer than ``statement_timeout_s`` seconds."""

    def __init__(self, url: str, statement_timeout_s: float = 300.0) -> None:
        self.engine = create_engine(url, hide_parameters=True, pool_pre_ping=True)
        if self.engine.url.password:
            register_secret(str(self.engine.url.password))
        self.display = self.engine.url.render_as_string(hide_password=True)
        self.statement_timeout_s = statement_timeout_s
        if self.engine.dialect.name == "postgresql":
            timeout_ms = max(1, round(statement_timeout_s * 1000))
            event.listen(self.engine, "connect", partial(_session_settings, timeout_ms))

    def columns(self, name: str) -> dict[str, TypeEngine[Any]]:
        """The column names of table or view ``name`` and their types."""
        schema, _, bare = name.rpartition(".")
        try:
            found = inspect(self.engine).get_columns(bare, schema=schema or None)
        except NoSuchTableError:
            raise CreditorDatabaseError(f"{self.display}: no table or view {name!r}") from None
        except SQLAlchemyError as exc:
            raise self._error(exc) from None
        return {info["name"]: info["type"] for info in found}

    def rows(
        self,
        view: str,
        columns: Sequence[str],
        order: tuple[str, str],
        types: Mapping[str, TypeEngine[Any]],
        *,
        after: Position | None = None,
        at: Position | None = None,
        limit: int | None = None,
    ) -> Iterator[Row[Any]]:
        """Up to ``limit`` rows of ``columns`` of ``view`` in ``order`` (watermark, key) after ``after`` (or those
        ``at`` its (watermark, key)), streamed from the server, each followed by its watermark's and key's text
        and its run: rows of (watermark, key) equal by the database's equality (``1.0`` and ``1.00`` of a numeric,
        whose texts differ) share it, counted from 1 in the query's order.

        Cells come as the database's text of them (``CAST(... AS VARCHAR)``), floats alone typed (their text may
        be ``1e+06``): a cell the driver cannot load (a date ``'infinity'``, a year past 9999) then fails only
        its row at import, not the page's query. Each text is cut by the server to :func:`cell_chars` characters:
        a cell longer than the snapshot reader takes is seen as such (its page rejected) without being read
        whole (a view's ``repeat('x', 500000000)`` costs the creditor nothing). Rows whose key is NULL sort
        after the others of their watermark (PostgreSQL's ascending order), and are read after them.
        """
        source = _table(view, [*columns, *order])
        watermark, key = source.c[order[0]], source.c[order[1]]
        selected = [
            (source.c[name] if isinstance(types.get(name), Float) else _cut(source.c[name])).label(f"c{i}")
            for i, name in enumerate(columns)
        ]
        marks = [
            _cut(watermark).label("watermark"),
            _cut(key).label("key"),
            func.dense_rank().over(order_by=(watermark, key)).label("run"),
        ]
        query = select(*selected, *marks).where(watermark.is_not(None))
        if after is not None:
            stored = _typed(after.watermark, types, order[0], "watermark", view)
            if after.key is None:
                query = query.where(watermark > stored)
            else:
                stored_key = _typed(after.key, types, order[1], "key", view)
                query = query.where(
                    watermark >= stored, or_(tuple_(watermark, key) > tuple_(stored, stored_key), key.is_(None))
                )
        if at is not None:
            query = query.where(
                watermark == _typed(at.watermark, types, order[0], "watermark", view),
                key.is_(None) if at.key is None else key == _typed(at.key, types, order[1], "key", view),
            )
        query = query.order_by(watermark, key).limit(limit)
        try:
            with self.engine.connect() as connection:
                yield from connection.execution_options(yield_per=STREAM_ROWS).execute(query)
        except SQLAlchemyError as exc:
            raise self._error(exc, f"view {view}") from None

    def probe(self, name: str, columns: Sequence[str]) -> None:
        """Read one row of ``columns`` from ``name``: the connection, the table and its columns work."""
        source = _table(name, columns)
        try:
            with self.engine.connect() as connection:
                connection.execute(select(*source.c).limit(1)).all()
        except SQLAlchemyError as exc:
            raise self._error(exc, name) from None

    def insert_new(self, name: str, records: Sequence[Mapping[str, Any]], unique: str) -> int:
        """Insert the records whose ``unique`` value the table does not hold yet, in one transaction."""
        target = _table(name, list(records[0]))
        values = [record[unique] for record in records]
        try:
            with self.engine.begin() as connection:
                stored = set(
                    connection.scalars(
                        select(target.c[unique]).where(target.c[unique].between(min(values), max(values)))
                    )
                )
                new = [record for record in records if record[unique] not in stored]
                if new:
                    connection.execute(insert(target), new)
        except SQLAlchemyError as exc:
            raise self._error(exc, name) from None
        return len(new)

    def dispose(self) -> None:
        self.engine.dispose()

    def _error(self, exc: SQLAlchemyError, reading: str | None = None) -> CreditorDatabaseError:
        """The error as one line naming the URL (without its password); a statement cut by the statement
        timeout also names what it read (``reading``) and the setting."""
        cause = getattr(exc, "orig", None) or exc
        text = str(cause).strip()
        first_line = text.splitlines()[0] if text else ""
        if len(first_line) > _ERROR_CHARS:  # the creditor's database writes it: a view can raise megabytes
            first_line = first_line[:_ERROR_CHARS] + f"... ({len(first_line)} characters)"
        if getattr(cause, "sqlstate", None) == QUERY_CANCELED and "statement timeout" in first_line:
            return StatementTimedOut(
                f"{self.display}: {reading or 'a statement'} did not answer within statement_timeout_s = "
                f"{self.statement_timeout_s:g} s (the query was cancelled; a lock held on it, or a view too slow "
                f"to read): {type(cause).__name__}: {first_line}"
            )
        return CreditorDatabaseError(f"{self.display}: {type(cause).__name__}: {first_line}")
