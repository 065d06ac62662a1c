"""The ``sql`` crm_sync adapter's inserts (activities, rejections) look up only the ids they insert, and read back
at most one short text for each: never the creditor's column whole (round 21 A-F16: rejection ids of 10 MB each
stored between two of the report's were all read into the node, 23 MB stored held 3.9 GB)."""

from __future__ import annotations

import tracemalloc
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from cartera.plugins.crm_sync.sql.client import LOOKUP_VALUES
from cartera.plugins.crm_sync.sql.plugin import SqlCrmSync
from tests.plugins.crm_sync import test_sql
from tests.plugins.crm_sync.test_sql import GOOD_ROWS, exported, insert_rows, make_sync, split
from tests.plugins.crm_sync.test_sql_types import promise

pytestmark = [pytest.mark.postgres, pytest.mark.abuse]

creditor_db = test_sql.creditor_db  # the fixture: the creditor's schema in a fresh database


def counting(sync: SqlCrmSync, table: str) -> list[int]:
    """The rows each SELECT from ``table`` of the adapter's sessions returns, in order, from now on."""
    rows_read: list[int] = []

    def after(_connection: Any, cursor: Any, statement: str, *_: Any) -> None:
        if statement.lstrip().upper().startswith("SELECT") and f"FROM {table}" in statement:
            rows_read.append(cursor.rowcount)

    sa.event.listen(sync.db.engine, "after_cursor_execute", after)
    return rows_read


def test_a_rejection_report_reads_back_none_of_the_creditors_long_ids(
    tmp_path: Path, postgres_url: str, creditor_db: sa.Engine
) -> None:
    """The report's ids are its page's sha256 and line: the creditor can compute them and store ids sorting between
    two of them, each of many MB (compressed to a few KB by the server)."""
    pesos = ("BCO-000100", "Eva Ruiz", "3001234568", None, "1000", "pesos", None, 0)
    insert_rows(creditor_db, [pesos, *GOOD_ROWS])
    sync = make_sync(tmp_path, postgres_url, rejections_table="crm.rechazos")
    (batch,) = sync.fetch()
    _, errors = split(batch)
    assert [error.line for error in errors] == [2, 6]
    prefix = batch.content_sha256[:16]
    with creditor_db.begin() as connection:
        connection.execute(sa.text("ALTER TABLE crm.rechazos DROP CONSTRAINT rechazos_pkey"))  # need not be a key
        connection.execute(
            sa.text(
                "INSERT INTO crm.rechazos (rechazo) SELECT :prefix || '-3' || g || repeat('x', 10000000) "
                "FROM generate_series(1, 5) g"
            ),
            {"prefix": prefix},
        )
    rows_read = counting(sync, "crm.rechazos")
    tracemalloc.start()
    try:
        sync.report_rejections(batch, errors)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 8_000_000, f"{peak} bytes held for a report of 2 rows"
    assert rows_read, "the report looked its ids up"
    assert max(rows_read) <= len(errors), rows_read
    with creditor_db.connect() as connection:
        ids = connection.scalars(sa.text("SELECT rechazo FROM crm.rechazos WHERE length(rechazo) < 100")).all()
        assert connection.scalar(sa.text("SELECT count(*) FROM crm.rechazos")) == 7
    assert sorted(ids) == [f"{prefix}-2", f"{prefix}-6"]
    rows_read.clear()
    sync.report_rejections(batch, errors)  # sent again after a crash before acknowledge: inserts nothing
    assert max(rows_read) <= len(errors), rows_read
    with creditor_db.connect() as connection:
        assert connection.scalar(sa.text("SELECT count(*) FROM crm.rechazos")) == 7


def test_an_export_reads_back_one_row_per_seq_it_sends(
    tmp_path: Path, postgres_url: str, creditor_db: sa.Engine
) -> None:
    """A seq column need not be unique: 20,000 rows of one seq inside the export's range were all read back."""
    with creditor_db.begin() as connection:
        connection.execute(sa.text("ALTER TABLE crm.actividades DROP CONSTRAINT actividades_pkey"))
        connection.execute(
            sa.text("INSERT INTO crm.actividades (secuencia, tipo, fecha_hora) SELECT 5, 'sms', now() FROM "
                    "generate_series(1, 20000)")
        )  # fmt: skip
    sync = make_sync(tmp_path, postgres_url)
    rows_read = counting(sync, "crm.actividades")
    sync.export([promise(1), promise(5), promise(9)])
    assert max(rows_read) <= 3, rows_read
    assert sorted(set(exported(creditor_db))) == [1, 5, 9]
    assert exported(creditor_db).count(5) == 20000, "seq 5 was in the table: not inserted again"


def test_an_export_of_more_seqs_than_one_lookup_takes_inserts_each_missing_one_once(
    tmp_path: Path, postgres_url: str, creditor_db: sa.Engine
) -> None:
    with creditor_db.begin() as connection:
        connection.execute(
            sa.text("INSERT INTO crm.actividades (secuencia, tipo, fecha_hora) SELECT g, 'sms', now() FROM "
                    "generate_series(990, 2010) g")
        )  # fmt: skip
    sync = make_sync(tmp_path, postgres_url)
    rows_read = counting(sync, "crm.actividades")
    sync.export([promise(seq) for seq in range(1, LOOKUP_VALUES * 2 + 501)])
    assert rows_read == [11, 1000, 10], "three lookups, each reading back the seqs it sent that the table held"
    assert exported(creditor_db) == list(range(1, LOOKUP_VALUES * 2 + 501))
