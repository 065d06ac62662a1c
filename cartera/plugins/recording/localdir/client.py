"""A directory used as a write-once archive: every object is verified, published atomically, never replaced."""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import stat
import tempfile
import threading
from datetime import datetime
from pathlib import Path
from typing import BinaryIO

from cartera.plugin import (
    CHUNK_SIZE,
    CheckResult,
    Checksums,
    IntegrityError,
    ObjectLocked,
    ObjectNotFound,
    StoredObject,
    copy_with_checksums,
    file_checksums,
    fsync_dir,
    recording_key_problem,
)

TEMP_SUFFIX = ".tmp"
SIDECAR_SUFFIX = ".sha256"
HOLD_SUFFIX = ".hold"
_SHA256_HEX = re.compile(r"[0-9a-f]{64}")


#: Why a key is not a valid object key, or ``None`` when it is one: core's rule, which the key template meets.
key_problem = recording_key_problem


def sidecar_of(path: Path) -> Path:
    """The hidden file beside an object that holds its sha256."""
    return path.with_name(f".{path.name}{SIDECAR_SUFFIX}")


def hold_of(path: Path) -> Path:
    """The hidden file beside an object that holds its retention date and legal hold (JSON)."""
    return path.with_name(f".{path.name}{HOLD_SUFFIX}")


class ArchiveDirectory:
    """Objects are plain files under ``root``; keys are relative POSIX paths under it.

    ``put`` copies into a hidden temporary file in the destination directory while hashing, verifies it,
    fsyncs it and publishes it with ``os.link``, which never replaces an existing file: a key holds either
    nothing or a complete, verified object. The object's sha256 goes into a hidden sidecar written after
    the object is published; ``head`` recomputes a missing sidecar (a put that died in between). Retention
    and legal hold live in a second hidden sidecar that ``delete`` obeys.
    """

    def __init__(self, root: Path, *, fsync: bool = True) -> None:
        self.root = root.absolute()
        self._fsync = fsync
        self._holds = threading.Lock()

    def path_of(self, key: str) -> Path:
        """The file that holds ``key``. Raises ValueError for a key that could leave the archive."""
        problem = key_problem(key)
        if problem is not None:
            raise ValueError(f"invalid recording key {key!r}: {problem}")
        return self.root.joinpath(*key.split("/"))

    def put(self, key: str, source: Path, expected: Checksums) -> StoredObject:
        """Store ``source`` under ``key``; IntegrityError when it does not match ``expected``."""
        path = self.path_of(key)
        self._make_dirs(path.parent)
        fd, temp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=TEMP_SUFFIX, dir=path.parent)
        temp = Path(temp_name)
        try:
            with os.fdopen(fd, "wb") as out, source.open("rb") as src:
                got = copy_with_checksums(src, out)
                out.flush()
                self._sync(out.fileno())
            _verify(key, expected, got)
            if not path.exists():
                # An object deleted by hand may have left its sidecars behind; a missing sha256 is recomputed.
                sidecar_of(path).unlink(missing_ok=True)
                hold_of(path).unlink(missing_ok=True)
            try:
                os.link(temp, path)
            except FileExistsError:
                return self._already_stored(key, got)
            self._write_sidecar(path, got.sha256_hex)
        finally:
            temp.unlink(missing_ok=True)
        return self._describe(key, path, got.sha256_hex, got.size)

    def head(self, key: str) -> StoredObject | None:
        """Describe the object under ``key``, or ``None`` when there is none."""
        path = self.path_of(key)
        try:
            info = path.stat()
        except (FileNotFoundError, NotADirectoryError):
            return None
        if not stat.S_ISREG(info.st_mode):
            return None
        sha256_hex = self._read_sidecar(path)
        if sha256_hex is None:
            sha256_hex = file_checksums(path).sha256_hex
            with contextlib.suppress(OSError):  # a read-only archive still answers, it just rehashes again
                self._write_sidecar(path, sha256_hex)
        return self._describe(key, path, sha256_hex, info.st_size)

    def read(self, key: str, sink: BinaryIO) -> None:
        """Copy the object's bytes to ``sink``. Raises ObjectNotFound."""
        path = self.path_of(key)
        try:
            src = path.open("rb")
        except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
            raise ObjectNotFound(f"no object {key!r} in {self.root}") from None
        with src:
            shutil.copyfileobj(src, sink, CHUNK_SIZE)

    def delete(self, key: str, now: datetime) -> None:
        """Remove the object and its sidecars; ObjectLocked while it is retained (at ``now``) or held."""
        path = self.path_of(key)
        with self._holds:
            retain_until, legal_hold = self._read_hold(path)
            if legal_hold or (retain_until is not None and retain_until > now):
                until = f" until {retain_until.isoformat()}" if retain_until else ""
                raise ObjectLocked(f"{key}: under {'legal hold' if legal_hold else 'retention'}{until}")
            with contextlib.suppress(FileNotFoundError, NotADirectoryError):
                path.unlink()
            sidecar_of(path).unlink(missing_ok=True)
            hold_of(path).unlink(missing_ok=True)
        with contextlib.suppress(FileNotFoundError):
            self._sync_dir(path.parent)

    def set_retention(self, key: str, retain_until: datetime | None, legal_hold: bool) -> None:
        """Record retention (only ever extended) and legal hold beside the object."""
        path = self.path_of(key)
        if self.head(key) is None:
            raise ObjectNotFound(f"no object {key!r} in {self.root}")
        with self._holds:
            current, _ = self._read_hold(path)
            if current is not None and (retain_until is None or current > retain_until):
                retain_until = current
            document = {"retain_until": retain_until.isoformat() if retain_until else None, "legal_hold": legal_hold}
            self._write_hidden(path, hold_of(path), json.dumps(document) + "\n")

    def check(self) -> CheckResult:
        """The root exists (or is created) and a probe file can be written and removed there."""
        try:
            self._make_dirs(self.root)
            fd, probe = tempfile.mkstemp(prefix=".check.", suffix=TEMP_SUFFIX, dir=self.root)
            try:
                os.write(fd, b"probe")
                self._sync(fd)
            finally:
                os.close(fd)
                os.unlink(probe)
            free = shutil.disk_usage(self.root).free
        except OSError as exc:
            return CheckResult(ok=False, detail=f"archive {self.root} is not writable: {exc}")
        return CheckResult(ok=True, detail=f"archive {self.root} is writable, {free / 2**30:.1f} GiB free")

    def _already_stored(self, key: str, got: Checksums) -> StoredObject:
        existing = self.head(key)
        if existing is None:
            raise IntegrityError(f"{key}: the path {self.path_of(key)} is taken by something not an object")
        if existing.sha256_hex != got.sha256_hex or existing.size != got.size:
            raise IntegrityError(
                f"{key}: already holds different content (sha256 {existing.sha256_hex}, "
                f"{existing.size} bytes); not overwritten"
            )
        return existing

    def _describe(self, key: str, path: Path, sha256_hex: str, size: int) -> StoredObject:
        return StoredObject(key=key, size=size, sha256_hex=sha256_hex, location=path.as_uri())

    def _read_sidecar(self, path: Path) -> str | None:
        try:
            text = sidecar_of(path).read_text(encoding="ascii").strip()
        except (FileNotFoundError, UnicodeDecodeError):
            return None
        return text if _SHA256_HEX.fullmatch(text) else None

    def _read_hold(self, path: Path) -> tuple[datetime | None, bool]:
        try:
            document = json.loads(hold_of(path).read_text(encoding="utf-8"))
        except (FileNotFoundError, NotADirectoryError):
            return None, False
        until = document.get("retain_until")
        return (datetime.fromisoformat(until) if until else None), bool(document.get("legal_hold"))

    def _write_sidecar(self, path: Path, sha256_hex: str) -> None:
        self._write_hidden(path, sidecar_of(path), f"{sha256_hex}\n")

    def _write_hidden(self, path: Path, sidecar: Path, text: str) -> None:
        """Atomically replace the hidden file ``sidecar`` beside ``path`` with ``text``."""
        fd, temp_name = tempfile.mkstemp(prefix=f"{sidecar.name}.", suffix=TEMP_SUFFIX, dir=path.parent)
        try:
            with os.fdopen(fd, "w", encoding="ascii") as out:
                out.write(text)
                out.flush()
                self._sync(out.fileno())
            os.replace(temp_name, sidecar)
        finally:
            Path(temp_name).unlink(missing_ok=True)
        self._sync_dir(path.parent)

    def _make_dirs(self, directory: Path) -> None:
        missing: list[Path] = []
        while not directory.is_dir():
            missing.append(directory)
            directory = directory.parent
        for new in reversed(missing):
            new.mkdir(exist_ok=True)
            self._sync_dir(new.parent)

    def _sync(self, fd: int) -> None:
        if self._fsync:
            os.fsync(fd)

    def _sync_dir(self, directory: Path) -> None:
        if self._fsync:
            fsync_dir(directory)


def _verify(key: str, expected: Checksums, got: Checksums) -> None:
    differing = [
        f"{name} expected {want} got {have}"
        for name, want, have in (
            ("size", expected.size, got.size),
            ("md5", expected.md5_hex, got.md5_hex),
            ("sha256", expected.sha256_hex, got.sha256_hex),
        )
        if want != have
    ]
    if differing:
        raise IntegrityError(f"{key}: {'; '.join(differing)}; nothing stored")
