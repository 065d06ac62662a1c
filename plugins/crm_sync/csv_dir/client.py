"""Local directories: waiting files, the archive and the ledger of acknowledged files."""

from __future__ import annotations

import itertools
import os
import threading
from datetime import UTC, datetime
from pathlib import Path

from core.durable import fsync_dir


class Ledger:
    """Content hashes of acknowledged files: an append-only text file of ``sha256  source`` lines."""

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


def waiting_files(inbox: Path, pattern: str, archive: Path) -> list[Path]:
    """Files matching ``pattern`` in ``inbox``, by name, leaving out the archive."""
    archive = archive.resolve()
    found = (path for path in inbox.glob(pattern) if path.is_file() and archive not in path.resolve().parents)
    return sorted(found, key=lambda path: path.name)


def archive_file(path: Path, archive: Path, now: datetime) -> Path:
    """Move ``path`` into ``archive`` with one rename; a name already there gets a UTC timestamp suffix."""
    archive.mkdir(parents=True, exist_ok=True)
    target = archive / path.name
    stamp = now.astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")
    for counter in itertools.count():
        if not target.exists():
            break
        target = archive / f"{path.stem}-{stamp}{f'-{counter}' if counter else ''}{path.suffix}"
    os.replace(path, target)
    fsync_dir(archive)
    fsync_dir(path.parent)
    return target
