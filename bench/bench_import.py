"""Creditor assignment import throughput and memory, on a generated file as spreadsheets export it.

The file: Windows-1252 (accented names), ``;`` delimited, decimal commas with thousands dots, two phones per
row in mixed national formats, a currency column. Every measurement runs in its own process (peak RSS is per
process):

- Cartera: ``csv`` plugin's reader + :class:`cartera.portfolio.importer.AssignmentImporter` (header check, decoding,
  amounts, E.164 normalisation, upserts, quarantine), into SQLite and into PostgreSQL;
- the SQLite ceiling: ``csv.reader`` on the same file and raw ``sqlite3.executemany`` of the same rows into
  the same tables and indexes (debtors, accounts, phones), no validation, on a connection of the store's own
  engine (its pragmas: WAL, ``synchronous=NORMAL``, foreign keys enforced, as Cartera's import pays them);
- the PostgreSQL ceiling: the same rows sent with ``COPY`` (psycopg) into the same tables.

Usage: ``PYTHONPATH=. .venv/bin/python bench/bench_import.py [--rows 1000000] [--small 100000]
[--pg-rows 1000000] [--no-postgres] [--write-results]``. PostgreSQL: ``CARTERA_TEST_PG`` (default
``postgresql+psycopg://postgres@127.0.0.1:5432/postgres``), a scratch database is created and dropped.
"""

from __future__ import annotations

import argparse
import csv
import gc
import json
import os
import platform
import random
import resource
import sqlite3
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from cartera.core.clock import SimulatedClock
from cartera.core.hooks import load_plugins
from cartera.core.store.database import Database
from cartera.core.testing.context import CapturingContext
from cartera.plugins.crm_sync.csv_dir.config import CsvDirConfig
from cartera.plugins.crm_sync.csv_dir.plugin import CsvDirSync
from cartera.portfolio.importer import AssignmentImporter

HEADER = "cuenta;nombre;telefono1;telefono2;saldo;moneda\r\n"
FIRST = ["José", "María", "Begoña", "Andrés", "Sofía", "Iñaki", "Luis", "Ana", "Jesús", "Mónica"]
LAST = ["Muñoz", "Gómez", "Pérez", "Núñez", "Hernández", "Rodríguez", "Castaño", "Peña", "Álvarez", "Díaz"]
MOBILE = ["300", "301", "304", "310", "311", "313", "315", "316", "318", "320", "321", "350"]
NOW = datetime(2026, 3, 2, 13, 30, tzinfo=UTC)
PG_ADMIN = os.environ.get("CARTERA_TEST_PG", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres")
RESULTS = Path(__file__).with_name("RESULTS.md")


def generate(path: Path, rows: int, seed: int = 2026) -> None:
    """``rows`` assignment rows in Windows-1252, written in chunks."""
    rng = random.Random(seed)
    with path.open("w", encoding="windows-1252", newline="") as out:
        out.write(HEADER)
        lines: list[str] = []
        for index in range(rows):
            mobile = f"{rng.choice(MOBILE)}{rng.randrange(10**7):07d}"
            fixed = f"60{rng.choice('1245')}{rng.randrange(2, 8)}{rng.randrange(10**6):06d}"
            mobile = rng.choice([mobile, f"{mobile[:3]} {mobile[3:6]} {mobile[6:]}", f"+57 {mobile}"])
            if index % 1000 == 999:  # one row in a thousand has a phone nobody can dial: quarantined
                mobile = "12-AB"
            cents = rng.randrange(10_000_00, 50_000_000_00)
            pesos = f"{cents // 100:,}".replace(",", ".")
            name = f"{rng.choice(FIRST)} {rng.choice(LAST)} {rng.choice(LAST)}"
            lines.append(f"BCO-{index:08d};{name};{mobile};{fixed};{pesos},{cents % 100:02d};COP\r\n")
            if len(lines) == 10_000:
                out.writelines(lines)
                lines.clear()
        out.writelines(lines)


def cartera(path: Path, url: str) -> dict[str, Any]:
    db = Database(url)
    db.migrate()
    config = CsvDirConfig.model_validate(
        {"inbox": path.parent, "outbox": path.parent / "out", "creditor": "BCO", "portfolio": "TARJETAS"}
    )
    sync = CsvDirSync(config, CapturingContext(path.parent / "data", clock=SimulatedClock(NOW, 1.0)))
    importer = AssignmentImporter("bench", "CO", db, SimulatedClock(NOW, 1.0), load_plugins(entry_points=False))
    started, cpu = time.perf_counter(), time.process_time()
    report = importer.import_batch(sync.read_file(path), actor="bench")
    result = {"seconds": time.perf_counter() - started, "cpu_seconds": time.process_time() - cpu}
    db.dispose()
    return result | {"counts": report.counts()}


def _raw_rows(path: Path) -> Iterator[list[str]]:
    with path.open(encoding="windows-1252", newline="") as stream:
        reader = csv.reader(stream, delimiter=";")
        next(reader)
        yield from reader


def _prepared(path: Path, chunk: int = 10_000) -> Iterator[tuple[list[tuple[Any, ...]], ...]]:
    """The same rows as debtors, accounts and phones tuples (ids assigned here), a chunk at a time."""
    debtors: list[tuple[Any, ...]] = []
    accounts: list[tuple[Any, ...]] = []
    phones: list[tuple[Any, ...]] = []
    stamp = f"{NOW:%Y-%m-%d %H:%M:%S.%f}"  # as the store writes it (naive UTC), not adapted per row
    for number, (ref, name, phone1, phone2, amount, currency) in enumerate(_raw_rows(path), 1):
        debtors.append((number, name))
        cents = int(amount.replace(".", "").replace(",", ""))
        accounts.append((number, 1, ref, number, cents, currency, "active", stamp))
        phones.append((number, phone1, 0, False, False, False))
        phones.append((number, phone2, 1, False, False, False))
        if len(debtors) == chunk:
            yield debtors, accounts, phones
            debtors, accounts, phones = [], [], []
    if debtors:
        yield debtors, accounts, phones


def _seed_portfolio(execute: Callable[[str], object]) -> None:
    execute("INSERT INTO creditors (id, code) VALUES (1, 'BCO')")
    execute("INSERT INTO portfolios (id, creditor_id, code, site, country) VALUES (1, 1, 'TARJETAS', 'bench', 'CO')")


def sqlite_ceiling(path: Path, url: str) -> dict[str, Any]:
    """Raw ``executemany`` on a connection of the store's own engine: the node's pragmas (WAL,
    ``synchronous=NORMAL``, foreign keys on) and the same tables and indexes; the cyclic collector is off
    while it runs, as it is during Cartera's chunks."""
    store = Database(url)
    store.migrate()
    connection = store.engine.raw_connection().driver_connection
    assert isinstance(connection, sqlite3.Connection)
    started, cpu = time.perf_counter(), time.process_time()
    gc.disable()
    connection.execute("BEGIN IMMEDIATE")
    _seed_portfolio(connection.execute)
    for debtors, accounts, phones in _prepared(path):
        connection.executemany("INSERT INTO debtors (id, name) VALUES (?, ?)", debtors)
        connection.executemany(
            "INSERT INTO accounts (id, portfolio_id, ref, debtor_id, balance, currency, status, updated_at) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            accounts,
        )
        connection.executemany(
            "INSERT INTO phones (debtor_id, e164, position, do_not_call, do_not_text, invalid) "
            "VALUES (?, ?, ?, ?, ?, ?)",
            phones,
        )
    connection.execute("COMMIT")
    gc.enable()
    return {"seconds": time.perf_counter() - started, "cpu_seconds": time.process_time() - cpu}


def postgres_ceiling(path: Path, url: str) -> dict[str, Any]:
    import psycopg

    Database(url).migrate()
    dsn = sa.make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)
    started, cpu = time.perf_counter(), time.process_time()
    with psycopg.connect(dsn) as connection, connection.cursor() as cursor:
        _seed_portfolio(cursor.execute)
        for debtors, accounts, phones in _prepared(path):
            for table, columns, rows in (
                ("debtors", "id, name", debtors),
                ("accounts", "id, portfolio_id, ref, debtor_id, balance, currency, status, updated_at", accounts),
                ("phones", "debtor_id, e164, position, do_not_call, do_not_text, invalid", phones),
            ):
                with cursor.copy(f"COPY {table} ({columns}) FROM STDIN") as copy:
                    for row in rows:
                        copy.write_row(row)
    return {"seconds": time.perf_counter() - started, "cpu_seconds": time.process_time() - cpu}


@contextmanager
def scratch_postgres() -> Iterator[str]:
    admin = sa.create_engine(PG_ADMIN, isolation_level="AUTOCOMMIT")
    name = f"cartera_bench_{uuid.uuid4().hex[:8]}"
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    try:
        yield PG_ADMIN.rsplit("/", 1)[0] + f"/{name}"
    finally:
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


CHILDREN: dict[str, Callable[[Path, str], dict[str, Any]]] = {
    "cartera": cartera,
    "sqlite-ceiling": sqlite_ceiling,
    "postgres-ceiling": postgres_ceiling,
}


def child(name: str, path: Path, url: str) -> None:
    result = CHILDREN[name](path, url)
    result["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps(result))


def measure(name: str, path: Path, url: str) -> dict[str, Any]:
    done = subprocess.run(
        [sys.executable, __file__, "--child", name, "--file", str(path), "--url", url],
        capture_output=True,
        text=True,
        check=False,
        env=os.environ | {"PYTHONPATH": str(Path(__file__).resolve().parents[1])},
    )
    if done.returncode != 0:
        raise RuntimeError(f"{name} failed: {done.stderr[-2000:]}")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def run(args: argparse.Namespace, work: Path) -> list[tuple[str, int, dict[str, Any]]]:
    results: list[tuple[str, int, dict[str, Any]]] = []
    files: dict[int, Path] = {}
    for rows in sorted({args.small, args.rows, *([] if args.no_postgres else [args.pg_rows])}):
        files[rows] = work / f"asignacion-{rows}.csv"
        generate(files[rows], rows)
    for rows in (args.small, args.rows):
        for name in ("cartera", "sqlite-ceiling"):
            url = f"sqlite:///{work / f'{name}-{rows}.db'}"
            results.append((f"{name} sqlite", rows, measure(name, files[rows], url)))
            print(results[-1], flush=True)
    if not args.no_postgres:
        for name in ("cartera", "postgres-ceiling"):
            with scratch_postgres() as url:
                results.append((f"{name} postgresql", args.pg_rows, measure(name, files[args.pg_rows], url)))
                print(results[-1], flush=True)
    return results


def markdown(results: list[tuple[str, int, dict[str, Any]]], args: argparse.Namespace) -> str:
    rate = {(name, rows): rows / r["cpu_seconds" if "sqlite" in name else "seconds"] for name, rows, r in results}
    lines = [
        "## Creditor assignment import (`bench/bench_import.py`, issue 7)",
        "",
        f"{datetime.now(UTC):%Y-%m-%d}, `PYTHONPATH=. .venv/bin/python bench/bench_import.py --rows {args.rows} "
        f"--small {args.small} --pg-rows {args.pg_rows}`, {platform.machine()} {os.cpu_count()} CPUs shared with "
        "other jobs, Python " + platform.python_version() + ".",
        "File: Windows-1252, `;`, decimal commas with thousands dots, 2 phones per row in mixed national formats.",
        "Cartera = csv plugin reader + AssignmentImporter (decoding, header check, amounts, E.164, upserts).",
        "",
        "SQLite rates are per CPU second of the measuring process (SQLite runs in it; the shared machine makes wall "
        "time noisy). PostgreSQL rates are per wall second (the server's work is outside the process).",
        "",
        "| run | rows | wall s | CPU s | rows/s | vs ceiling | peak RSS MB |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for name, rows, result in results:
        ceiling_name = "sqlite-ceiling sqlite" if "sqlite" in name else "postgres-ceiling postgresql"
        ratio = rate[(name, rows)] / rate[(ceiling_name, rows)] if (ceiling_name, rows) in rate else None
        lines.append(
            f"| {name} | {rows:,} | {result['seconds']:.1f} | {result['cpu_seconds']:.1f} | "
            f"{rate[(name, rows)]:,.0f} | "
            f"{'' if ratio is None else f'{ratio:.2f}x'} | {result['peak_rss_mb']:.0f} |"
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--small", type=int, default=100_000)
    parser.add_argument("--pg-rows", type=int, default=1_000_000)
    parser.add_argument("--no-postgres", action="store_true")
    parser.add_argument("--write-results", action="store_true")
    parser.add_argument("--child", choices=sorted(CHILDREN))
    parser.add_argument("--file", type=Path)
    parser.add_argument("--url")
    args = parser.parse_args()
    if args.child:
        child(args.child, args.file, args.url)
        return
    with tempfile.TemporaryDirectory(prefix="cartera-bench-import-") as work:
        results = run(args, Path(work))
    table = markdown(results, args)
    print(table)
    if args.write_results:
        with RESULTS.open("a", encoding="utf-8") as out:
            out.write("\n" + table)


if __name__ == "__main__":
    main()
