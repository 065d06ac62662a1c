"""Conformance suite for :class:`cartera.core.adapters.RecordingStore` adapters.

Subclass :class:`RecordingStoreConformance` in a test module named ``test_*.py`` and override the
``context`` and ``store`` fixtures. ``store`` yields a started adapter built on ``context`` (keeping any
files under ``tmp_path``) that holds no objects yet, and stops it at teardown.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import random
import urllib.request
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any, NamedTuple

import pytest
from pydantic import ValidationError

from cartera.core.adapters import RecordingStore
from cartera.core.errors import IntegrityError, ObjectLocked, ObjectNotFound, Unsupported
from cartera.core.models import Checksums, StoredObject
from cartera.core.testing.capabilities import assert_serves_http_as_declared
from cartera.core.testing.context import CapturingContext

NESTED_KEY = "site/2026/11/23/42.wav"


class RecordingFile(NamedTuple):
    """A file on local disk and its true checksums."""

    path: Path
    checksums: Checksums


def make_recording_file(path: Path, size: int, seed: int) -> RecordingFile:
    """Write ``size`` pseudo-random bytes (reproducible from ``seed``) to ``path``."""
    data = random.Random(seed).randbytes(size)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return RecordingFile(path, _checksums(data))


def _checksums(data: bytes) -> Checksums:
    return Checksums(
        md5_hex=hashlib.md5(data, usedforsecurity=False).hexdigest(),
        sha256_hex=hashlib.sha256(data).hexdigest(),
        size=len(data),
    )


def _read_back(store: RecordingStore[Any], key: str) -> Checksums:
    sink = io.BytesIO()
    store.read(key, sink)
    return _checksums(sink.getvalue())


def _assert_describes(stored: StoredObject | None, key: str, checksums: Checksums) -> StoredObject:
    assert stored is not None, f"nothing stored under {key!r}"
    assert stored.key == key
    assert stored.size == checksums.size
    assert stored.sha256_hex in (None, checksums.sha256_hex)
    assert stored.location, "a stored object needs a location"
    return stored


class RecordingStoreConformance:
    """What every recording store promises; a store is right when its subclass of this passes."""

    @pytest.fixture
    def context(self, tmp_path: Path) -> CapturingContext:
        raise NotImplementedError("override the `context` fixture: return a CapturingContext")

    @pytest.fixture
    def store(self, context: CapturingContext, tmp_path: Path) -> Iterator[RecordingStore[Any]]:
        raise NotImplementedError(
            "override the `store` fixture: yield a started, empty store built on `context`, stop it after"
        )

    @pytest.fixture
    def recording_file(self, tmp_path: Path) -> RecordingFile:
        """A few hundred KB of random bytes on local disk, with their checksums."""
        return make_recording_file(tmp_path / "source" / "recording.wav", 300 * 1024 + 7, seed=1)

    def test_put_describes_the_object(self, store: RecordingStore[Any], recording_file: RecordingFile) -> None:
        """put returns the stored object's key, size and (when reported) sha256."""
        stored = store.put("calls/1.wav", recording_file.path, recording_file.checksums)
        _assert_describes(stored, "calls/1.wav", recording_file.checksums)

    def test_head_matches_put(self, store: RecordingStore[Any], recording_file: RecordingFile) -> None:
        """head describes a stored object exactly as put did."""
        stored = store.put("calls/2.wav", recording_file.path, recording_file.checksums)
        assert store.head("calls/2.wav") == stored

    def test_head_of_missing_key_is_none(self, store: RecordingStore[Any], recording_file: RecordingFile) -> None:
        """head returns None for a key that holds nothing, including a prefix of a stored key."""
        store.put("calls/3/a.wav", recording_file.path, recording_file.checksums)
        assert store.head("calls/missing.wav") is None
        assert store.head("calls/3") is None

    def test_read_returns_identical_bytes(self, store: RecordingStore[Any], recording_file: RecordingFile) -> None:
        """read streams back exactly the bytes that were put."""
        store.put("calls/4.wav", recording_file.path, recording_file.checksums)
        assert _read_back(store, "calls/4.wav") == recording_file.checksums

    def test_read_of_missing_key_raises(self, store: RecordingStore[Any]) -> None:
        """read of a key that holds nothing raises ObjectNotFound and writes nothing."""
        sink = io.BytesIO()
        with pytest.raises(ObjectNotFound):
            store.read("calls/missing.wav", sink)
        assert sink.getvalue() == b""

    def test_put_is_idempotent(self, store: RecordingStore[Any], recording_file: RecordingFile) -> None:
        """put of identical content under an existing key succeeds and leaves that one object."""
        first = store.put("calls/5.wav", recording_file.path, recording_file.checksums)
        second = store.put("calls/5.wav", recording_file.path, recording_file.checksums)
        assert second == first
        assert store.head("calls/5.wav") == first
        assert _read_back(store, "calls/5.wav") == recording_file.checksums

    @pytest.mark.parametrize("wrong", ["md5_hex", "sha256_hex", "size"])
    def test_put_with_wrong_checksums_leaves_nothing(
        self, store: RecordingStore[Any], recording_file: RecordingFile, wrong: str
    ) -> None:
        """put raises IntegrityError when any one checksum is wrong and nothing appears under the key."""
        good = recording_file.checksums
        bad = {
            "md5_hex": dataclasses.replace(good, md5_hex="0" * 32),
            "sha256_hex": dataclasses.replace(good, sha256_hex="0" * 64),
            "size": dataclasses.replace(good, size=good.size + 1),
        }[wrong]
        with pytest.raises(IntegrityError):
            store.put("calls/6.wav", recording_file.path, bad)
        assert store.head("calls/6.wav") is None
        with pytest.raises(ObjectNotFound):
            store.read("calls/6.wav", io.BytesIO())
        stored = store.put("calls/6.wav", recording_file.path, recording_file.checksums)
        _assert_describes(stored, "calls/6.wav", recording_file.checksums)

    def test_put_never_overwrites_different_content(
        self, store: RecordingStore[Any], recording_file: RecordingFile, tmp_path: Path
    ) -> None:
        """put of different content under an existing key raises IntegrityError; the original stays."""
        other = make_recording_file(tmp_path / "source" / "other.wav", recording_file.checksums.size, seed=2)
        original = store.put("calls/7.wav", recording_file.path, recording_file.checksums)
        with pytest.raises(IntegrityError):
            store.put("calls/7.wav", other.path, other.checksums)
        assert store.head("calls/7.wav") == original
        assert _read_back(store, "calls/7.wav") == recording_file.checksums

    def test_keys_are_independent(
        self, store: RecordingStore[Any], recording_file: RecordingFile, tmp_path: Path
    ) -> None:
        """Different keys hold their own content."""
        other = make_recording_file(tmp_path / "source" / "other.wav", 1000, seed=3)
        store.put("calls/8a.wav", recording_file.path, recording_file.checksums)
        store.put("calls/8b.wav", other.path, other.checksums)
        assert _read_back(store, "calls/8a.wav") == recording_file.checksums
        assert _read_back(store, "calls/8b.wav") == other.checksums
        _assert_describes(store.head("calls/8b.wav"), "calls/8b.wav", other.checksums)

    def test_nested_key_round_trips(self, store: RecordingStore[Any], recording_file: RecordingFile) -> None:
        """A deeply nested key like site/2026/11/23/42.wav is stored, described and read back."""
        stored = store.put(NESTED_KEY, recording_file.path, recording_file.checksums)
        _assert_describes(stored, NESTED_KEY, recording_file.checksums)
        assert store.head(NESTED_KEY) == stored
        assert _read_back(store, NESTED_KEY) == recording_file.checksums

    def test_multi_megabyte_file_round_trips(self, store: RecordingStore[Any], tmp_path: Path) -> None:
        """A 6 MB file (several chunks or upload parts) round-trips intact."""
        big = make_recording_file(tmp_path / "source" / "big.wav", 6 * 1024 * 1024 + 3, seed=4)
        stored = store.put("calls/big.wav", big.path, big.checksums)
        _assert_describes(stored, "calls/big.wav", big.checksums)
        assert _read_back(store, "calls/big.wav") == big.checksums

    def test_delete_removes_the_object(self, store: RecordingStore[Any], recording_file: RecordingFile) -> None:
        """delete removes the object; deleting a key that holds nothing is fine; the key can be used again."""
        store.put("calls/9.wav", recording_file.path, recording_file.checksums)
        store.delete("calls/9.wav")
        assert store.head("calls/9.wav") is None
        with pytest.raises(ObjectNotFound):
            store.read("calls/9.wav", io.BytesIO())
        store.delete("calls/9.wav")
        store.delete("calls/never-stored.wav")
        stored = store.put("calls/9.wav", recording_file.path, recording_file.checksums)
        _assert_describes(stored, "calls/9.wav", recording_file.checksums)

    def test_legal_hold_blocks_delete_until_released(
        self, store: RecordingStore[Any], recording_file: RecordingFile
    ) -> None:
        """An object on legal hold cannot be deleted; once released it can."""
        stored = store.put("calls/10.wav", recording_file.path, recording_file.checksums)
        store.set_retention("calls/10.wav", None, legal_hold=True)
        with pytest.raises(ObjectLocked):
            store.delete("calls/10.wav")
        assert store.head("calls/10.wav") == stored
        assert _read_back(store, "calls/10.wav") == recording_file.checksums
        store.set_retention("calls/10.wav", None, legal_hold=False)
        store.delete("calls/10.wav")
        assert store.head("calls/10.wav") is None

    def test_retention_blocks_delete_and_is_never_shortened(
        self, store: RecordingStore[Any], recording_file: RecordingFile, context: CapturingContext
    ) -> None:
        """An object retained until tomorrow cannot be deleted, even after asking for a shorter retention."""
        stored = store.put("calls/11.wav", recording_file.path, recording_file.checksums)
        tomorrow = context.clock.now() + timedelta(days=1)
        store.set_retention("calls/11.wav", tomorrow, legal_hold=False)
        with pytest.raises(ObjectLocked):
            store.delete("calls/11.wav")
        store.set_retention("calls/11.wav", None, legal_hold=False)
        with pytest.raises(ObjectLocked):
            store.delete("calls/11.wav")
        assert store.head("calls/11.wav") == stored

    def test_set_retention_of_missing_key_raises(self, store: RecordingStore[Any]) -> None:
        """set_retention on a key that holds nothing raises ObjectNotFound."""
        with pytest.raises(ObjectNotFound):
            store.set_retention("calls/missing.wav", None, legal_hold=True)

    def test_url_as_declared(self, store: RecordingStore[Any], recording_file: RecordingFile) -> None:
        """A store declaring presigned_urls gives a credential-free URL to the exact bytes (ObjectNotFound for a
        missing key); any other store refuses with Unsupported, pointing to 'recordings get'."""
        store.put("calls/12.wav", recording_file.path, recording_file.checksums)
        if not type(store).capabilities.presigned_urls:
            with pytest.raises(Unsupported, match="recordings get"):
                store.url("calls/12.wav", 60)
            return
        with urllib.request.urlopen(store.url("calls/12.wav", 60), timeout=30) as response:
            assert _checksums(response.read()) == recording_file.checksums
        with pytest.raises(ObjectNotFound):
            store.url("calls/missing.wav", 60)

    def test_serves_http_as_declared(self, store: RecordingStore[Any]) -> None:
        """http_router() gives routes exactly when the store declares serves_http."""
        assert_serves_http_as_declared(store)

    def test_max_concurrency_is_positive(self, store: RecordingStore[Any]) -> None:
        """The store tells core how many transfers it serves at once."""
        assert store.max_concurrency() >= 1

    def test_check_is_ok(self, store: RecordingStore[Any]) -> None:
        """check reports ok with a detail line for a working store."""
        result = store.check()
        assert result.ok, result.detail
        assert result.detail.strip()

    def test_config_model_rejects_unknown_key(self, store: RecordingStore[Any]) -> None:
        """The adapter's config model refuses a key it does not know."""
        model = type(store).config_model
        values = store.config.model_dump()
        assert model.model_validate(values) == store.config
        with pytest.raises(ValidationError) as raised:
            model.model_validate({**values, "no_such_option": 1})
        assert [error["loc"] for error in raised.value.errors()] == [("no_such_option",)]
