"""The players' local copies of recordings stay within their bound (#14 red team round 7, M5): a supervisor asking
one byte of every recording made the node fetch and keep each whole recording for an hour, filling its disk."""

from __future__ import annotations

import hashlib
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, BinaryIO, cast

import pytest

from cartera.core.adapters import RecordingStore
from cartera.recordings.access import RecordingView
from cartera.web.media import VerifiedCopies

SIZE = 64 * 1024


class _Store:
    """The one method of a recording store the copies use: every key holds its own bytes."""

    def read(self, key: str, sink: BinaryIO) -> None:
        sink.write(_content(key))


def _content(key: str) -> bytes:
    return key.encode().ljust(SIZE, b".")


def _view(number: int) -> RecordingView:
    sha256 = hashlib.sha256(_content(f"k{number}")).hexdigest()
    return RecordingView(
        id=number,
        site="t",
        account=None,
        phone=None,
        agent=None,
        outcome=None,
        started_at="2026-11-23T09:00:00+00:00",
        duration_s=1.0,
        size=SIZE,
        sha256=sha256,
        location=f"/spool/{number}.wav",
        state="verified",
    )


@pytest.mark.abuse
def test_copies_never_take_more_than_their_bound_the_least_recently_played_go_first(tmp_path: Path) -> None:
    copies = VerifiedCopies(tmp_path / "copies", max_bytes=4 * SIZE)
    store = cast(RecordingStore[Any], _Store())
    for number in range(1, 40):  # one byte of each, as a script would ask
        copies.path(_view(number), f"k{number}", lambda: store)
        kept = list((tmp_path / "copies").iterdir())
        assert sum(path.stat().st_size for path in kept) <= 4 * SIZE
    newest = copies.path(_view(39), "k39", lambda: store)
    assert newest.read_bytes() == _content("k39")
    assert sorted(int(path.name.split("-")[0]) for path in (tmp_path / "copies").iterdir()) == [36, 37, 38, 39]


class _SlowStore(_Store):
    """Key ``k1``'s read waits until released; every read is counted."""

    def __init__(self) -> None:
        self.reading, self.release = threading.Event(), threading.Event()
        self.reads: list[str] = []

    def read(self, key: str, sink: BinaryIO) -> None:
        self.reads.append(key)
        if key == "k1":
            self.reading.set()
            self.release.wait(30)
        super().read(key, sink)


@pytest.mark.abuse
def test_a_slow_fetch_holds_up_only_its_own_recording(tmp_path: Path) -> None:
    """Round 20 H5: one lock across every fetch made each uncached play wait for the slowest download."""
    copies = VerifiedCopies(tmp_path / "copies")
    slow = _SlowStore()
    store = cast(RecordingStore[Any], slow)
    with ThreadPoolExecutor(3) as pool:
        first = pool.submit(copies.path, _view(1), "k1", lambda: store)
        assert slow.reading.wait(30)
        again = pool.submit(copies.path, _view(1), "k1", lambda: store)  # waits for the fetch under way
        other = pool.submit(copies.path, _view(2), "k2", lambda: store)
        try:
            assert other.result(10).read_bytes() == _content("k2"), "another recording waited for k1's fetch"
        finally:
            slow.release.set()
        assert first.result(30) == again.result(30)
        assert first.result().read_bytes() == _content("k1")
    assert sorted(slow.reads) == ["k1", "k2"], "one fetch per recording"
