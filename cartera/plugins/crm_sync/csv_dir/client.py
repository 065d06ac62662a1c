"""Local directories: waiting files, the archive and rejected folders, and the ledgers of files set aside."""

from __future__ import annotations

import itertools
import os
import stat
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

from cartera.plugin import fsync_dir


class Ledger:
    """Content hashes of files set aside in place: an append-only text file of ``sha256  source`` lines."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()

    def __contains__(self, sha256: object) -> bool:
        try:
            with self.path.open(encoding="utf-8") as stream:
                return any(line.split(" ", 1)[0] == sha256 for line in stream)
        except FileNotFoundError:
            return False

    def add(self, sha256: str, source: str) -> None:
        with self._lock, self.path.open("a", encoding="utf-8") as stream:
            stream.write(f"{sha256}  {source}\n")
            stream.flush()
            os.fsync(stream.fileno())


def inbox_entries(inbox: Path, pattern: str, *set_aside: Path) -> Iterator[tuple[Path, bool]]:
    """Entries matching ``pattern`` in ``inbox`` by name, leaving out the folders ``set_aside`` (archive...),
    each with whether it is a regular file reached without a symlink (a symlink, FIFO, device, directory, or an
    entry under a symlinked directory is not: it is never read)."""
    real_inbox = inbox.resolve()
    folders = [folder.resolve() for folder in set_aside]
    for path in sorted(inbox.glob(pattern), key=lambda path: path.name):
        real = path.resolve()
        if not any(folder in real.parents for folder in folders):
            yield path, real == real_inbox / path.relative_to(inbox) and _regular(path)


def _regular(path: Path) -> bool:
    try:
        return stat.S_ISREG(path.lstat().st_mode)
    except FileNotFoundError:
        return False


def move_into(path: Path, folder: Path, now: datetime) -> Path:
    """Move ``path`` into ``folder`` with one rename, both directories synced; a name already there is kept
    and the file gets a UTC timestamp suffix instead."""
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / path.name
    stamp = now.astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")
    for counter in itertools.count():
        if not target.exists():
            break
        target = folder / f"{path.stem}-{stamp}{f'-{counter}' if counter else ''}{path.suffix}"
    os.replace(path, target)
    fsync_dir(folder)
    fsync_dir(path.parent)
    return target
