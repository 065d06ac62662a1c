"""Files imported or rejected but left in the creditor's inbox: one memory for every crm_sync plugin that moves
files (``csv``'s ``keep_files`` or a refused folder, ``sftp_csv``'s refused rename).

Such a file must not be fetched again while it is unchanged: applied again after a later delivery of its portfolio
it would undo that delivery (a withdrawal re-applied after a re-assignment). It is remembered by source, with an
identity string the plugin makes of what it can tell without reading the bytes (a local file's device, inode, size
and times; a remote file's name, size and time), the sha256 of the bytes imported or rejected, and which it was.
Looked up with another identity (the file changed: a new delivery) it is forgotten, unless the plugin tells it is
the same file still (its bytes hash to the remembered sha256: a chmod, a copy keeping the time), when its identity
is updated instead. A file its inbox no longer lists is forgotten once it has gone unlisted for ``FORGET_AFTER``
(seven days): each entry keeps when its inbox last listed it (``last_seen``, written at most once a day per entry),
so one empty listing (an unmounted share's empty mount point, a server listing its inbox empty once) forgets
nothing, and a file back in the listing is not fetched again. That, not the age of an entry, bounds the memory: a
file still waiting in the inbox is never dropped to make room (fetched again it would be applied again). A large
cap stays for safety only, and says so in the log when it bites.

The map is a small SQLite database in the plugin's data directory (``set-aside.sqlite3``, write-ahead log, one row
per source): a change writes that row's pages and is synced, a lookup reads one row, whatever the number of files
remembered (a creditor leaving 12,000 files in its inbox once cost gigabytes of rewrites of a JSON map). SQLite's
own locking keeps a node and a CLI process sharing the data directory from undoing each other's changes.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Collection, Iterable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Literal

from cartera.core.logs import event
from cartera.portfolio.files.reader import FileIdentity

SetAsideKind = Literal["imported", "rejected"]
SET_ASIDE_FILE = "set-aside.sqlite3"
SET_ASIDE_LIMIT = 100_000  #: files remembered at most; only for safety (the inbox's listing bounds it), logged
FORGET_AFTER = 7 * 86_400.0  #: seconds a file goes unlisted by its inbox before it is forgotten
_SEEN_EVERY = 86_400.0  #: an entry's last_seen is written at most this often (seconds) while it is listed
_BUSY_MS = 30_000  #: how long a change waits for another process's (a change is one row: milliseconds)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS files (
    source TEXT PRIMARY KEY,
    identity TEXT NOT NULL,
    sha256 TEXT NOT NULL,
    kind TEXT NOT NULL CHECK (kind IN ('imported', 'rejected')),
    last_seen REAL NOT NULL DEFAULT 0
)
"""


@dataclass(frozen=True)
class SetAsideFile:
    """A file left in the inbox: ``identity`` as the plugin tells it, ``sha256`` of its bytes, ``kind``."""

    identity: str
    sha256: str
    kind: SetAsideKind


def local_identity(identity: FileIdentity) -> str:
    """A local file's identity as remembered: ``device:inode:size:mtime_ns:ctime_ns``."""
    return f"{identity.device}:{identity.inode}:{identity.size}:{identity.mtime_ns}:{identity.ctime_ns}"


class SetAsideFiles:
    """The files of one plugin left in its creditor's inbox, by source (see the module)."""

    def __init__(
        self,
        path: Path,
        log: logging.Logger,
        *,
        limit: int = SET_ASIDE_LIMIT,
        forget_after: float = FORGET_AFTER,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.path = path
        self._forget_after = forget_after
        self._clock = clock  #: the node's system clock (seconds): last_seen survives restarts
        self._log = log
        self._limit = limit
        self._lock = threading.Lock()
        self._db: sqlite3.Connection | None = None

    def get(
        self, source: str, identity: str, same: Callable[[SetAsideFile], bool] | None = None
    ) -> SetAsideFile | None:
        """The file remembered for ``source`` while it has ``identity``. One remembered with another identity is
        forgotten and None returned (it changed: a new delivery), unless ``same`` tells it is the same file still
        (its bytes are those remembered): then its identity is updated and it is returned."""
        with self._lock:
            found = self._find(self._connection(), source)
        if found is None or found.identity == identity:
            return found
        if same is not None and same(found):
            updated = replace(found, identity=identity)
            with self._changing() as db:
                db.execute(
                    "UPDATE files SET identity = ?, last_seen = ?"
                    " WHERE source = ? AND identity = ? AND sha256 = ? AND kind = ?",
                    (identity, self._clock(), source, found.identity, found.sha256, found.kind),
                )
            return updated
        with self._changing() as db:  # unless another process remembered it anew meanwhile
            db.execute(
                "DELETE FROM files WHERE source = ? AND identity = ? AND sha256 = ? AND kind = ?",
                (source, found.identity, found.sha256, found.kind),
            )
        return None

    def remember(self, source: str, identity: str, sha256: str, kind: SetAsideKind) -> None:
        """Remember ``source`` as left in the inbox with ``identity`` (replacing what was remembered of it)."""
        with self._changing() as db:
            cursor = db.execute(
                "INSERT OR REPLACE INTO files (source, identity, sha256, kind, last_seen) VALUES (?, ?, ?, ?, ?)",
                (source, identity, sha256, kind, self._clock()),
            )
            if (cursor.lastrowid or 0) > self._limit:  # rows are numbered in order: fewer rows than that number
                self._cap(db)

    def forget(self, source: str) -> None:
        with self._changing() as db:
            db.execute("DELETE FROM files WHERE source = ?", (source,))

    def forget_unlisted(self, listed: Collection[str], *, prefix: str) -> None:
        """Forget the files of one inbox (sources starting with ``prefix``) it has not listed (``listed``) for
        ``forget_after``: archived, set aside or removed by hand, not merely missing from one listing (an unmounted
        share's empty mount point). The files listed are marked seen now, each at most once a day (one
        transaction, only when one is due)."""
        now = self._clock()
        with self._lock:
            stored = self._connection().execute("SELECT source, last_seen FROM files").fetchall()
        seen, gone = [], []
        for source, last_seen in stored:
            if not source.startswith(prefix):
                continue
            if source in listed:
                if not 0 <= now - last_seen < _SEEN_EVERY:  # due, or seen "in the future" (the clock went back)
                    seen.append((now, source))
            elif now - last_seen >= self._forget_after:
                gone.append((source, now - self._forget_after))
        if seen or gone:
            with self._changing() as db:
                db.executemany("UPDATE files SET last_seen = ? WHERE source = ?", seen)
                # unless remembered anew or seen meanwhile (another process)
                db.executemany("DELETE FROM files WHERE source = ? AND last_seen <= ?", gone)

    def take_over(self, prefix: str, renamed: Callable[[str], str | None]) -> None:
        """Give the files remembered under another name of one inbox the name they have under ``prefix`` now
        (``renamed``: that name, or None when the file is not of that inbox): the same folder named by another path
        (a symlink's either side, while the other path still reaches it) is the same inbox, its kept files not new
        deliveries, and its entries are forgotten by its listings again. One remembered under both names keeps the
        entry of its name now."""
        with self._lock:
            stored = [row[0] for row in self._connection().execute("SELECT source FROM files")]
        moved = [
            (new, source)
            for source in stored
            if not source.startswith(prefix) and (new := renamed(source)) is not None and new != source
        ]
        if moved:
            with self._changing() as db:
                db.executemany("UPDATE OR IGNORE files SET source = ? WHERE source = ?", moved)
                db.executemany("DELETE FROM files WHERE source = ?", [(source,) for _, source in moved])
            event(self._log, "crm_sync.set_aside.renamed", files=len(moved), prefix=prefix)

    def sources(self) -> dict[str, SetAsideFile]:
        """Every file remembered, oldest first."""
        with self._lock:
            rows = self._connection().execute("SELECT source, identity, sha256, kind FROM files ORDER BY rowid")
            return {source: SetAsideFile(identity, sha256, _kind(kind)) for source, identity, sha256, kind in rows}

    def close(self) -> None:
        with self._lock:
            if self._db is not None:
                self._db.close()
                self._db = None

    def upgrade(
        self,
        old: Iterable[Path],
        read: Callable[[Path], Iterable[tuple[str, SetAsideFile]]],
        current: Callable[[str], str | None] | None = None,
    ) -> None:
        """Take the files an earlier version remembered in ``old`` files (read by ``read``) into this map, then
        remove those files: a node upgraded in place fetches none of them again. Of several entries of one source
        the one whose identity is the file's ``current`` one (None: not known) is taken, else the last. A source
        remembered here already keeps its entry (an upgrade cut short and run again). An old file that cannot be
        read is kept and warned about (tried again at the next start)."""
        found = [path for path in old if path.exists()]
        if not found:
            return
        read_in: dict[str, list[SetAsideFile]] = {}
        readable = []
        for path in found:
            try:
                for source, remembered in read(path):
                    read_in.setdefault(source, []).append(remembered)
            except Exception as exc:  # whatever the old file holds (1e400, deep nesting): kept, warned about
                event(self._log, "crm_sync.set_aside.upgrade_failed", logging.WARNING, file=str(path), why=str(exc))
                continue
            readable.append(path)
        taken = {}
        for source, candidates in read_in.items():
            now = current(source) if current is not None else None
            taken[source] = next((entry for entry in candidates if entry.identity == now), candidates[-1])
        with self._changing() as db:
            db.executemany(
                "INSERT OR IGNORE INTO files (source, identity, sha256, kind, last_seen) VALUES (?, ?, ?, ?, ?)",
                [(source, kept.identity, kept.sha256, kept.kind, self._clock()) for source, kept in taken.items()],
            )
            self._cap(db)
        for path in readable:
            path.unlink(missing_ok=True)
        event(self._log, "crm_sync.set_aside.upgraded", files=len(taken), into=str(self.path))

    def _cap(self, db: sqlite3.Connection) -> None:
        """Forget the oldest files past the safety cap, saying so."""
        (count,) = db.execute("SELECT COUNT(*) FROM files").fetchone()
        if count <= self._limit:
            return
        db.execute(
            "DELETE FROM files WHERE rowid IN (SELECT rowid FROM files ORDER BY rowid LIMIT ?)", (count - self._limit,)
        )
        event(
            self._log,
            "crm_sync.set_aside.limit_reached",
            logging.ERROR,
            file=str(self.path),
            limit=self._limit,
            forgotten=count - self._limit,
        )

    @contextlib.contextmanager
    def _changing(self) -> Iterator[sqlite3.Connection]:
        """One change, under the write lock of the database (taken at once: no other process changes it between
        this change's reads and writes), committed and synced, or rolled back whole when anything fails (a full
        disk leaves the map as it was)."""
        with self._lock:
            db = self._connection()
            with _immediate(db):
                yield db

    def _find(self, db: sqlite3.Connection, source: str) -> SetAsideFile | None:
        row = db.execute("SELECT identity, sha256, kind FROM files WHERE source = ?", (source,)).fetchone()
        return None if row is None else SetAsideFile(row[0], row[1], _kind(row[2]))

    def _connection(self) -> sqlite3.Connection:
        """The database, opened (and made) at first use. One that is not a database of these files (not SQLite,
        corrupt, or its ``files`` of another shape) is warned about, kept aside under a ``.unreadable`` name of its
        own (an earlier copy is never overwritten), and started afresh. Any other failure (a full disk, no file
        descriptor left, an I/O error, a lock held too long) is raised, the file untouched: the operation fails
        and the next one opens it again (moved aside, every file remembered would be fetched and applied again)."""
        if self._db is not None:
            return self._db
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self._db = self._open()
        except (_NotTheseFiles, sqlite3.DatabaseError) as exc:
            if not _not_these_files(exc):
                raise
            aside = self._aside_name()
            event(
                self._log,
                "crm_sync.set_aside.unreadable",
                logging.WARNING,
                file=str(self.path),
                to=aside,
                why=str(exc),
            )
            for suffix in ("", "-wal", "-shm"):
                with contextlib.suppress(FileNotFoundError):
                    os.replace(f"{self.path}{suffix}", f"{aside}{suffix}")
            self._db = self._open()
        return self._db

    def _aside_name(self) -> str:
        """A name no earlier copy moved aside has (nor its write-ahead log): ``.unreadable-<UTC time>-<pid>``."""
        stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(time.time()))
        base = f"{self.path}.unreadable-{stamp}-{os.getpid()}"
        for number in itertools.count(1):
            name = base if number == 1 else f"{base}-{number}"
            if not any(os.path.lexists(f"{name}{suffix}") for suffix in ("", "-wal", "-shm")):
                return name
        raise AssertionError("unreachable")

    def _open(self) -> sqlite3.Connection:
        db = sqlite3.connect(self.path, timeout=_BUSY_MS / 1000, isolation_level=None, check_same_thread=False)
        try:
            db.execute(f"PRAGMA busy_timeout = {_BUSY_MS}")
            db.execute("PRAGMA journal_mode = WAL")
            db.execute("PRAGMA synchronous = FULL")  # a file remembered survives a power cut
            db.execute(_SCHEMA)
            _check_shape(db)
            self._add_last_seen(db)
            db.execute("SELECT source, identity, sha256, kind, last_seen FROM files LIMIT 1").fetchall()
        except BaseException:
            db.close()
            raise
        return db

    def _add_last_seen(self, db: sqlite3.Connection) -> None:
        """Give a map made by an earlier version (no ``last_seen``) the column, every entry seen now: nothing is
        lost, and nothing is forgotten before ``forget_after`` from the upgrade."""
        if _has_last_seen(db):
            return
        with _immediate(db):
            if not _has_last_seen(db):  # another process may have added it meanwhile
                db.execute(f"ALTER TABLE files ADD COLUMN last_seen REAL NOT NULL DEFAULT {float(self._clock())!r}")


@contextlib.contextmanager
def _immediate(db: sqlite3.Connection) -> Iterator[None]:
    """A transaction holding the database's write lock from its start, committed, or rolled back whole."""
    db.execute("BEGIN IMMEDIATE")
    try:
        yield
        db.execute("COMMIT")
    except BaseException:
        if db.in_transaction:
            with contextlib.suppress(sqlite3.Error):
                db.execute("ROLLBACK")
        raise


class _NotTheseFiles(Exception):
    """The database holds a ``files`` table of another shape: not a map of these files."""


_COLUMNS = frozenset({"source", "identity", "sha256", "kind"})  #: and last_seen, which an earlier version lacks
_NOT_A_DATABASE = frozenset({sqlite3.SQLITE_NOTADB, sqlite3.SQLITE_CORRUPT})


def _check_shape(db: sqlite3.Connection) -> None:
    """Raise :class:`_NotTheseFiles` unless ``files`` is a table with this map's columns."""
    kind = db.execute("SELECT type FROM sqlite_master WHERE name = 'files'").fetchone()
    missing = _COLUMNS - {row[1] for row in db.execute("PRAGMA table_info(files)")}
    if kind != ("table",) or missing:
        raise _NotTheseFiles(f"files is not a table of this map (missing {', '.join(sorted(missing)) or 'none'})")


def _not_these_files(exc: BaseException) -> bool:
    """Whether ``exc``, raised opening the map, says the file is not a map of these files (not a database,
    corrupt, of another shape), not that it could not be opened or read now (CANTOPEN, FULL, IOERR, BUSY...)."""
    if isinstance(exc, _NotTheseFiles):
        return True
    code = getattr(exc, "sqlite_errorcode", None)
    return isinstance(code, int) and code & 0xFF in _NOT_A_DATABASE  # the primary code of an extended one


def _has_last_seen(db: sqlite3.Connection) -> bool:
    return any(row[1] == "last_seen" for row in db.execute("PRAGMA table_info(files)"))


def _kind(value: object) -> SetAsideKind:
    if value == "imported":
        return "imported"
    if value == "rejected":
        return "rejected"
    raise ValueError(f"unknown kind {value!r}")
