"""MD5, SHA-256 and size of a file or stream, computed in a single chunked pass."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import BinaryIO

from cartera.core.models import Checksums

CHUNK_SIZE = 1 << 20


def file_checksums(path: Path, chunk_size: int = CHUNK_SIZE) -> Checksums:
    """Checksums of the file at ``path``, reading it once in ``chunk_size`` pieces."""
    with path.open("rb") as src:
        return stream_checksums(src, chunk_size)


def stream_checksums(src: BinaryIO, chunk_size: int = CHUNK_SIZE) -> Checksums:
    """Checksums of ``src`` read until end of file."""
    return _digest(src, None, chunk_size)


def copy_with_checksums(src: BinaryIO, dst: BinaryIO, chunk_size: int = CHUNK_SIZE) -> Checksums:
    """Copy ``src`` to ``dst`` until end of file; return the checksums of the bytes copied."""
    return _digest(src, dst, chunk_size)


def _digest(src: BinaryIO, dst: BinaryIO | None, chunk_size: int) -> Checksums:
    if chunk_size <= 0:
        raise ValueError(f"chunk_size must be positive, got {chunk_size}")
    md5 = hashlib.md5(usedforsecurity=False)
    sha256 = hashlib.sha256()
    size = 0
    while chunk := src.read(chunk_size):
        md5.update(chunk)
        sha256.update(chunk)
        size += len(chunk)
        if dst is not None:
            _write_all(dst, chunk)
    return Checksums(md5_hex=md5.hexdigest(), sha256_hex=sha256.hexdigest(), size=size)


def _write_all(dst: BinaryIO, data: bytes) -> None:
    """Write every byte of ``data``: a raw (unbuffered) file may accept only part of it per call."""
    view = memoryview(data)
    while view:
        view = view[dst.write(view) :]
