"""Engine, sessions and migrations. SQLite file by default; any SQLAlchemy URL (PostgreSQL) by config."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, OperationalError
from sqlalchemy.orm import Session, sessionmaker

from cartera.core.errors import CarteraError, ConfigError

MIGRATIONS = Path(__file__).with_name("migrations")
#: The execution option of :meth:`Database.reading`'s connections.
READING = "cartera_reading"


class Database:
    def __init__(self, url: str) -> None:
        try:
            parsed = make_url(url)
        except ArgumentError:
            raise ConfigError(f"database URL is not valid: {url!r}") from None
        connect_args: dict[str, Any] = {}
        if parsed.get_backend_name() == "sqlite":
            if parsed.database and parsed.database != ":memory:":
                Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
            connect_args = {"timeout": 30, "check_same_thread": False}
        self.url = parsed
        self.engine: Engine = create_engine(parsed, connect_args=connect_args, pool_pre_ping=True)
        if parsed.get_backend_name() == "sqlite":
            event.listen(self.engine, "connect", _sqlite_connect)
            event.listen(self.engine, "begin", _sqlite_begin)
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)
        self._readers = sessionmaker(self.engine.execution_options(**{READING: True}), expire_on_commit=False)
        #: Set while a node holds its site's lease (:mod:`cartera.core.store.site_lease`): checks the lease's
        #: fencing token in a session, raising when another node took the site over.
        self.fence_check: Callable[[Session], None] | None = None

    @property
    def display_url(self) -> str:
        return self.url.render_as_string(hide_password=True)

    def migrate(self, revision: str = "head") -> None:
        """Bring the schema to the newest revision (idempotent; run at every start), or to ``revision``."""
        from alembic import command  # alembic (with mako) only where migrations run
        from alembic.config import Config as AlembicConfig

        cfg = AlembicConfig()
        cfg.set_main_option("script_location", str(MIGRATIONS))
        sqlite = self.url.get_backend_name() == "sqlite"
        try:
            with self.engine.connect() as connection:
                if sqlite:  # SQLite rebuilds a table to alter it: see _sqlite_foreign_keys
                    _sqlite_foreign_keys(connection, on=False)
                try:
                    with connection.begin():
                        cfg.attributes["connection"] = connection
                        command.upgrade(cfg, revision)
                        if sqlite:
                            _sqlite_check_foreign_keys(connection)
                finally:
                    if sqlite:
                        _sqlite_foreign_keys(connection, on=True)
        except OperationalError as exc:
            raise CarteraError(f"cannot open the store {self.display_url}: {exc.orig}") from None

    @contextmanager
    def session(self) -> Iterator[Session]:
        """A unit of work: committed when the block ends, rolled back on an exception."""
        with self._sessions() as session, session.begin():
            yield session

    def fence(self, session: Session) -> None:
        """Before an action that must happen once (a call placed, a text sent, a recording deleted, an export)
        commits in ``session``: refused when this node's lease on the site was taken over (no lease: no check)."""
        if self.fence_check is not None:
            self.fence_check(session)

    @contextmanager
    def reading(self) -> Iterator[Session]:
        """A unit of work that only reads. On SQLite it takes no write lock, so it never waits for a writer (a long
        import): WAL lets it read the last committed state; a write in it fails ("readonly database")."""
        with self._readers() as session, session.begin():
            yield session

    def dispose(self) -> None:
        self.engine.dispose()


def _sqlite_connect(dbapi_connection: Any, _record: Any) -> None:
    """pysqlite commits implicitly before DDL; take transactions over so a migration is all or nothing
    (SQLite's DDL is transactional) and a kill during the first start leaves no half-made schema."""
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


def _sqlite_foreign_keys(connection: Connection, *, on: bool) -> None:
    """Foreign keys on or off for this connection. A migration turns them off while it runs, as SQLite's own
    procedure for altering a table says: dropping the old copy of a table that other rows refer to fails with
    them on. The pragma is a no-op inside a transaction, so it goes to the driver before SQLAlchemy begins one."""
    connection.connection.dbapi_connection.execute(f"PRAGMA foreign_keys={'ON' if on else 'OFF'}")  # type: ignore[union-attr]


def _sqlite_check_foreign_keys(connection: Connection) -> None:
    """Refuse (and so roll back) a migration that left a row referring to nothing."""
    broken = connection.exec_driver_sql("PRAGMA foreign_key_check").all()
    if broken:
        raise CarteraError(f"migration left rows referring to nothing (table, rowid, parent): {broken[:5]}")


def _sqlite_begin(connection: Connection) -> None:
    """A reader (:meth:`Database.reading`) begins deferred and query-only: it waits for no writer.

    Any other unit of work begins IMMEDIATE: it takes the write lock up front (waiting up to the busy timeout).
    A deferred transaction that reads, then writes after another connection committed, fails at once with
    "database is locked" (WAL cannot upgrade a stale snapshot); and the compliance gate's count-then-insert
    needs writers in turn. The pragma is per connection: every begin sets it, so a pooled one never keeps it."""
    reading = bool(connection.get_execution_options().get(READING))
    connection.exec_driver_sql(f"PRAGMA query_only={'ON' if reading else 'OFF'}")
    connection.exec_driver_sql("BEGIN" if reading else "BEGIN IMMEDIATE")
