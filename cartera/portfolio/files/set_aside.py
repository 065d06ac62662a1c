"""Files imported or rejected but left in the creditor's inbox: one memory for every crm_sync plugin that moves
files (``csv``'s ``keep_files`` or a refused archive folder, ``sftp_csv``'s refused archive rename).

Such a file must not be fetched again while it is unchanged: applied again after a later delivery of its portfolio
it would undo that delivery (a withdrawal re-applied after a re-assignment). It is remembered by source, with an
identity string the plugin makes of what it can tell without reading the bytes (a local file's device, inode, size
and times; a remote file's name, size and time), the sha256 of the bytes imported or rejected, and which it was.
Looked up with another identity (the file changed: a new delivery) it is forgotten; so is every file of an inbox
that the inbox no longer lists. That, not the age of an entry, bounds the memory: a file still waiting in the inbox
is never dropped to make room (fetched again it would be applied again). A large cap stays for safety only, and
says so in the log when it bites.

The map is one JSON file in the plugin's data directory, rewritten whole through a temporary file
(:func:`write_atomically`); every change is made under an exclusive lock of a ``.lock`` file beside it, on the file
read again, so a node and a CLI process sharing the data directory do not undo each other's changes.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import threading
from collections.abc import Callable, Collection, Iterable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import IO, Literal

from cartera.core.durable import write_atomically
from cartera.core.logs import event
from cartera.portfolio.files.reader import FileIdentity

SetAsideKind = Literal["imported", "rejected"]
SET_ASIDE_FILE = "set-aside.json"
SET_ASIDE_LIMIT = 100_000  #: files remembered at most; only for safety (the inbox's listing bounds it), logged


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

    def __init__(self, path: Path, log: logging.Logger, *, limit: int = SET_ASIDE_LIMIT) -> None:
        self.path = path
        self._log = log
        self._limit = limit
        self._lock = threading.Lock()
        self._entries: dict[str, SetAsideFile] = {}
        self._seen: tuple[int, int, int, int] | None = None  #: the stored file's identity when last read

    def get(self, source: str, identity: str) -> SetAsideFile | None:
        """The file remembered for ``source`` while it has ``identity``; one remembered with another identity (it
        changed: a new delivery) is forgotten and None returned."""
        with self._lock:
            self._refresh()
            found = self._entries.get(source)
        if found is None or found.identity == identity:
            return found
        self._change(lambda entries: _drop_if(entries, source, found))
        return None

    def remember(self, source: str, identity: str, sha256: str, kind: SetAsideKind) -> None:
        """Remember ``source`` as left in the inbox with ``identity`` (replacing what was remembered of it)."""
        remembered = SetAsideFile(identity, sha256, kind)

        def change(entries: dict[str, SetAsideFile]) -> bool:
            entries.pop(source, None)
            entries[source] = remembered
            return True

        self._change(change)

    def forget(self, source: str) -> None:
        self._change(lambda entries: entries.pop(source, None) is not None)

    def forget_unlisted(self, listed: Collection[str], *, prefix: str) -> None:
        """Forget the files of one inbox (sources starting with ``prefix``) it no longer lists (``listed``):
        archived, set aside or removed by hand."""

        def change(entries: dict[str, SetAsideFile]) -> bool:
            gone = [source for source in entries if source.startswith(prefix) and source not in listed]
            for source in gone:
                del entries[source]
            return bool(gone)

        self._change(change)

    def sources(self) -> dict[str, SetAsideFile]:
        with self._lock:
            self._refresh()
            return dict(self._entries)

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
            except (OSError, ValueError, TypeError, KeyError, AttributeError) as exc:
                event(self._log, "crm_sync.set_aside.upgrade_failed", logging.WARNING, file=str(path), why=str(exc))
                continue
            readable.append(path)
        taken = {}
        for source, candidates in read_in.items():
            now = current(source) if current is not None else None
            taken[source] = next((entry for entry in candidates if entry.identity == now), candidates[-1])

        def change(entries: dict[str, SetAsideFile]) -> bool:
            for source, remembered in taken.items():
                entries.setdefault(source, remembered)
            return True

        self._change(change)
        for path in readable:
            path.unlink(missing_ok=True)
        event(self._log, "crm_sync.set_aside.upgraded", files=len(taken), into=str(self.path))

    def _change(self, change: Callable[[dict[str, SetAsideFile]], bool]) -> None:
        """Apply ``change`` to the map as stored now, under the lock, and store it if it says it changed."""
        with self._lock, self._locked():
            self._refresh()
            if not change(self._entries):
                return
            if len(self._entries) > self._limit:
                dropped = list(self._entries)[: len(self._entries) - self._limit]
                for source in dropped:
                    del self._entries[source]
                event(
                    self._log,
                    "crm_sync.set_aside.limit_reached",
                    logging.ERROR,
                    file=str(self.path),
                    limit=self._limit,
                    forgotten=len(dropped),
                )
            try:
                self._save()
            except BaseException:  # not stored (disk full...): the map is read again from what the file holds
                self._seen = None
                raise

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        descriptor = os.open(self.path.with_name(f"{self.path.name}.lock"), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC)
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX)
            yield
        finally:
            os.close(descriptor)

    def _refresh(self) -> None:
        """Read the stored map again if the file changed since it was last read (another process wrote it)."""
        try:
            status = os.stat(self.path)
        except FileNotFoundError:
            self._entries, self._seen = {}, None
            return
        seen = (status.st_dev, status.st_ino, status.st_size, status.st_mtime_ns)
        if seen == self._seen:
            return
        self._seen = seen
        try:
            stored = json.loads(self.path.read_bytes())
            self._entries = {
                entry["source"]: SetAsideFile(str(entry["identity"]), str(entry["sha256"]), _kind(entry["kind"]))
                for entry in stored["files"]
            }
        except (OSError, ValueError, TypeError, KeyError) as exc:
            event(self._log, "crm_sync.set_aside.unreadable", logging.WARNING, file=str(self.path), why=str(exc))
            self._entries = {}

    def _save(self) -> None:
        files = [{"source": source} | asdict(remembered) for source, remembered in self._entries.items()]
        text = json.dumps({"files": files}, ensure_ascii=True).encode("ascii")

        def write(sink: IO[bytes]) -> None:
            sink.write(text)

        write_atomically(self.path, write)
        status = os.stat(self.path)
        self._seen = (status.st_dev, status.st_ino, status.st_size, status.st_mtime_ns)


def _drop_if(entries: dict[str, SetAsideFile], source: str, found: SetAsideFile) -> bool:
    """Forget ``source`` if it is still remembered as ``found`` (another process may have remembered it anew)."""
    if entries.get(source) != found:
        return False
    del entries[source]
    return True


def _kind(value: object) -> SetAsideKind:
    if value == "imported":
        return "imported"
    if value == "rejected":
        return "rejected"
    raise ValueError(f"unknown kind {value!r}")
