"""The Asterisk dialer's spool (no PBX needed): which files are finished; each reported once; a call's own
recording left to its call; a killed run's recordings found by their attempt; other files only as configured."""

from __future__ import annotations

import logging
import os
import threading
import time
import wave
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from pydantic import SecretStr
from sqlalchemy import select

from cartera.core.store.schema import RecordingRow
from cartera.node import Node
from cartera.plugin.testing import CapturingContext
from cartera.plugins.dialers.asterisk_ami.config import AsteriskAmiConfig
from cartera.plugins.dialers.asterisk_ami.recordings import finished, wait_until_finished
from cartera.plugins.dialers.asterisk_ami.spool import SpoolWatcher
from tests.conftest import write_sites
from tests.recording_spool import spool_watcher

RATE = 8000
PREFIX = "cartera-test"


def _wav(path: Path, seconds: float, age_s: float = 60) -> Path:
    """A mono 8 kHz PCM WAV of ``seconds``, last written ``age_s`` ago."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with wave.open(str(path), "wb") as audio:
        audio.setnchannels(1)
        audio.setsampwidth(2)
        audio.setframerate(RATE)
        audio.writeframes(bytes(2 * round(seconds * RATE)))
    return _aged(path, age_s)


def _file(path: Path, data: bytes, age_s: float = 60) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return _aged(path, age_s)


def _aged(path: Path, age_s: float) -> Path:
    stamp = time.time() - age_s
    os.utime(path, (stamp, stamp))
    return path


def _watcher(tmp_path: Path, **settings: object) -> tuple[SpoolWatcher, CapturingContext]:
    config = AsteriskAmiConfig.model_validate(
        {
            "username": "cartera",
            "secret": SecretStr("not-used-without-ami"),
            "queue": "cobranza",
            "spool_dir": tmp_path / "monitor",
            **settings,
        }
    )
    context = CapturingContext(tmp_path / "data")
    return SpoolWatcher(config, context, PREFIX), context


def test_the_spool_folder_defaults_to_asterisks_monitor_and_other_files_are_left_alone(tmp_path: Path) -> None:
    config = AsteriskAmiConfig.model_validate({"username": "u", "secret": "s" * 16, "queue": "q"})
    assert (config.spool_dir, config.spool_patterns, config.quiet_period_s) == (
        Path("/var/spool/asterisk/monitor"),
        (),
        5,
    )
    watcher, context = _watcher(tmp_path)
    _wav(tmp_path / "monitor" / "outside-cartera.wav", 1.0)
    assert watcher.scan() == 0  # another site's, or a manual call's: only spool_patterns takes those
    assert context.recordings == []


def test_files_matching_the_patterns_are_reported_once_finished(tmp_path: Path) -> None:
    watcher, context = _watcher(tmp_path, spool_patterns=["*.wav", "*.gsm"])
    spool = tmp_path / "monitor"
    old = _wav(spool / "a.wav", 3.0)
    nested = _file(spool / "2026" / "b.gsm", bytes(330))
    fresh = _wav(spool / "c.wav", 1.0, age_s=0)  # being written: inside the quiet period
    _file(spool / "headerless.wav", b"RIFF")
    _wav(spool / ".hidden.wav", 1.0)
    _wav(spool / ".tmp" / "d.wav", 1.0)
    _file(spool / "notes.txt", b"x")
    assert watcher.scan() == 2
    found = {recording.path: recording for recording in context.recordings}
    assert sorted(found) == sorted([old, nested])
    wav = found[old]
    assert (wav.attempt_id, wav.agent, wav.duration_s) == (None, None, 3.0)
    ended = datetime.fromtimestamp(old.stat().st_mtime, UTC)
    assert wav.started_at == ended - timedelta(seconds=3.0)
    assert found[nested].duration_s == 0.0
    assert watcher.scan() == 0  # each file once
    _aged(fresh, 10)
    assert watcher.scan() == 1
    assert context.recordings[-1].path == fresh


def test_a_calls_recording_is_left_to_the_call_unless_it_gave_up_waiting(tmp_path: Path) -> None:
    watcher, context = _watcher(tmp_path, spool_patterns=["*.wav"])
    reported = watcher.recording_path(f"{PREFIX}-1-abc")
    given_up = watcher.recording_path(f"{PREFIX}-2-abc")
    assert reported == tmp_path / "monitor" / f"{PREFIX}-1-abc.wav"
    for path in (reported, given_up):
        watcher.call_started(path)
        _wav(path, 2.0)
    assert watcher.scan() == 0
    watcher.call_ended(reported, 1, reported=True)  # the call reported it, with its attempt
    watcher.call_ended(given_up, 2, reported=False)  # the call gave up waiting: the scan reports it, attempt kept
    assert watcher.scan() == 1
    assert [(recording.path, recording.attempt_id) for recording in context.recordings] == [(given_up, 2)]


def test_a_killed_runs_recordings_are_reported_with_their_attempt_at_start(tmp_path: Path) -> None:
    watcher, context = _watcher(tmp_path, spool_scan_s=3600)
    requested = datetime.now(UTC) - timedelta(minutes=5)
    spool = tmp_path / "monitor"
    left = _wav(spool / f"{PREFIX}-7-0a1b2c.wav", 2.0)  # the killed run's token
    _wav(spool / f"{PREFIX}-7-ffffff.wav", 2.0, age_s=3600)  # attempt 7 of another store, before the request
    _wav(spool / f"{PREFIX}-70-0a1b2c.wav", 2.0)  # attempt 70
    watcher.start()
    try:
        watcher.left_by_a_killed_run(7, requested)
        watcher.left_by_a_killed_run(8, requested)  # not answered: no recording
        (recording,) = context.wait_for_recordings(1, timeout=10)
    finally:
        watcher.stop()
    assert (recording.path, recording.attempt_id) == (left, 7)
    assert watcher.scan() == 0


@pytest.mark.abuse
def test_a_killed_runs_attempt_never_takes_the_recordings_of_a_site_whose_name_extends_its_own(
    tmp_path: Path,
) -> None:
    """Site ``test``'s attempt 2 looked for ``cartera-test-2-*``: site ``test-2``'s recordings matched, were taken
    as this site's and, archived, deleted from the spool the other site reads."""
    watcher, context = _watcher(tmp_path, spool_scan_s=3600)
    spool = tmp_path / "monitor"
    others = [_wav(spool / f"{PREFIX}-2-{attempt}-0a1b2c.wav", 1.0) for attempt in (5, 51)]  # site test-2's
    own = _wav(spool / f"{PREFIX}-2-ab12cd.wav", 1.0)
    watcher.left_by_a_killed_run(2, datetime.now(UTC) - timedelta(minutes=5))
    assert watcher.scan() == 1
    assert [(recording.path, recording.attempt_id) for recording in context.recordings] == [(own, 2)]
    assert all(path.exists() for path in others)


def test_a_file_is_finished_once_unmodified_for_the_quiet_period(tmp_path: Path) -> None:
    path = _wav(tmp_path / "x.wav", 1.0, age_s=3)
    assert finished(path, quiet_s=5) is None
    assert finished(path, quiet_s=2) is not None
    assert finished(tmp_path / "missing.wav", quiet_s=0) is None
    assert finished(_file(tmp_path / "short.wav", b"RIFF"), quiet_s=0) is None  # no WAV header yet
    assert finished(_file(tmp_path / "y.gsm", b"\x00"), quiet_s=0) is not None


def test_waiting_for_a_calls_recording_ends_when_asterisk_stops_writing(tmp_path: Path) -> None:
    path = tmp_path / "call.wav"
    assert not wait_until_finished(path, timeout=0.3)

    def record() -> None:
        with path.open("wb") as sink:
            for _ in range(8):
                sink.write(bytes(4000))
                sink.flush()
                time.sleep(0.02)

    writer = threading.Thread(target=record)
    writer.start()
    try:
        assert wait_until_finished(path, timeout=10)
        assert not writer.is_alive()
    finally:
        writer.join()
    assert path.stat().st_size == 32_000


@pytest.mark.abuse
def test_only_regular_files_are_reported_a_symlink_or_fifo_is_skipped_with_one_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    watcher, context = _watcher(tmp_path, spool_patterns=["*.wav"])
    spool = tmp_path / "monitor"
    victim = _file(tmp_path / "victim" / "important.wav", b"RIFF" + bytes(100))
    linked = spool / "call-123.wav"
    linked.parent.mkdir(parents=True)
    linked.symlink_to(victim)
    killed = spool / f"{PREFIX}-9-0a1b2c.wav"  # a killed run's name, pointing elsewhere
    killed.symlink_to(victim)
    fifo = spool / "pipe.wav"
    os.mkfifo(fifo)
    regular = _wav(spool / "real.wav", 1.0)
    watcher.left_by_a_killed_run(9, datetime.now(UTC) - timedelta(hours=2))
    with caplog.at_level(logging.WARNING):
        assert watcher.scan() == 1
        assert watcher.scan() == 0
    assert [recording.path for recording in context.recordings] == [regular]
    warned = [record.getMessage() for record in caplog.records if record.levelno >= logging.WARNING]
    assert sorted(warned) == sorted(f"not a regular file, left alone: {path}" for path in (linked, killed, fifo))
    assert victim.read_bytes() == b"RIFF" + bytes(100)


@pytest.mark.abuse
def test_a_calls_recording_that_is_a_symlink_is_never_finished(tmp_path: Path) -> None:
    target = _wav(tmp_path / "elsewhere.wav", 1.0)
    path = tmp_path / "monitor" / "call.wav"
    path.parent.mkdir()
    path.symlink_to(target)
    assert finished(target, 0) is not None
    assert finished(path, 0) is None
    assert not wait_until_finished(path, 0.3)


@pytest.mark.abuse
def test_a_file_whose_name_is_not_utf8_is_skipped_with_one_warning_and_the_rest_archived(
    tmp_path: Path, open_node: Callable[..., Node], caplog: pytest.LogCaptureFixture
) -> None:
    """Round 21 C-F12: a spool file named from caller data in Latin-1 (``Jos\\xe9``) raised UnicodeEncodeError in
    the catalog; the scan stopped there, every scan, and no file sorted after it was ever archived."""
    node = open_node(write_sites(tmp_path))
    spool = tmp_path / "spool"
    bad = Path(os.fsdecode(bytes(spool) + b"/a-Jos\xe9.wav"))
    made = [_wav(bad, 1.0), _wav(spool / "e-good.wav", 1.0), _wav(spool / "f-good.wav", 1.0)]
    watcher = spool_watcher(node, spool)
    with caplog.at_level(logging.WARNING):
        assert watcher.scan() == 2
        assert watcher.scan() == 0
    warned = [(r.getMessage(), getattr(r, "fields", {})) for r in caplog.records if r.levelno >= logging.WARNING]
    assert warned == [("asterisk.spool_name_not_utf8", {"file": f"{spool}/a-Jos\\xe9.wav"})]
    with node.db.session() as session:
        assert sorted(session.scalars(select(RecordingRow.local_path))) == [str(path) for path in made[1:]]
    assert node.archiver is not None
    assert node.archiver.run_once().archived == 2
    assert bad.exists()  # left where it is, for the operator to rename
