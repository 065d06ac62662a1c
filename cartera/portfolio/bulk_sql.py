"""The import's hot path at the driver's level: rows out by ``COPY`` or one ``executemany`` with ids taken
beforehand, the chunk's accounts looked up in one statement, values converted as the column types do."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from sqlalchemy import Connection, text
from sqlalchemy.orm import InstrumentedAttribute

from cartera.core.store.schema import Base


def insert_rows(
    connection: Connection, entity: type[Base], columns: tuple[str, ...], rows: list[tuple[Any, ...]]
) -> None:
    """``rows`` (values already as the driver takes them) inserted the fastest way the database has, inside
    the batch's transaction: ``COPY`` on PostgreSQL, one ``executemany`` elsewhere. The import's hot path."""
    table, names = entity.__tablename__, ", ".join(columns)
    if connection.dialect.name == "postgresql":
        driver = connection.connection.driver_connection  # psycopg 3
        assert driver is not None, "an open connection has a driver connection"
        with driver.cursor() as cursor, cursor.copy(f"COPY {table} ({names}) FROM STDIN") as copy:
            for row in rows:
                copy.write_row(row)
        return
    marks = ", ".join([_mark(connection)] * len(columns))
    connection.exec_driver_sql(f"INSERT INTO {table} ({names}) VALUES ({marks})", rows)


def accounts_by_ref(connection: Connection, refs: set[str]) -> Sequence[Any]:
    """id, portfolio_id, ref, debtor_id, balance (as stored), currency, status, due_on (as stored) and risk_score of
    the accounts with these refs.

    One driver-level statement: SQLAlchemy's expansion of a chunk's thousands of ``IN`` parameters costs more
    than the lookup itself. PostgreSQL takes the refs as one array.
    """
    if not refs:
        return []
    columns = "id, portfolio_id, ref, debtor_id, balance, currency, status, due_on, risk_score"
    if connection.dialect.name == "postgresql":
        return connection.exec_driver_sql(f"SELECT {columns} FROM accounts WHERE ref = ANY(%s)", (list(refs),)).all()
    marks = ", ".join([_mark(connection)] * len(refs))
    return connection.exec_driver_sql(f"SELECT {columns} FROM accounts WHERE ref IN ({marks})", tuple(refs)).all()


def result_processor(connection: Connection, column: InstrumentedAttribute[Any]) -> Callable[[Any], Any]:
    """How the column's type reads a value the driver returns (money from cents...)."""
    dialect = connection.dialect
    process = column.type.dialect_impl(dialect).result_processor(dialect, None)
    return process if process is not None else _same


def bind_processor(connection: Connection, column: InstrumentedAttribute[Any]) -> Callable[[Any], Any]:
    """How the column's type hands a value to the driver (money in cents, UTC datetimes...)."""
    dialect = connection.dialect
    process = column.type.dialect_impl(dialect).bind_processor(dialect)
    return process if process is not None else _same


def allocate_ids(connection: Connection, table: str, count: int) -> Sequence[int]:
    """``count`` fresh primary keys of ``table``, so rows go out as one plain ``executemany`` (no RETURNING).

    PostgreSQL: taken from the table's sequence (safe with concurrent writers). SQLite: after the largest
    id, which is safe because the store's transactions begin IMMEDIATE: this one holds the write lock.
    """
    if connection.dialect.name == "postgresql":
        return connection.scalars(
            text("SELECT nextval(pg_get_serial_sequence(:table, 'id')) FROM generate_series(1, :count)"),
            {"table": table, "count": count},
        ).all()
    largest = connection.scalar(text(f"SELECT max(id) FROM {table}")) or 0
    return range(largest + 1, largest + 1 + count)


def _mark(connection: Connection) -> str:
    return "?" if connection.dialect.paramstyle == "qmark" else "%s"


def _same(value: Any) -> Any:
    return value
