"""Files that survive a crash: written whole or not at all, their directory entries synced."""

from __future__ import annotations

import errno
import os
import stat
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import IO, BinaryIO


def write_atomically(target: Path, write: Callable[[IO[bytes]], None], mode: int | None = None) -> None:
    """Write ``target`` through a hidden temporary file in its directory: readers never see it partial. ``mode``:
    its permission bits whatever the umask (a file for a creditor's pick-up); unset: as the umask gives."""
    temp = target.with_name(f".{target.name}.{uuid.uuid4().hex}.tmp")
    try:
        with temp.open("xb") as sink:
            if mode is not None:
                os.fchmod(sink.fileno(), mode)
            write(sink)
            sink.flush()
            os.fsync(sink.fileno())
        os.replace(temp, target)
    finally:
        temp.unlink(missing_ok=True)
    fsync_dir(target.parent)


def fsync_dir(directory: Path) -> None:
    """Make the entries of ``directory`` (a rename, a new file) survive a crash."""
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class NotARegularFile(OSError):
    """A path that is a symlink, FIFO, device, socket or directory where a regular file was expected."""


def file_kind(mode: int) -> str:
    """What a non-regular file of ``st_mode`` ``mode`` is, in words ("a FIFO", "a directory"...)."""
    kinds = ((stat.S_ISDIR, "a directory"), (stat.S_ISFIFO, "a FIFO"), (stat.S_ISSOCK, "a socket"))
    return next((name for test, name in kinds if test(mode)), "a device")


def open_regular(path: Path, *, dir_fd: int | None = None) -> BinaryIO:
    """``path`` (relative to the directory ``dir_fd``, if given) opened for reading if it is a regular file: a
    symlink is not followed, and a FIFO or device neither blocks nor is read (:class:`NotARegularFile` says what
    it is)."""
    try:
        descriptor = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, dir_fd=dir_fd)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise NotARegularFile(errno.ELOOP, "a symbolic link, not followed") from None
        raise
    try:
        mode = os.fstat(descriptor).st_mode
        if not stat.S_ISREG(mode):
            raise NotARegularFile(f"not a regular file ({file_kind(mode)})")
        os.set_blocking(descriptor, True)
        return os.fdopen(descriptor, "rb")
    except BaseException:
        os.close(descriptor)
        raise


def _not_regular(path: Path, mode: int) -> str:
    return f"{path}: not a regular file ({file_kind(mode)})"


class LineAppender:
    """A file appended to one whole line at a time, unbuffered (``O_APPEND``, ``os.write``): a line whose write
    fails (disk full, a file-size limit) is cut off again, so it neither reaches the file later (no buffer keeps
    it) nor leaves a torn line that the next one would be glued to. Only a regular file (or a symlink to one) is
    opened: a FIFO, device or socket raises :class:`NotARegularFile` at once (a FIFO without a reader blocked
    ``open()`` for ever, hanging ``check`` and start: round 21 C-F8)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC | os.O_NONBLOCK
        try:
            descriptor = os.open(path, flags, 0o666)
        except OSError as exc:
            if exc.errno == errno.ENXIO:  # a FIFO no one reads, a socket
                raise NotARegularFile(_not_regular(path, os.stat(path).st_mode)) from None
            raise
        try:
            mode = os.fstat(descriptor).st_mode
            if not stat.S_ISREG(mode):
                raise NotARegularFile(_not_regular(path, mode))
            os.set_blocking(descriptor, True)
        except BaseException:
            os.close(descriptor)
            raise
        self._fd = descriptor

    def fileno(self) -> int:
        return self._fd

    def append(self, line: bytes) -> None:
        """Write ``line`` whole, or raise with the file as it was (unless another writer appended meanwhile)."""
        before = os.fstat(self._fd).st_size
        written = 0
        try:
            while written < len(line):
                written += os.write(self._fd, line[written:])
        except BaseException:
            if written:
                try:
                    if os.fstat(self._fd).st_size == before + written:  # nothing of another writer's after it
                        os.ftruncate(self._fd, before)
                except OSError:
                    pass
            raise

    def close(self) -> None:
        os.close(self._fd)
