"""The localdir recording store: conformance plus crash, concurrency, key and permission behaviour."""

from __future__ import annotations

import dataclasses
import hashlib
import io
import os
import re
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, BinaryIO

import pytest

from cartera.core.adapters import RecordingStore
from cartera.core.errors import IntegrityError
from cartera.core.models import StoredObject
from cartera.core.registry import AdapterCatalog
from cartera.core.testing.context import CapturingContext
from cartera.core.testing.recording_store import (
    NESTED_KEY,
    RecordingFile,
    RecordingStoreConformance,
    make_recording_file,
)
from cartera.plugins.recording.localdir import client, plugin
from cartera.plugins.recording.localdir.config import LocalDirConfig
from cartera.plugins.recording.localdir.plugin import LocalDirStore
from tests.conftest import REPO


def _make_store(tmp_path: Path, *, fsync: bool = True) -> LocalDirStore:
    """An unstarted store archiving into ``tmp_path/archive``."""
    config = LocalDirConfig(path=tmp_path / "archive", fsync=fsync)
    return LocalDirStore(config, CapturingContext(tmp_path / "data"))


class TestLocalDirConformance(RecordingStoreConformance):
    @pytest.fixture
    def context(self, tmp_path: Path) -> CapturingContext:
        return CapturingContext(tmp_path / "data")

    @pytest.fixture
    def store(self, context: CapturingContext, tmp_path: Path) -> Iterator[RecordingStore[Any]]:
        store = LocalDirStore(LocalDirConfig(path=tmp_path / "archive"), context)
        store.start()
        yield store
        store.stop()


@pytest.fixture
def store(tmp_path: Path) -> Iterator[LocalDirStore]:
    store = _make_store(tmp_path)
    store.start()
    yield store
    store.stop()


@pytest.fixture
def recording(tmp_path: Path) -> RecordingFile:
    return make_recording_file(tmp_path / "source" / "rec.wav", 64 * 1024 + 1, seed=11)


def _files(directory: Path) -> set[str]:
    return {entry.name for entry in directory.iterdir()}


def test_registered_as_localdir() -> None:
    registry = AdapterCatalog.empty().recording_stores
    plugin.cartera_register_recording_stores(registry)
    assert registry.get("localdir") is LocalDirStore


def test_config_path_is_relative_to_sites_toml(tmp_path: Path) -> None:
    config = LocalDirConfig.model_validate({"path": "archive"}, context={"base_dir": tmp_path})
    assert config.path == tmp_path / "archive"
    assert config.fsync is True


def test_object_is_a_file_with_a_hidden_sidecar(store: LocalDirStore, recording: RecordingFile) -> None:
    stored = store.put(NESTED_KEY, recording.path, recording.checksums)
    path = store.archive.root / "site/2026/11/23/42.wav"
    assert stored.location == path.as_uri()
    assert hashlib.sha256(path.read_bytes()).hexdigest() == recording.checksums.sha256_hex
    assert _files(path.parent) == {"42.wav", ".42.wav.sha256"}
    assert (path.parent / ".42.wav.sha256").read_text() == recording.checksums.sha256_hex + "\n"


def test_head_reads_the_sidecar_without_rehashing(
    store: LocalDirStore, recording: RecordingFile, monkeypatch: pytest.MonkeyPatch
) -> None:
    stored = store.put("a/1.wav", recording.path, recording.checksums)

    def no_hashing(path: Path, *_: object) -> None:
        raise AssertionError(f"head rehashed {path}")

    monkeypatch.setattr(client, "file_checksums", no_hashing)
    assert store.head("a/1.wav") == stored


def test_missing_sidecar_is_recomputed(store: LocalDirStore, recording: RecordingFile) -> None:
    stored = store.put("a/1.wav", recording.path, recording.checksums)
    sidecar = store.archive.root / "a" / ".1.wav.sha256"
    sidecar.unlink()
    assert store.head("a/1.wav") == stored
    assert sidecar.read_text().strip() == recording.checksums.sha256_hex


def test_stale_sidecar_of_a_deleted_object_is_not_trusted(
    store: LocalDirStore, recording: RecordingFile, tmp_path: Path
) -> None:
    store.put("a/1.wav", recording.path, recording.checksums)
    (store.archive.root / "a" / "1.wav").unlink()
    other = make_recording_file(tmp_path / "source" / "other.wav", 500, seed=12)
    stored = store.put("a/1.wav", other.path, other.checksums)
    assert stored.sha256_hex == other.checksums.sha256_hex
    assert store.head("a/1.wav") == stored


def test_integrity_error_names_key_and_checksum(store: LocalDirStore, recording: RecordingFile) -> None:
    bad = dataclasses.replace(recording.checksums, md5_hex="f" * 32)
    with pytest.raises(IntegrityError, match=r"a/1\.wav: md5 expected f{32} got") as raised:
        store.put("a/1.wav", recording.path, bad)
    assert "sha256" not in str(raised.value)
    assert _files(store.archive.root / "a") == set()


def test_path_taken_by_a_directory_is_refused(store: LocalDirStore, recording: RecordingFile) -> None:
    store.put("a/b/1.wav", recording.path, recording.checksums)
    with pytest.raises(IntegrityError, match="a/b"):
        store.put("a/b", recording.path, recording.checksums)
    assert store.head("a/b/1.wav") is not None


@pytest.mark.parametrize(
    "key",
    ["", "/etc/x.wav", "../escape.wav", "a/../../escape.wav", "a\\b.wav", "a//b.wav", "./a.wav", "a/.b.sha256"],
)
def test_invalid_keys_are_rejected(store: LocalDirStore, recording: RecordingFile, tmp_path: Path, key: str) -> None:
    named = re.escape(repr(key))
    with pytest.raises(ValueError, match=named):
        store.put(key, recording.path, recording.checksums)
    with pytest.raises(ValueError, match=named):
        store.head(key)
    with pytest.raises(ValueError, match=named):
        store.read(key, io.BytesIO())
    assert not (tmp_path / "escape.wav").exists()
    assert list(store.archive.root.iterdir()) == []


def _crash(*_: object) -> None:
    raise OSError("simulated crash")


def _copy_half_then_crash(src: BinaryIO, dst: BinaryIO) -> None:
    dst.write(src.read(1000))
    _crash()


@pytest.mark.parametrize(
    ("target", "replacement"),
    [("os.link", _crash), ("copy_with_checksums", _copy_half_then_crash)],
    ids=["publish", "copy"],
)
def test_crash_before_publish_leaves_nothing(
    store: LocalDirStore,
    recording: RecordingFile,
    monkeypatch: pytest.MonkeyPatch,
    target: str,
    replacement: Callable[..., None],
) -> None:
    with monkeypatch.context() as patched:
        patched.setattr(f"{client.__name__}.{target}", replacement)
        with pytest.raises(OSError, match="simulated crash"):
            store.put("a/1.wav", recording.path, recording.checksums)
    directory = store.archive.root / "a"
    assert store.head("a/1.wav") is None
    assert _files(directory) == set()
    store.put("a/1.wav", recording.path, recording.checksums)
    assert _files(directory) == {"1.wav", ".1.wav.sha256"}


def test_crash_after_publish_recovers_the_sidecar(
    store: LocalDirStore, recording: RecordingFile, monkeypatch: pytest.MonkeyPatch
) -> None:
    with monkeypatch.context() as patched:
        patched.setattr(os, "replace", _crash)
        with pytest.raises(OSError, match="simulated crash"):
            store.put("a/1.wav", recording.path, recording.checksums)
    directory = store.archive.root / "a"
    assert _files(directory) == {"1.wav"}
    head = store.head("a/1.wav")
    assert head is not None
    assert head.sha256_hex == recording.checksums.sha256_hex
    assert store.put("a/1.wav", recording.path, recording.checksums) == head
    assert _files(directory) == {"1.wav", ".1.wav.sha256"}


def test_fsync_is_configurable(tmp_path: Path, recording: RecordingFile, monkeypatch: pytest.MonkeyPatch) -> None:
    synced: list[int] = []
    real_fsync = os.fsync

    def counting_fsync(fd: int) -> None:
        synced.append(fd)
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", counting_fsync)
    _make_store(tmp_path / "off", fsync=False).put("a/1.wav", recording.path, recording.checksums)
    assert synced == []
    _make_store(tmp_path / "on", fsync=True).put("a/1.wav", recording.path, recording.checksums)
    assert len(synced) >= 4  # object, sidecar and the directories holding them


def test_check_creates_the_root_and_reports_free_space(tmp_path: Path) -> None:
    result = _make_store(tmp_path / "new").check()
    root = tmp_path / "new" / "archive"
    assert result.ok, result.detail
    assert str(root) in result.detail
    assert re.search(r"\d+\.\d GiB free", result.detail)
    assert list(root.iterdir()) == []


def test_check_fails_when_the_root_is_a_file(tmp_path: Path) -> None:
    (tmp_path / "archive").write_text("not a directory")
    result = _make_store(tmp_path).check()
    assert not result.ok
    assert str(tmp_path / "archive") in result.detail


def test_check_fails_on_a_read_only_directory(tmp_path: Path) -> None:
    """Runs the check in a child process; as root, without CAP_DAC_OVERRIDE, so file modes bind it too."""
    root = tmp_path / "archive"
    root.mkdir()
    root.chmod(0o555)
    script = (
        "import sys; from pathlib import Path; from tests.plugins.recording.test_localdir import _make_store;"
        "r = _make_store(Path(sys.argv[1])).check(); print(r.ok); print(r.detail)"
    )
    command = [sys.executable, "-c", script, str(tmp_path)]
    if os.geteuid() == 0:
        drop = "-dac_override,-dac_read_search"
        command = ["setpriv", f"--inh-caps={drop}", f"--bounding-set={drop}", *command]
    try:
        result = subprocess.run(command, capture_output=True, text=True, check=True, cwd=REPO, timeout=60)
    finally:
        root.chmod(0o755)
    ok, detail = result.stdout.splitlines()[:2]
    assert ok == "False"
    assert str(root) in detail
    assert "not writable" in detail


def _race(count: int, work: Callable[[int], StoredObject]) -> list[StoredObject | Exception]:
    """Run ``work(i)`` for i in range(count) on as many threads released together."""
    barrier = threading.Barrier(count)
    results: list[StoredObject | Exception] = [RuntimeError("thread did not finish")] * count

    def run(index: int) -> None:
        barrier.wait()
        try:
            results[index] = work(index)
        except Exception as exc:
            results[index] = exc

    threads = [threading.Thread(target=run, args=(index,)) for index in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=10)
    return results


def test_concurrent_puts_of_the_same_content(store: LocalDirStore, recording: RecordingFile) -> None:
    results = _race(8, lambda _: store.put(NESTED_KEY, recording.path, recording.checksums))
    assert all(result == results[0] for result in results), results
    assert store.head(NESTED_KEY) == results[0]
    directory = store.archive.root / "site/2026/11/23"
    assert _files(directory) == {"42.wav", ".42.wav.sha256"}
    assert hashlib.sha256((directory / "42.wav").read_bytes()).hexdigest() == recording.checksums.sha256_hex


def test_concurrent_puts_of_different_content_keep_one(
    store: LocalDirStore, recording: RecordingFile, tmp_path: Path
) -> None:
    other = make_recording_file(tmp_path / "source" / "other.wav", recording.checksums.size, seed=13)
    files = [recording, other]
    results = _race(8, lambda i: store.put("a/1.wav", files[i % 2].path, files[i % 2].checksums))
    stored = [result for result in results if isinstance(result, StoredObject)]
    refused = [result for result in results if isinstance(result, IntegrityError)]
    assert len(stored) == 4
    assert len(refused) == 4
    winner = stored[0].sha256_hex
    assert all(result == stored[0] for result in stored)
    assert winner in {recording.checksums.sha256_hex, other.checksums.sha256_hex}
    assert hashlib.sha256((store.archive.root / "a" / "1.wav").read_bytes()).hexdigest() == winner
    assert store.head("a/1.wav") == stored[0]
    assert _files(store.archive.root / "a") == {"1.wav", ".1.wav.sha256"}
