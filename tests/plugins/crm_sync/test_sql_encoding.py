"""The ``sql`` crm_sync adapter on a creditor database in ``SQL_ASCII`` (a legacy ERP's): its text is read as UTF-8,
or in the encoding the URL's ``client_encoding`` names, never as bytes (round 21 A-F9: check and every sync raised a
bare TypeError naming nothing)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from pydantic import ValidationError

from cartera.plugins.crm_sync.sql.client import CreditorDatabaseError
from tests.plugins.crm_sync.test_sql import CREDITOR_SCHEMA, GOOD_ROWS, PASSWORD, insert_rows, make_sync, split
from tests.plugins.crm_sync.test_sql_types import promise

pytestmark = pytest.mark.postgres


@pytest.fixture
def ascii_url(postgres_url: str) -> Iterator[str]:
    """A fresh ``SQL_ASCII`` database holding the creditor's schema, on the server of ``postgres_url``."""
    server = postgres_url.rsplit("/", 1)[0]
    name = f"cartera_test_ascii_{uuid.uuid4().hex[:10]}"
    admin = sa.create_engine(f"{server}/postgres", isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(
            sa.text(f"CREATE DATABASE {name} ENCODING 'SQL_ASCII' LC_COLLATE 'C' LC_CTYPE 'C' TEMPLATE template0")
        )
    try:
        engine = ascii_engine(f"{server}/{name}")
        with engine.begin() as connection:
            for statement in CREDITOR_SCHEMA.split(";"):
                if statement.strip():
                    connection.execute(sa.text(statement))
        engine.dispose()
        yield f"{server}/{name}"
    finally:
        with admin.connect() as connection:
            connection.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def ascii_engine(url: str) -> sa.Engine:
    """The test's own connection to the database: UTF-8, so psycopg reads str, not bytes."""
    return sa.create_engine(url, connect_args={"client_encoding": "UTF8"})


def test_a_sql_ascii_database_is_read_and_written_as_utf8(tmp_path: Path, ascii_url: str) -> None:
    engine = ascii_engine(ascii_url)
    insert_rows(engine, GOOD_ROWS)
    sync = make_sync(tmp_path, ascii_url)
    result = sync.check()
    assert result.ok, result.detail
    (batch,) = sync.fetch()
    rows, _ = split(batch)
    assert rows[0].debtor_name == "Luis Fernando Gómez Rojas"
    sync.export([promise(1)])
    with engine.connect() as connection:
        assert connection.scalar(sa.text("SELECT telefono FROM crm.actividades")) == "+573001234567"
    engine.dispose()


def latin1_row(engine: sa.Engine) -> None:
    """A row whose name is in Windows-1252 (``Peña``: the byte 0xF1), as a legacy ERP writes into SQL_ASCII."""
    insert_rows(engine, [("BCO-1", "Pe", "3001234567", None, "1000", "COP", None, 1)])
    with engine.begin() as connection:
        connection.execute(sa.text("UPDATE crm.cartera SET nombre = E'Pe\\xf1a'"))


def test_text_not_in_utf8_fails_check_and_sync_naming_the_setting(tmp_path: Path, ascii_url: str) -> None:
    engine = ascii_engine(ascii_url)
    latin1_row(engine)
    engine.dispose()
    sync = make_sync(tmp_path, ascii_url)
    result = sync.check()
    assert not result.ok
    assert ascii_url.rsplit("/", 1)[1] in result.detail
    assert "client_encoding" in result.detail, result.detail
    with pytest.raises(CreditorDatabaseError, match="client_encoding"):
        list(sync.fetch())


def test_the_url_names_the_encoding_of_the_text(tmp_path: Path, ascii_url: str) -> None:
    engine = ascii_engine(ascii_url)
    latin1_row(engine)
    engine.dispose()
    sync = make_sync(tmp_path, f"{ascii_url}?client_encoding=WIN1252")
    result = sync.check()
    assert result.ok, result.detail
    (batch,) = sync.fetch()
    assert [row.debtor_name for row in split(batch)[0]] == ["Peña"]


@pytest.mark.abuse
@pytest.mark.parametrize(
    "query",
    [
        "client_encoding=SQL_ASCII",
        "client_encoding=sql_ascii",
        "client_encoding=sql-ascii",
        "client_encoding=SQLASCII",
        "client_encoding=UTF8&client_encoding=SQL_ASCII",
        "client_encoding=auto",  # libpq takes the node's locale, SQL_ASCII under C
    ],
)
def test_a_url_naming_sql_ascii_as_the_client_encoding_is_refused_naming_a_real_one(
    tmp_path: Path, ascii_url: str, query: str
) -> None:
    """The driver reads SQL_ASCII text as bytes: check raised a bare TypeError (round 23 A-F7), naming nothing. The
    setting is refused with the site's settings, saying to name the encoding the text is in."""
    with pytest.raises(ValidationError) as refused:
        make_sync(tmp_path, f"{ascii_url}?{query}")
    message = str(refused.value)
    assert "client_encoding" in message, message
    assert "SQL_ASCII" in message, message
    assert "WIN1252" in message, message
    assert PASSWORD not in message


def test_a_url_naming_a_legacy_encoding_still_passes(tmp_path: Path, ascii_url: str) -> None:
    for query in ("client_encoding=LATIN1", "client_encoding=win1252", "client_encoding=UTF8"):
        result = make_sync(tmp_path / query, f"{ascii_url}?{query}").check()
        assert result.ok, result.detail
