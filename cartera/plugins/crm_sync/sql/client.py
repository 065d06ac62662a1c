"""The creditor's database through SQLAlchemy: pages of the assignments view, inserts into the activities table.

The URL's password never leaves this module: errors and ``display`` render the URL with ``***`` instead.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import Row, column, create_engine, insert, inspect, literal, select, table, tuple_
from sqlalchemy.exc import NoSuchTableError, SQLAlchemyError
from sqlalchemy.sql.expression import TableClause

from cartera.plugin import CarteraError, register_secret

STREAM_ROWS = 1000


class CreditorDatabaseError(CarteraError):
    """The creditor's database refused or failed a request; the message names the URL without its password."""


@dataclass(frozen=True)
class Position:
    """Where reading the view stopped: the last row's watermark and key values."""

    watermark: Any
    key: Any

    def to_json(self) -> dict[str, Any]:
        return {"watermark": _tagged(self.watermark), "key": _tagged(self.key)}

    @classmethod
    def from_json(cls, document: Mapping[str, Any]) -> Position:
        return cls(_untagged(document["watermark"]), _untagged(document["key"]))

    def describe(self, order: tuple[str, str]) -> str:
        """``after watermark=VALUE, key=VALUE`` for operators."""
        return f"after {order[0]}={_text(self.watermark)}, {order[1]}={_text(self.key)}"


def _tagged(value: Any) -> dict[str, Any]:
    for kind in (bool, int, str):
        if type(value) is kind:
            return {"type": kind.__name__, "value": value}
    if isinstance(value, datetime | date | Decimal | float):
        return {"type": type(value).__name__, "value": _text(value)}
    raise CreditorDatabaseError(f"cannot keep a watermark of type {type(value).__name__}; use a timestamp or number")


def _untagged(tagged: Mapping[str, Any]) -> Any:
    kind, value = tagged["type"], tagged["value"]
    parse: dict[str, Callable[[str], Any]] = {
        "datetime": datetime.fromisoformat,
        "date": date.fromisoformat,
        "Decimal": Decimal,
        "float": float,
    }
    return parse[kind](value) if kind in parse else value


def _text(value: Any) -> str:
    """A cell as the snapshot CSV holds it: decimal point, ISO 8601 dates, NULL empty."""
    if value is None:
        return ""
    if isinstance(value, float):
        value = Decimal(repr(value))
    if isinstance(value, Decimal):
        return format(value, "f")
    if isinstance(value, datetime | date):
        return value.isoformat()
    return str(value)


def cells(row: Row[Any]) -> list[str]:
    return [_text(value) for value in row]


def _table(name: str, columns: Sequence[str]) -> TableClause:
    schema, _, bare = name.rpartition(".")
    return table(bare, *(column(name) for name in dict.fromkeys(columns)), schema=schema or None)


class CreditorDatabase:
    """One creditor database; SQLAlchemy's pool keeps connections between syncs."""

    def __init__(self, url: str) -> None:
        self.engine = create_engine(url, hide_parameters=True, pool_pre_ping=True)
        if self.engine.url.password:
            register_secret(str(self.engine.url.password))
        self.display = self.engine.url.render_as_string(hide_password=True)

    def columns(self, name: str) -> list[str]:
        """The column names of table or view ``name``."""
        schema, _, bare = name.rpartition(".")
        try:
            return [info["name"] for info in inspect(self.engine).get_columns(bare, schema=schema or None)]
        except NoSuchTableError:
            raise CreditorDatabaseError(f"{self.display}: no table or view {name!r}") from None
        except SQLAlchemyError as exc:
            raise self._error(exc) from None

    def rows(
        self, view: str, columns: Sequence[str], order: tuple[str, str], after: Position | None, limit: int
    ) -> Iterator[Row[Any]]:
        """Up to ``limit`` rows of ``columns`` of ``view`` in ``order`` (watermark, key) after ``after``, streamed
        from the server."""
        source = _table(view, [*columns, *order])
        watermark, key = source.c[order[0]], source.c[order[1]]
        selected = (source.c[name].label(f"c{index}") for index, name in enumerate(columns))
        query = select(*selected).where(watermark.is_not(None))
        if after is not None:
            query = query.where(tuple_(watermark, key) > tuple_(literal(after.watermark), literal(after.key)))
        query = query.order_by(watermark, key).limit(limit)
        try:
            with self.engine.connect() as connection:
                yield from connection.execution_options(yield_per=STREAM_ROWS).execute(query)
        except SQLAlchemyError as exc:
            raise self._error(exc) from None

    def probe(self, name: str, columns: Sequence[str]) -> None:
        """Read one row of ``columns`` from ``name``: the connection, the table and its columns work."""
        source = _table(name, columns)
        try:
            with self.engine.connect() as connection:
                connection.execute(select(*source.c).limit(1)).all()
        except SQLAlchemyError as exc:
            raise self._error(exc) from None

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
            raise self._error(exc) from None
        return len(new)

    def dispose(self) -> None:
        self.engine.dispose()

    def _error(self, exc: SQLAlchemyError) -> CreditorDatabaseError:
        cause = getattr(exc, "orig", None) or exc
        first_line = str(cause).strip().splitlines()[0] if str(cause).strip() else ""
        return CreditorDatabaseError(f"{self.display}: {type(cause).__name__}: {first_line}")
