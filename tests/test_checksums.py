"""cartera.core.checksums agrees with hashlib on file and stream inputs of awkward sizes."""

from __future__ import annotations

import hashlib
import io
import random
from pathlib import Path
from typing import BinaryIO, cast

import pytest

from cartera.core.checksums import CHUNK_SIZE, copy_with_checksums, file_checksums
from cartera.core.models import Checksums

SIZES = [0, 1, CHUNK_SIZE - 1, CHUNK_SIZE, CHUNK_SIZE + 1, 5 * CHUNK_SIZE + 12345]


def _expected(data: bytes) -> Checksums:
    return Checksums(
        md5_hex=hashlib.md5(data, usedforsecurity=False).hexdigest(),
        sha256_hex=hashlib.sha256(data).hexdigest(),
        size=len(data),
    )


def _data(size: int) -> bytes:
    return random.Random(size).randbytes(size)


class _TrickleWriter(io.RawIOBase):
    """A raw stream that accepts at most ``limit`` bytes per write, as raw files may."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.received = bytearray()
        self.calls = 0

    def writable(self) -> bool:
        return True

    def write(self, b: bytes | bytearray | memoryview) -> int:  # type: ignore[override]
        self.calls += 1
        part = bytes(memoryview(b)[: self.limit])
        self.received += part
        return len(part)


@pytest.mark.parametrize("size", SIZES)
def test_file_checksums_match_hashlib(tmp_path: Path, size: int) -> None:
    data = _data(size)
    path = tmp_path / "f.bin"
    path.write_bytes(data)
    assert file_checksums(path) == _expected(data)


@pytest.mark.parametrize("size", SIZES)
def test_copy_with_checksums_copies_and_hashes(size: int) -> None:
    data = _data(size)
    dst = io.BytesIO()
    assert copy_with_checksums(io.BytesIO(data), dst) == _expected(data)
    assert dst.getvalue() == data


@pytest.mark.parametrize("chunk_size", [1, 7, 4096])
def test_small_chunks_give_the_same_result(tmp_path: Path, chunk_size: int) -> None:
    data = _data(10_000)
    path = tmp_path / "f.bin"
    path.write_bytes(data)
    assert file_checksums(path, chunk_size=chunk_size) == _expected(data)


def test_file_is_read_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    data = _data(3 * CHUNK_SIZE + 5)
    path = tmp_path / "f.bin"
    path.write_bytes(data)
    opened: list[object] = []
    real_open = Path.open

    def counting_open(self: Path, *args: object, **kwargs: object) -> object:
        opened.append(self)
        return real_open(self, *args, **kwargs)  # type: ignore[call-overload]

    monkeypatch.setattr(Path, "open", counting_open)
    assert file_checksums(path) == _expected(data)
    assert opened == [path]


def test_copy_completes_partial_writes() -> None:
    data = _data(CHUNK_SIZE + 10)
    dst = _TrickleWriter(limit=100_000)
    assert copy_with_checksums(io.BytesIO(data), cast(BinaryIO, dst)) == _expected(data)
    assert bytes(dst.received) == data
    assert dst.calls > 2


def test_chunk_size_must_be_positive(tmp_path: Path) -> None:
    path = tmp_path / "f.bin"
    path.write_bytes(b"x")
    with pytest.raises(ValueError, match="chunk_size"):
        file_checksums(path, chunk_size=0)
