"""One recording's upload, as an archival worker does it: checksum the local file, put it in the store (which
verifies it), check the store's description, apply retention and hold. Workers never touch the catalog."""

from __future__ import annotations

import enum
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from cartera.core.adapters import RecordingStore
from cartera.core.checksums import stream_checksums
from cartera.core.durable import NotARegularFile, open_regular
from cartera.core.errors import IntegrityError, StoreUnavailable
from cartera.core.models import Checksums, StoredObject


class Outcome(enum.Enum):
    VERIFIED = "verified"
    FAILED = "failed"
    MISSING = "missing"
    LEFT = "left"  # not tried: the store was unavailable


@dataclass(frozen=True)
class Pending:
    """One recording still to archive, as read from the catalog at the start of a run."""

    recording_id: int
    path: Path
    key: str
    legal_hold: bool
    retain_until: datetime | None


@dataclass(frozen=True)
class NotArchived:
    """Why a worker did not archive a recording."""

    outcome: Outcome
    error: str | None = None


@dataclass(frozen=True)
class Verified:
    """A recording the store holds and confirmed, waiting for its catalog commit."""

    pending: Pending
    checksums: Checksums
    stored: StoredObject


class Uploader:
    """Uploads for one run, from any number of workers; once the store is unavailable, the rest are left."""

    def __init__(self, store: Callable[[], RecordingStore[Any]]) -> None:
        self.store = store
        self.store_down = threading.Event()
        self.last_store_error: str | None = None

    def __call__(self, pending: Pending) -> Verified | NotArchived:
        if self.store_down.is_set():
            return NotArchived(Outcome.LEFT)
        try:
            checksums = _regular_file_checksums(pending.path)
            store = self.store()
            stored = _matching(store.put(pending.key, pending.path, checksums), checksums)
            if pending.retain_until is not None or pending.legal_hold:
                store.set_retention(pending.key, pending.retain_until, pending.legal_hold)
        except NotARegularFile as exc:
            return NotArchived(Outcome.FAILED, error=str(exc))
        except FileNotFoundError:
            return NotArchived(Outcome.MISSING, error=f"{pending.path} vanished before it was archived")
        except StoreUnavailable as exc:
            self.last_store_error = str(exc)
            self.store_down.set()
            return NotArchived(Outcome.LEFT, error=f"store unavailable: {exc}")
        except (OSError, IntegrityError) as exc:
            return NotArchived(Outcome.FAILED, error=f"{type(exc).__name__}: {exc}")
        except Exception as exc:  # a plugin's unexpected error must not stop the other files
            return NotArchived(Outcome.FAILED, error=f"store error: {exc!r}")
        return Verified(pending, checksums, stored)


def _matching(stored: StoredObject, checksums: Checksums) -> StoredObject:
    """The store's description of what it holds must match what was read from local disk."""
    if stored.size != checksums.size:
        raise IntegrityError(f"{stored.key}: store holds {stored.size} bytes, expected {checksums.size}")
    if stored.sha256_hex is not None and stored.sha256_hex != checksums.sha256_hex:
        raise IntegrityError(f"{stored.key}: store's sha256 differs from the local file's")
    return stored


def _regular_file_checksums(path: Path) -> Checksums:
    """Checksums of the regular file at ``path``; a symlink, FIFO or device is never read, never deleted."""
    try:
        with open_regular(path) as src:
            return stream_checksums(src)
    except NotARegularFile:
        raise NotARegularFile(f"{path} is not a regular file: left alone") from None
