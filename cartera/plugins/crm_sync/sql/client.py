"""The creditor's database through SQLAlchemy: pages of the assignments view, inserts into the activities table.

The URL's password never leaves this module: errors and ``display`` render the URL with ``***`` instead.
"""

from __future__ import annotations

import csv
import logging
import math
import re
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from functools import partial
from typing import Any

from sqlalchemy import (
    CHAR,
    NCHAR,
    NUMERIC,
    NVARCHAR,
    VARCHAR,
    Connection,
    Date,
    DateTime,
    Enum,
    Float,
    Integer,
    Numeric,
    Row,
    String,
    Text,
    Time,
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
    text,
    tuple_,
)
from sqlalchemy.dialects.postgresql import DOMAIN
from sqlalchemy.engine import make_url
from sqlalchemy.exc import NoSuchTableError, SQLAlchemyError
from sqlalchemy.pool import NullPool
from sqlalchemy.sql.expression import ColumnElement, TableClause
from sqlalchemy.types import NullType, TypeEngine

from cartera.plugin import (
    AGENT_MAX,
    AMOUNT_DECIMAL_PLACES,
    AMOUNT_MAX_DIGITS,
    PAYMENT_REF_MAX,
    ActivityKind,
    CarteraError,
    DeadlineWatchdog,
    RequestDeadline,
    register_secret,
)

STREAM_ROWS = 1000

#: The values an insert looks up in one statement (whether the table holds them already).
LOOKUP_VALUES = 1000

#: Seconds a statement is given past ``statement_timeout_s`` before the node closes its connection: the server's
#: cancel arrives well within it, so only a database (or network) that stopped answering, or a statement that
#: ignored its cancel (a view's function catching ``query_canceled``), reaches this deadline.
DEADLINE_GRACE_S = 5.0

#: The longest a connection may take to be made (libpq's ``connect_timeout``, whole seconds, 2 at least).
CONNECT_TIMEOUT_S = 30

#: How often the server checks, while a statement runs, that the node has not closed the connection (PostgreSQL
#: 14 and later, ``client_connection_check_interval``), milliseconds.
CLIENT_CHECK_MS = 10_000
CLIENT_CHECK_SINCE = 140000

#: The PostgreSQL drivers built on libpq, which take its connection parameters (``connect_timeout``, keepalives).
_LIBPQ_DRIVERS = frozenset({"psycopg", "psycopg2", "psycopg2cffi"})

log = logging.getLogger("cartera.crm_sync.sql")


class CreditorDatabaseError(CarteraError):
    """The creditor's database refused or failed a request; the message names the URL without its password."""


class StatementTimedOut(CreditorDatabaseError):
    """A statement ran past ``statement_timeout_s`` and the server cancelled it; the message names what it read."""


class DeadlinePassed(StatementTimedOut):
    """A statement did not answer within ``statement_timeout_s`` and :data:`DEADLINE_GRACE_S` and the node closed its
    connection (the server's cancel never came back); the message names what it read."""


#: PostgreSQL's SQLSTATE of a statement cancelled (by its statement timeout among others).
QUERY_CANCELED = "57014"
#: PostgreSQL's SQLSTATE of text that is not valid in the connection's encoding (``invalid byte sequence``).
CHARACTER_NOT_IN_REPERTOIRE = "22021"


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


def _type_name(kind: TypeEngine[Any]) -> str:
    try:
        return str(kind).lower()
    except Exception:  # a type SQLAlchemy cannot compile
        return type(kind).__name__.lower()


def _whole(kind: TypeEngine[Any]) -> bool:
    """A column of whole numbers: an integer, or a numeric of scale 0."""
    if isinstance(kind, Integer):
        return True
    return isinstance(kind, Numeric) and not isinstance(kind, Float) and kind.scale == 0


def _amount_problem(kind: TypeEngine[Any]) -> str | None:
    """Why a column of ``kind`` would store an amount other than it is (rounded, cut), or None. A column too
    narrow for an amount's digits (``numeric(6, 2)``, ``varchar(5)``) fails that export loudly instead, and
    passes; a text type that cuts silently (``"char"``) does not."""
    if isinstance(kind, Float):
        return "is floating point (binary: an amount is stored approximately)"
    if isinstance(kind, Integer):
        return "holds whole numbers only (350000.50 is stored rounded to 350001)"
    if isinstance(kind, Numeric):
        if kind.precision is None:
            return None  # numeric without a precision: any amount exactly
        scale = kind.scale or 0
        if scale == 0:
            return "holds whole numbers only (350000.50 is stored rounded to 350001)"
        if scale < AMOUNT_DECIMAL_PLACES:
            return f"keeps {scale} decimal{'s' if scale > 1 else ''} only (an amount is stored rounded)"
        return None
    if isinstance(kind, String):
        return _cut_problem(kind, _AMOUNT_CHARS)
    return "is not a number or text column"


def _seq_problem(kind: TypeEngine[Any]) -> str | None:
    return None if _whole(kind) else "is not of integers, and the activities' seq numbers are compared with it"


class CutText(String):
    """A PostgreSQL text type that SQLAlchemy reflects as a bare ``String`` and that cuts a longer value to its
    ``size`` bytes, silently (:data:`CUT_TEXT_TYPES`)."""

    def __init__(self, size: int) -> None:
        super().__init__()
        self.size = size


#: PostgreSQL's text types that keep a value's first bytes only, without an error: ``name`` (an identifier, 63
#: bytes) and ``"char"`` (one byte). SQLAlchemy reflects both as a bare ``String``, of no length.
CUT_TEXT_TYPES = {"name": 63, '"char"': 1}

#: The text types whose width SQLAlchemy's reflection gives (a length, or none: any text), by class: a bare
#: ``String`` (or another subclass) is a type it knows by no class of its own, whose width is unknown.
_KNOWN_TEXT = (CHAR, NCHAR, VARCHAR, NVARCHAR, Text, Enum, CutText)

#: The most bytes one character takes in the database's encoding (UTF-8, GB18030).
_CHAR_BYTES = 4


def _cut_problem(kind: String, chars: int, *, ascii: bool = True) -> str | None:
    """Why a text column of ``kind`` would cut a text of up to ``chars`` characters (ASCII ones, unless not
    ``ascii``) without an error, or None: a type of a few bytes (:data:`CUT_TEXT_TYPES`), or one whose width is
    unknown."""
    if isinstance(kind, CutText):
        size = chars if ascii else chars * _CHAR_BYTES
        if kind.size >= size:
            return None
        bytes_ = "1 byte" if kind.size == 1 else f"{kind.size} bytes"
        longest = f"{chars} characters" if ascii else f"{chars} characters (up to {size} bytes)"
        return f"holds {bytes_} only (a longer value is cut, without an error), and one has up to {longest}"
    if not isinstance(kind, _KNOWN_TEXT):
        return "is a text type whose width the node does not know (a value may be cut)"
    return None


def _text_problem(kind: TypeEngine[Any], chars: int, example: str, *, ascii: bool = True) -> str | None:
    """Why a column of ``kind`` would store a text of up to ``chars`` characters (such as ``example``; ASCII ones
    unless not ``ascii``) other than it is, or refuse it, or None. Text columns are known by their class: a bare
    ``String`` is PostgreSQL's ``name`` or ``"char"`` (which cut a value) or a type of unknown width."""
    if isinstance(kind, CHAR | NCHAR):
        return f"pads each value with spaces to its width ({example!r} is stored with spaces after it)"
    if not isinstance(kind, String):
        return f"is not a text column ({example!r} is not stored as it is)"
    cut = _cut_problem(kind, chars, ascii=ascii)
    if cut:
        return cut
    if kind.length is not None and kind.length < chars:
        return f"holds {kind.length} characters only, and one has up to {chars}"
    return None


#: The longest text of a timestamp, and of a date, as the database writes it into a text column (``DateStyle``
#: ISO): ``2026-03-02 13:30:45.123456+05:30``, ``2026-03-16``.
_INSTANT_CHARS = 32
_DATE_CHARS = 10


def _instant_problem(kind: TypeEngine[Any]) -> str | None:
    if isinstance(kind, DateTime):
        return None
    if isinstance(kind, Date):
        return "keeps the day only (the time of each call, SMS and promise is lost)"
    if isinstance(kind, Time):
        return "keeps the time of day only (the day is lost)"
    if isinstance(kind, String):
        return _text_problem(kind, _INSTANT_CHARS, "2026-03-02 13:30:45.123456+00")
    return "is not a timestamp or text column"


def _date_problem(kind: TypeEngine[Any]) -> str | None:
    if isinstance(kind, Date | DateTime):
        return None
    if isinstance(kind, String):
        return _text_problem(kind, _DATE_CHARS, "2026-03-16")
    return "is not a date, timestamp or text column"


def _call_problem(kind: TypeEngine[Any]) -> str | None:
    if isinstance(kind, Float):
        return "is floating point (a call's number may be stored approximately)"
    if isinstance(kind, Integer | Numeric):
        return None
    if isinstance(kind, String):
        return _text_problem(kind, _CALL_CHARS, "4321")
    return "is not a number or text column"


#: The longest text of each text field of an activity: its kind, a creditor's or portfolio code and an account
#: reference (``CODE_PATTERN``: 64 characters), a phone, an outcome (a payment's reference, whole) and an agent
#: (:data:`AGENT_MAX`) as the node's store keeps them, a call's number (a bigint's digits and sign), an amount (its
#: digits, point and sign). All are ASCII but an outcome's and an agent's.
_KIND_CHARS = max(len(kind.value) for kind in ActivityKind)
_CODE_CHARS = 64
_PHONE_CHARS = 20
_CALL_CHARS = 20
_AMOUNT_CHARS = AMOUNT_MAX_DIGITS + 2


@dataclass(frozen=True)
class _Expected:
    """What an export field's column must be: ``problem`` says why a column of a type would store the field's values
    other than they are (None: it keeps them), ``use`` what to use instead."""

    problem: Callable[[TypeEngine[Any]], str | None]
    use: str


def _text_field(what: str, chars: int, example: str, *, ascii: bool = True) -> _Expected:
    return _Expected(
        partial(_text_problem, chars=chars, example=example, ascii=ascii),
        f"{what} has up to {chars} characters; use text, or varchar({chars}) or wider",
    )


#: Every export field's expectation of its column (``check_export_columns``).
EXPECTED_COLUMNS: dict[str, _Expected] = {
    "seq": _Expected(_seq_problem, "it must be an integer column (bigint, integer, or a numeric of scale 0)"),
    "kind": _text_field("a kind", _KIND_CHARS, ActivityKind.PROMISE_TO_PAY.value),
    "at": _Expected(_instant_problem, "use timestamp with time zone (or timestamp), or text"),
    "creditor": _text_field("a creditor code", _CODE_CHARS, "BCO"),
    "portfolio": _text_field("a portfolio code", _CODE_CHARS, "TARJETAS"),
    "account_ref": _text_field("an account reference", _CODE_CHARS, "000123"),
    "phone": _text_field("a phone", _PHONE_CHARS, "+573001234567"),
    "outcome": _text_field("an outcome (a payment's reference)", PAYMENT_REF_MAX, "promise_to_pay", ascii=False),
    "amount": _Expected(
        _amount_problem,
        f"amounts have up to {AMOUNT_MAX_DIGITS - AMOUNT_DECIMAL_PLACES} digits and {AMOUNT_DECIMAL_PLACES} decimals; "
        f"use numeric({AMOUNT_MAX_DIGITS}, {AMOUNT_DECIMAL_PLACES}) (or another scale of {AMOUNT_DECIMAL_PLACES} or "
        "more), or text",
    ),
    "due_date": _Expected(_date_problem, "use date (or timestamp), or text"),
    "agent": _text_field("an agent", AGENT_MAX, "agente-07", ascii=False),
    "attempt": _Expected(_call_problem, "use bigint, or text"),
}


@dataclass(frozen=True)
class ColumnType:
    """A column's type as an export is judged by: a domain's base type (with the precision and scale, or length, the
    domain gives it, which SQLAlchemy's reflection drops), and its name for operators."""

    kind: TypeEngine[Any]
    shown: str


#: Each column of a table: its type's name (a domain's), the name of the type at the bottom with its modifiers (a
#: domain over a domain is followed to the type at the bottom, whose modifiers the innermost domain gives), and
#: whether it is a domain.
_CATALOG_TYPES = text(
    """
    WITH RECURSIVE walk (name, domain, type, modifier, depth) AS (
        SELECT a.attname, format_type(a.atttypid, a.atttypmod), a.atttypid, a.atttypmod, 0
        FROM pg_attribute a
        JOIN pg_class c ON c.oid = a.attrelid
        JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE c.relname = :table
          AND (n.nspname = CAST(:schema AS text) OR (CAST(:schema AS text) IS NULL AND pg_table_is_visible(c.oid)))
          AND a.attnum > 0 AND NOT a.attisdropped
        UNION ALL
        SELECT w.name, w.domain, t.typbasetype, t.typtypmod, w.depth + 1
        FROM walk w JOIN pg_type t ON t.oid = w.type
        WHERE t.typtype = 'd' AND w.depth < 100
    )
    SELECT w.name, w.domain, format_type(w.type, w.modifier), w.depth > 0
    FROM walk w JOIN pg_type t ON t.oid = w.type
    WHERE t.typtype <> 'd'
    """
)

_MODIFIERS = re.compile(r"\((\d+)(?:,(-?\d+))?\)")


def _base_type(kind: TypeEngine[Any], base: str) -> TypeEngine[Any]:
    """The SQLAlchemy type at the bottom of domain ``kind``, given the modifiers of its catalog name ``base``
    (``numeric(14,2)``, ``character varying(20)``); a bare ``String`` of a type that cuts text (``name``) as
    :class:`CutText`."""
    while isinstance(kind, DOMAIN):
        kind = kind.data_type
    if type(kind) is String and base in CUT_TEXT_TYPES:
        return CutText(CUT_TEXT_TYPES[base])
    found = _MODIFIERS.search(base)
    if found is None:
        return kind
    size, scale = found.groups()
    if isinstance(kind, Numeric) and not isinstance(kind, Float) and scale is not None:
        return NUMERIC(int(size), int(scale))
    if isinstance(kind, String) and not isinstance(kind, Enum):
        return type(kind)(int(size))
    return kind


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
    info = getattr(connection, "info", None)  # psycopg 3; psycopg2 has the version on the connection
    version: int = getattr(info, "server_version", None) or getattr(connection, "server_version", None) or 0
    if version >= CLIENT_CHECK_SINCE:
        # a statement the node gave up on (its deadline passed) ends on the server too, even one whose view
        # ignores its cancel: the server checks this often that the node is still there
        cursor.execute(f"SET client_connection_check_interval TO {CLIENT_CHECK_MS}")
    cursor.close()
    connection.commit()


class _Statements:
    """The deadlines of one request's statements on one connection: each statement is given ``seconds`` from its
    start (:meth:`next`); at a deadline the watchdog shuts the connection's socket down, which ends the statement
    (psycopg raises, the connection is dropped)."""

    def __init__(self, watchdog: DeadlineWatchdog, seconds: float, label: str) -> None:
        self._watchdog, self.seconds, self.label = watchdog, seconds, label
        self._fd: int | None = None
        self._deadline: RequestDeadline = watchdog.start(seconds, label)
        self._expired = False

    def watch(self, dbapi_connection: Any) -> None:
        """The request runs on this (new) connection: its socket is shut down at the deadline."""
        fileno = getattr(getattr(dbapi_connection, "driver_connection", dbapi_connection), "fileno", None)
        if fileno is None:  # not a network connection (SQLite)
            return
        self._fd = fileno()
        self._watch()

    def next(self) -> None:
        """The request's next statement starts now, with a deadline of its own."""
        self._expired |= self._deadline.finish()
        self._deadline = self._watchdog.start(self.seconds, self.label)
        self._watch()

    def finish(self) -> bool:
        """The request is over (again: no matter): whether a deadline of it passed."""
        self._expired |= self._deadline.finish()
        return self._expired

    def _watch(self) -> None:
        if self._fd is not None:
            self._deadline.watch(self._fd)


class CreditorDatabase:
    """One creditor database. On PostgreSQL no statement runs longer than ``statement_timeout_s`` seconds on the
    server, and none is waited on longer than that and :data:`DEADLINE_GRACE_S` by the node, whatever the server
    or the network does: each request gets a connection of its own (made within ``connect_timeout``), whose socket
    the node shuts down when a statement's deadline passes."""

    def __init__(self, url: str, statement_timeout_s: float = 300.0) -> None:
        self.statement_timeout_s = statement_timeout_s
        self.deadline_s = statement_timeout_s + DEADLINE_GRACE_S
        self.connect_timeout_s = max(2, min(CONNECT_TIMEOUT_S, math.ceil(self.deadline_s)))
        options: dict[str, Any] = {}
        parsed = make_url(url)
        if parsed.get_backend_name() == "postgresql":
            # no pool: a pooled connection's pre-ping ran before its deadline could watch it
            options["poolclass"] = NullPool
        if parsed.get_backend_name() == "postgresql" and parsed.get_driver_name() in _LIBPQ_DRIVERS:
            options["connect_args"] = {
                "connect_timeout": self.connect_timeout_s,
                "keepalives": 1,
                "keepalives_idle": 30,
                "keepalives_interval": 10,
                "keepalives_count": 3,
                "tcp_user_timeout": round(self.deadline_s * 1000),
            }
            if "client_encoding" not in parsed.query:
                # a SQL_ASCII database (a legacy ERP's) is otherwise read in SQL_ASCII, which psycopg returns as
                # bytes: its text is read as UTF-8 unless the URL names the encoding it is in
                options["connect_args"]["client_encoding"] = "UTF8"
        if "poolclass" not in options:
            options["pool_pre_ping"] = True
        self.engine = create_engine(url, hide_parameters=True, **options)
        if self.engine.url.password:
            register_secret(str(self.engine.url.password))
        self.display = self.engine.url.render_as_string(hide_password=True)
        self._watchdog = DeadlineWatchdog("crm_sync-sql-deadlines", log, database=self.display)
        self._connecting = threading.local()
        event.listen(self.engine, "do_connect", self._connect)
        if self.engine.dialect.name == "postgresql":
            timeout_ms = max(1, round(statement_timeout_s * 1000))
            event.listen(self.engine, "connect", partial(_session_settings, timeout_ms))

    def _connect(self, dialect: Any, _record: Any, cargs: Any, cparams: Any) -> Any:
        """A new connection (SQLAlchemy's ``do_connect``): watched by the deadline of the request making it from
        before its first statement (the session settings, the dialect's first queries)."""
        connection = dialect.connect(*cargs, **cparams)
        statements: _Statements | None = getattr(self._connecting, "statements", None)
        if statements is not None:
            statements.watch(connection)
        return connection

    def _statements(self, label: str) -> _Statements:
        return _Statements(self._watchdog, self.deadline_s, f"{self.display} {label}")

    def _connection(self, statements: _Statements) -> Connection:
        """A connection for a request, watched by its deadlines."""
        self._connecting.statements = statements
        try:
            return self.engine.connect()
        finally:
            self._connecting.statements = None

    def columns(self, name: str) -> dict[str, TypeEngine[Any]]:
        """The column names of table or view ``name`` and their types."""
        return {each: kind for each, (kind, _) in self._columns(name, bases=False).items()}

    def column_types(self, name: str) -> dict[str, ColumnType]:
        """The column names of table or view ``name`` and their types, a domain's as its base type, PostgreSQL's
        ``name`` and ``"char"`` (a bare ``String`` reflected) as :class:`CutText`."""
        found = self._columns(name, bases=True)
        return {
            each: ColumnType(kind, _type_name(kind)) if base is None else ColumnType(_base_type(kind, base[1]), base[0])
            for each, (kind, base) in found.items()
        }

    def _columns(self, name: str, *, bases: bool) -> dict[str, tuple[TypeEngine[Any], tuple[str, str] | None]]:
        """Each column's type and, with ``bases``, for a domain's column: ``domain NAME over BASE`` and its base
        type's catalog name; for a column SQLAlchemy reflects as a bare ``String``: its type's catalog name, twice."""
        schema, _, bare = name.rpartition(".")
        statements = self._statements(f"columns of {name}")
        found: dict[str, tuple[str, str]] = {}
        try:
            with self._connection(statements) as connection:
                types = {
                    info["name"]: info["type"] for info in inspect(connection).get_columns(bare, schema=schema or None)
                }
                if (
                    bases
                    and connection.dialect.name == "postgresql"
                    and any(isinstance(kind, DOMAIN) or type(kind) is String for kind in types.values())
                ):
                    statements.next()
                    for each, declared, base, domain in connection.execute(
                        _CATALOG_TYPES, {"table": bare, "schema": schema or None}
                    ):
                        if domain:
                            found[each] = (f"domain {declared} over {base}", base)
                        elif type(types.get(each)) is String:
                            found[each] = (declared, base)
        except NoSuchTableError:
            raise CreditorDatabaseError(f"{self.display}: no table or view {name!r}") from None
        except SQLAlchemyError as exc:
            raise self._error(exc, f"the columns of {name}", expired=statements.finish()) from None
        finally:
            statements.finish()
        return {each: (kind, found.get(each)) for each, kind in types.items()}

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
        if at is not None:
            position = at.describe(order).replace("after ", "at ", 1)
        else:
            position = after.describe(order) if after is not None else "from the start"
        statements = self._statements(f"view {view} {position}")
        try:
            with self._connection(statements) as connection:
                result = connection.execution_options(yield_per=STREAM_ROWS).execute(query)
                for count, row in enumerate(result, 1):
                    yield row
                    if count % STREAM_ROWS == 0:
                        statements.next()  # the next chunk's FETCH: a statement of its own
        except SQLAlchemyError as exc:
            raise self._error(exc, f"view {view}", expired=statements.finish(), position=position) from None
        finally:
            statements.finish()

    def probe(self, name: str, columns: Sequence[str]) -> None:
        """Read one row of ``columns`` from ``name`` as the sync reads them (each cell's text: a date
        ``'infinity'`` or past year 9999, which the driver cannot load, is read as the sync reads it): the
        connection, the table and its columns work. A failure names ``name``, and the column when one alone fails."""
        source = _table(name, columns)
        try:
            self._probe(name, [_cut(cell) for cell in source.c])
        except CreditorDatabaseError as exc:
            if isinstance(exc, StatementTimedOut) or len(source.c) < 2:
                raise
            for cell in source.c:  # which column: one statement each, on the failing path only
                try:
                    self._probe(name, [_cut(cell)], cell.name)
                except StatementTimedOut:
                    raise exc from None
                except CreditorDatabaseError as alone:
                    raise alone from None
            raise

    def _probe(self, name: str, cells: Sequence[ColumnElement[Any]], column_name: str | None = None) -> None:
        statements = self._statements(f"probe of {name}")
        try:
            with self._connection(statements) as connection:
                connection.execute(select(*cells).limit(1)).all()
        except SQLAlchemyError as exc:
            reading = name if column_name is None else f"{name}, column {column_name!r}"
            raise self._error(exc, reading, expired=statements.finish(), naming=True) from None
        finally:
            statements.finish()

    def check_export_columns(self, name: str, mapping: Mapping[str, str]) -> None:
        """Refuse an activities table a column of which, mapped to an export field (``mapping``: field → column),
        would store the field's values other than they are (:data:`EXPECTED_COLUMNS`): a call's instant in a
        ``date`` column kept as its day, a phone in a ``bigint`` without its ``+``, an amount rounded by an
        ``integer``, a seq column not of integers (every export's comparison with the seqs sent fails). A domain's
        column is judged by its base type."""
        types = self.column_types(name)
        problems = []
        for field, mapped in mapping.items():
            found = types.get(mapped)
            if found is None:  # check's probe names a missing column
                continue
            expected = EXPECTED_COLUMNS[field]
            why = expected.problem(found.kind)
            if why:
                problems.append(f"the {field} column {mapped!r} is {found.shown}, which {why}: {expected.use}")
        if problems:
            raise CreditorDatabaseError(f"{self.display}: table {name}: {'; '.join(problems)}")

    def insert_new(self, name: str, records: Sequence[Mapping[str, Any]], unique: str) -> int:
        """Insert the records whose ``unique`` value the table does not hold yet, in one transaction. Only the
        records' own values are looked up, :data:`LOOKUP_VALUES` a statement, and each one held is read back once
        (``DISTINCT``) as its text cut past the longest of them: the creditor's table may hold any number of rows
        of one value (the column need not be unique) and values of any length between the records' (a rejection's
        id is its page's sha256 and line, which the creditor can compute), none of which the node reads."""
        target = _table(name, list(records[0]))
        key = target.c[unique]
        values = list(dict.fromkeys(record[unique] for record in records))
        held = func.substr(cast(key, String), 1, max(len(str(value)) for value in values) + 1)
        statements = self._statements(f"insert into {name}")
        try:
            with self._connection(statements) as connection, connection.begin():
                stored: set[str] = set()
                for start in range(0, len(values), LOOKUP_VALUES):
                    if start:
                        statements.next()
                    lookup = select(held).where(key.in_(values[start : start + LOOKUP_VALUES])).distinct()
                    stored.update(connection.scalars(lookup))
                new = [record for record in records if str(record[unique]) not in stored]
                if new:
                    statements.next()
                    connection.execute(insert(target), new)
                statements.next()  # the commit
        except SQLAlchemyError as exc:
            raise self._error(exc, name, expired=statements.finish()) from None
        finally:
            statements.finish()
        return len(new)

    def dispose(self) -> None:
        """Drop the connections and end the deadlines' thread (the adapter stops)."""
        self.engine.dispose()
        self._watchdog.close()

    def _error(
        self,
        exc: SQLAlchemyError,
        reading: str | None = None,
        *,
        expired: bool = False,
        position: str | None = None,
        naming: bool = False,
    ) -> CreditorDatabaseError:
        """The error as one line naming the URL (without its password); a statement cut by the statement
        timeout, or by the node at its deadline (``expired``), also names what it read (``reading``, from
        ``position``) and the setting."""
        cause = getattr(exc, "orig", None) or exc
        text = str(cause).strip()
        first_line = text.splitlines()[0] if text else ""
        if len(first_line) > _ERROR_CHARS:  # the creditor's database writes it: a view can raise megabytes
            first_line = first_line[:_ERROR_CHARS] + f"... ({len(first_line)} characters)"
        where = f" [reading {position}]" if position else ""
        if type(cause).__name__ == "ConnectionTimeout":  # psycopg's connect_timeout
            return DeadlinePassed(
                f"{self.display}: no connection within connect_timeout = {self.connect_timeout_s} s (for "
                f"{reading or 'a statement'}): the server or the network to it did not answer: "
                f"{type(cause).__name__}: {first_line}{where}"
            )
        if expired:
            return DeadlinePassed(
                f"{self.display}: {reading or 'a statement'} did not answer within its deadline of "
                f"{self.deadline_s:g} s (statement_timeout_s = {self.statement_timeout_s:g} s and "
                f"{DEADLINE_GRACE_S:g} s of grace), so the node closed the connection: the database or the network "
                f"to it stopped answering, or the statement ignored its cancel: {type(cause).__name__}: "
                f"{first_line}{where}"
            )
        if getattr(cause, "sqlstate", None) == QUERY_CANCELED and "statement timeout" in first_line:
            return StatementTimedOut(
                f"{self.display}: {reading or 'a statement'} did not answer within statement_timeout_s = "
                f"{self.statement_timeout_s:g} s (the query was cancelled; a lock held on it, or a view too slow "
                f"to read): {type(cause).__name__}: {first_line}{where}"
            )
        what = f"{reading}: " if naming and reading else ""
        hint = ""
        if getattr(cause, "sqlstate", None) == CHARACTER_NOT_IN_REPERTOIRE:
            hint = (
                " (the database holds text not in the connection's encoding, UTF-8 unless the URL names another: a "
                "SQL_ASCII database's text in a legacy encoding is read with it named, ?client_encoding=WIN1252)"
            )
        return CreditorDatabaseError(f"{self.display}: {what}{type(cause).__name__}: {first_line}{hint}")
