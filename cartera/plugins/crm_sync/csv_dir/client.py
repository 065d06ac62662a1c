"""Local directories: waiting files, the archive and rejected folders, and the ledgers of files set aside."""

from __future__ import annotations

import itertools
import os
import threading
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


def waiting_files(inbox: Path, pattern: str, *set_aside: Path) -> list[Path]:
    """Files matching ``pattern`` in ``inbox``, by name, leaving out the folders ``set_aside`` (archive...)."""
    folders = [folder.resolve() for folder in set_aside]
    found = (
        path
        for path in inbox.glob(pattern)
        if path.is_file() and not any(folder in path.resolve().parents for folder in folders)
    )
    return sorted(found, key=lambda path: path.name)


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
