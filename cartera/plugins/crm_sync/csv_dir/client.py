"""Local directories: waiting files, the archive and rejected folders."""

from __future__ import annotations

import contextlib
import errno
import itertools
import os
import stat
import uuid
from collections.abc import Callable, Iterable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, BinaryIO

from cartera.plugin import fsync_dir, open_regular

_COMPARE_CHUNK = 1 << 16


def inbox_entries(inbox: Path, pattern: str, *set_aside: Path) -> Iterator[tuple[Path, bool]]:
    """Entries matching ``pattern`` in ``inbox`` by name, leaving out the folders ``set_aside`` (archive...),
    each with whether it is a regular file reached without a symlink (a symlink, FIFO, device, directory, or an
    entry under a symlinked directory is not: it is never read). That holds at listing time only: the file is
    opened with :func:`open_entry` and moved with :func:`move_into`, which follow no symlink either. An inbox
    that is not there lists nothing; one that cannot be listed (no read right, an I/O error of a share) raises
    its OSError: pathlib's glob would list it empty, and an empty listing is not a failure the sync reports."""
    try:
        with os.scandir(inbox) as listing:
            next(listing, None)
    except FileNotFoundError:
        return
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


class FolderIsASymlink(OSError):
    """A folder inside the creditor's inbox (``imported``, ``rejected``, a sub-folder holding a file) is a symlink
    (or not a folder): never read nor moved through; its path is the exception's ``filename``."""


def open_entry(path: Path, inbox: Path) -> BinaryIO:
    """The inbox entry ``path`` opened as :func:`open_regular` opens a file, reached from ``inbox`` one folder at a
    time, never through a symlink (:class:`FolderIsASymlink`): a sub-folder the creditor swaps for a symlink to
    another creditor's inbox after the listing is not followed."""
    descriptor = _entry_folder(path, inbox, "read")
    try:
        return open_regular(Path(path.name), dir_fd=descriptor)
    finally:
        os.close(descriptor)


def move_into(path: Path, folder: Path, now: datetime, *, inbox: Path) -> Path:
    """Move the inbox entry ``path`` into ``folder`` with one rename, both directories synced; a name already
    there is kept and the file gets a UTC timestamp suffix instead. ``folder`` is created as needed; the folders
    inside ``inbox`` (where the creditor writes), both those leading to ``path`` and the part of ``folder`` there,
    are opened one level at a time and never through a symlink, so a creditor can neither send its file into
    another creditor's inbox nor have another creditor's file moved out of it (:class:`FolderIsASymlink`)."""
    source = _entry_folder(path, inbox, "moved")
    try:
        descriptor = _open_folder(folder, inbox)
        try:
            stamp = now.astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")
            name = path.name
            for counter in itertools.count():
                if not _taken(name, descriptor):
                    break
                name = f"{path.stem}-{stamp}{f'-{counter}' if counter else ''}{path.suffix}"
            os.replace(path.name, name, src_dir_fd=source, dst_dir_fd=descriptor)
            os.fsync(descriptor)
        finally:
            os.close(descriptor)
        os.fsync(source)
    finally:
        os.close(source)
    return folder / name


def _entry_folder(path: Path, inbox: Path, done: str) -> int:
    """A descriptor of the folder holding the inbox entry ``path`` (listed under ``inbox``): the inbox as
    configured, then each sub-folder between it and ``path`` opened with O_NOFOLLOW."""
    return _descend(inbox, path.relative_to(inbox).parts[:-1], create=False, done=done)


def _open_folder(folder: Path, inbox: Path) -> int:
    """A descriptor of ``folder``, created as needed; inside ``inbox`` each level is opened with O_NOFOLLOW."""
    folder, inbox = Path(os.path.normpath(folder)), Path(os.path.normpath(inbox))
    if not folder.is_relative_to(inbox):  # the operator's own folder, as configured
        folder.mkdir(parents=True, exist_ok=True)
        return os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    return _descend(inbox, folder.relative_to(inbox).parts, create=True, done="moved")


def _descend(inbox: Path, parts: tuple[str, ...], *, create: bool, done: str) -> int:
    """A descriptor of ``inbox``'s folder ``parts``, each level opened from the one before with O_NOFOLLOW (and
    created first, if ``create``): a symlink (or a non-folder, or ``..``) at any level is
    :class:`FolderIsASymlink`, nothing ``done`` through it."""
    descriptor = os.open(inbox, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    level = inbox
    for part in parts:
        level /= part
        try:
            if part == os.pardir:
                raise FolderIsASymlink(errno.EXDEV, f"outside the inbox: not {done} through", str(level))
            if create:
                with contextlib.suppress(FileExistsError):
                    os.mkdir(part, dir_fd=descriptor)
            child = os.open(part, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=descriptor)
        except OSError as exc:
            if exc.errno in (errno.ELOOP, errno.ENOTDIR):
                message = f"a symbolic link or not a directory: not {done} through"
                raise FolderIsASymlink(exc.errno, message, str(level)) from None
            raise
        finally:
            os.close(descriptor)
        descriptor = child
    return descriptor


def _taken(name: str, folder: int) -> bool:
    """Whether ``folder`` has an entry ``name`` (a dangling symlink counts)."""
    try:
        os.stat(name, dir_fd=folder, follow_symlinks=False)
    except FileNotFoundError:
        return False
    return True


def write_new(folder: Path, names: Iterable[str], write: Callable[[IO[bytes]], None], mode: int) -> Path:
    """Write a file into ``folder`` under the first of ``names`` not taken, never replacing a file there: written
    under a short hidden temporary name with ``mode``, synced, then linked to the name (which fails if it is
    taken). A taken name holding the same bytes is this very file written before (sent again after a crash):
    it is kept and its path returned, not written twice."""
    temp = folder / f".{uuid.uuid4().hex}.tmp"
    try:
        with temp.open("xb") as sink:
            os.fchmod(sink.fileno(), mode)
            write(sink)
            sink.flush()
            os.fsync(sink.fileno())
        for name in names:
            target = folder / name
            if _same_bytes(target, temp):
                return target
            try:
                os.link(temp, target, follow_symlinks=False)
            except FileExistsError:
                continue
            except OSError as exc:  # a file system without hard links: a rename where the name is free
                if exc.errno not in (errno.EPERM, errno.EOPNOTSUPP, errno.ENOTSUP) or os.path.lexists(target):
                    raise
                os.replace(temp, target)
            break
    finally:
        temp.unlink(missing_ok=True)
    fsync_dir(folder)
    return target


def _same_bytes(path: Path, temp: Path) -> bool:
    """Whether ``path`` is a regular file (not through a symlink) with the bytes of ``temp``."""
    try:
        if path.lstat().st_size != temp.stat().st_size:
            return False
        with open_regular(path) as existing, temp.open("rb") as written:
            while True:
                chunk = existing.read(_COMPARE_CHUNK)
                if chunk != written.read(_COMPARE_CHUNK):
                    return False
                if not chunk:
                    return True
    except OSError:
        return False
