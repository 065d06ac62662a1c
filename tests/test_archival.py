"""The archival job on a real store: the dialer's reports, keys, verification, per-file failures, retention, hold,
CLI. Recordings enter through the one door, a dialer's report (here the Asterisk dialer's spool watcher)."""

from __future__ import annotations

import hashlib
import os
import sqlite3
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, cast

import pytest

from cartera.core.adapters import RecordingStore
from cartera.core.errors import ObjectLocked, StoreUnavailable, UsageError
from cartera.core.models import Recording
from cartera.node import Node
from cartera.plugins.recording.s3.plugin import S3Store
from tests.conftest import REPO, run_site, run_site_process
from tests.peers.s3 import Fault, S3Endpoint, fault_proxy, s3_recording_table, spool_recordings, write_archival_site
from tests.recording_spool import report_spool, spool_watcher

pytestmark = pytest.mark.s3


@pytest.fixture
def s3_env(moto_s3: S3Endpoint, monkeypatch: pytest.MonkeyPatch) -> S3Endpoint:
    monkeypatch.setenv("S3_ACCESS_KEY", moto_s3.access_key)
    monkeypatch.setenv("S3_SECRET_KEY", moto_s3.secret_key)
    return moto_s3


@pytest.fixture
def bucket(s3_env: S3Endpoint) -> str:
    return s3_env.new_bucket()


@pytest.fixture
def s3_site(tmp_path: Path, s3_env: S3Endpoint, bucket: str) -> Path:
    return write_archival_site(tmp_path, s3_recording_table(s3_env, bucket))


def _rows(node: Node) -> list[tuple[str, str, str | None, str | None]]:
    with sqlite3.connect(node.site.data_dir.parent / "t.db") as db:
        return db.execute("select local_path, state, store_key, sha256 from recordings order by id").fetchall()


def test_spool_files_are_archived_once_finished(
    s3_site: Path, open_node: Callable[[Path], Node], s3_env: S3Endpoint, bucket: str
) -> None:
    spool = s3_site.parent / "spool"
    made = spool_recordings(spool, 3, 20_000, age_s=60)
    growing = spool / "in-progress.wav"
    growing.write_bytes(b"RIFF" + bytes(60))  # just written: inside the quiet period
    (spool / ".hidden.wav").write_bytes(b"x")
    (spool / "notes.txt").write_bytes(b"x")
    node = open_node(s3_site)
    assert node.archiver is not None
    watcher = spool_watcher(node, spool, quiet_period_s=30)
    assert watcher.scan() == 3
    run = node.archiver.run_once()
    assert (run.found, run.archived, run.failed, run.deleted_local) == (3, 3, 0, 3)
    rows = _rows(node)
    assert [Path(path).name for path, *_ in rows] == sorted(made)
    assert {state for _, state, *_ in rows} == {"verified"}
    objects = s3_env.objects(bucket)
    assert sorted(objects) == sorted(key for _, _, key, _ in rows if key)
    for _path, _state, key, sha256 in rows:
        assert key is not None
        assert key.startswith("t/20")
        assert key.endswith(".wav")
        assert "/rec-" in key
        head = s3_env.client().head_object(Bucket=bucket, Key=key)
        assert head["Metadata"]["sha256"] == sha256
    assert sorted(sha or "" for *_, sha in rows) == sorted(made.values())
    assert sorted(p.name for p in spool.rglob("*") if p.is_file()) == [".hidden.wav", "in-progress.wav", "notes.txt"]
    stamp = time.time() - 60
    os.utime(growing, (stamp, stamp))
    assert watcher.scan() == 1
    again = node.archiver.run_once()
    assert (again.found, again.archived) == (1, 1)
    assert node.archiver.run_once().archived == 0


def test_a_reported_recording_is_catalogued_once(
    s3_site: Path, open_node: Callable[[Path], Node], s3_env: S3Endpoint, bucket: str
) -> None:
    spool = s3_site.parent / "spool"
    path = spool / "reported.wav"
    path.write_bytes(os.urandom(5000))  # fresh: the spool scan alone would wait
    node = open_node(s3_site)
    assert node.archiver is not None
    first = node.archiver.catalog(Recording(path, None, datetime(2026, 11, 23, 14, 0, tzinfo=UTC), 1.0))
    assert node.archiver.catalog(Recording(path, 7, datetime(2026, 11, 24, 9, 0, tzinfo=UTC), 2.0)) == first
    run = node.archiver.run_once()
    assert (run.found, run.archived) == (1, 1)
    assert list(s3_env.objects(bucket)) == ["t/2026/11/23/rec-1.wav"]
    assert len(_rows(node)) == 1


def test_key_template_is_configurable(
    tmp_path: Path, s3_env: S3Endpoint, bucket: str, open_node: Callable[[Path], Node]
) -> None:
    site = write_archival_site(
        tmp_path, s3_recording_table(s3_env, bucket), archival='key_template = "calls/{yyyy}{mm}{dd}/{call_id}.{ext}"'
    )
    path = tmp_path / "spool" / "x.WAV"
    path.write_bytes(b"data")
    node = open_node(site)
    assert node.archiver is not None
    node.archiver.catalog(Recording(path, None, datetime(2026, 11, 24, 3, 0, tzinfo=UTC), 1.0))
    node.archiver.run_once()
    assert list(s3_env.objects(bucket)) == ["calls/20261123/rec-1.wav"]  # the site's date (Bogotá)


def test_a_vanished_file_skips_only_that_file(s3_site: Path, open_node: Callable[[Path], Node]) -> None:
    spool = s3_site.parent / "spool"
    made = spool_recordings(spool, 3, 10_000)
    node = open_node(s3_site)
    assert node.archiver is not None
    report_spool(node, spool)
    vanished = sorted(spool.rglob("*.wav"))[1]
    vanished.unlink()
    run = node.archiver.run_once()
    assert (run.archived, run.missing, run.failed) == (2, 1, 0)
    assert not run.ok
    states = {Path(path).name: state for path, state, *_ in _rows(node)}
    assert states == {name: ("missing" if name == vanished.name else "verified") for name in made}
    check = {line.what: line.result for line in node.check()}["recordings"]
    assert not check.ok
    assert "1 missing" in check.detail
    assert "vanished" in check.detail


def test_a_permission_error_skips_only_that_file(
    s3_site: Path, s3_env: S3Endpoint, bucket: str, open_node: Callable[[Path], Node]
) -> None:
    """The CLI in a child process without CAP_DAC_OVERRIDE, so even root obeys the unreadable file's mode."""
    spool = s3_site.parent / "spool"
    spool_recordings(spool, 3, 10_000)
    assert report_spool(open_node(s3_site), spool) == 3
    unreadable = sorted(spool.rglob("*.wav"))[0]
    unreadable.chmod(0o000)
    command = [sys.executable, str(REPO / "run_site.py"), "--config", str(s3_site), "--site", "t", "archive"]
    if os.geteuid() == 0:
        drop = "-dac_override,-dac_read_search"
        command = ["setpriv", f"--inh-caps={drop}", f"--bounding-set={drop}", *command]
    done = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False, cwd=s3_site.parent)
    assert done.returncode == 1, done.stderr
    assert "2 archived and verified, 1 failed" in done.stdout
    assert "PermissionError" in done.stderr
    assert len(s3_env.objects(bucket)) == 2
    assert unreadable.exists()


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 1 MiB tmpfs: a local disk that fills up."""
    mount = tmp_path / "small-disk"
    mount.mkdir()
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs to fill up needs root")
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mount)], check=True)
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def test_a_full_disk_skips_only_that_file(tmp_path: Path, small_disk: Path, open_node: Callable[[Path], Node]) -> None:
    # One upload at a time: a small file written while the big one fills the disk would fail too.
    recording = f'plugin = "localdir"\npath = "{small_disk}"\nfsync = false'
    site = write_archival_site(tmp_path, recording, archival="workers = 1")
    spool = tmp_path / "spool"
    spool_recordings(spool, 3, 100_000)
    (spool / "big.wav").write_bytes(os.urandom(2_000_000))
    stamp = time.time() - 60
    os.utime(spool / "big.wav", (stamp, stamp))
    node = open_node(site)
    assert node.archiver is not None
    assert report_spool(node, spool) == 4
    run = node.archiver.run_once()
    assert (run.archived, run.failed) == (3, 1)
    failed = [(Path(path).name, state) for path, state, *_ in _rows(node) if state != "verified"]
    assert failed == [("big.wav", "failed")]
    assert (spool / "big.wav").exists()
    assert "No space left on device" in node.archiver.backlog().last_error  # type: ignore[operator]


def test_retention_purges_expired_recordings_except_on_legal_hold(
    tmp_path: Path, s3_env: S3Endpoint, bucket: str, open_node: Callable[[Path], Node]
) -> None:
    site = write_archival_site(
        tmp_path, s3_recording_table(s3_env, bucket), archival="[sites.t.archival.retention]\ndefault_days = 1"
    )
    spool = tmp_path / "spool"
    spool_recordings(spool, 2, 5000, age_s=3 * 86400)  # expired
    spool_recordings(spool, 1, 5000, age_s=60, seed=1)  # retained until tomorrow
    node = open_node(site)
    assert node.archiver is not None
    report_spool(node, spool)
    held = node.library.set_legal_hold(1, True, actor="os:tester", reason="case 77")
    assert held.legal_hold
    run = node.archiver.run_once()
    assert (run.archived, run.purged) == (3, 1)
    states = [state for _, state, *_ in _rows(node)]
    assert states == ["verified", "purged", "verified"]
    keys = [key or "" for _, _, key, _ in _rows(node)]
    assert sorted(s3_env.objects(bucket)) == sorted([keys[0], keys[2]])
    store = node.adapter("recording", RecordingStore)
    for key in (keys[0], keys[2]):  # held, and retained until tomorrow: the store refuses too
        with pytest.raises(ObjectLocked):
            store.delete(key)
    node.library.set_legal_hold(1, False, actor="os:tester", reason="case closed")
    assert node.archiver.run_once().purged == 1
    assert list(s3_env.objects(bucket)) == [keys[2]]
    with sqlite3.connect(tmp_path / "var" / "t.db") as db:
        actions = db.execute("select action, actor from audit_log order by id").fetchall()
    assert actions == [
        ("recordings.hold", "os:tester"),
        ("recordings.purge", "system"),
        ("recordings.release", "os:tester"),
        ("recordings.purge", "system"),
    ]


def test_a_hold_put_on_during_the_upload_reaches_the_store(
    s3_site: Path, s3_env: S3Endpoint, bucket: str, open_node: Callable[[Path], Node]
) -> None:
    """A supervisor holds a recording after the run read the catalog, while it uploads: the store gets it too."""
    spool_recordings(s3_site.parent / "spool", 1, 5000)
    node = open_node(s3_site)
    assert node.archiver is not None
    report_spool(node, s3_site.parent / "spool")
    store = node.adapter("recording", RecordingStore)

    def hold_now(**_: Any) -> None:
        node.library.set_legal_hold(1, True, actor="os:tester", reason="case 78")

    cast(S3Store, store).bucket.client.meta.events.register("before-send.s3.PutObject", hold_now)
    assert node.archiver.run_once().archived == 1
    key = _rows(node)[0][2]
    assert key is not None
    tags = s3_env.client().get_object_tagging(Bucket=bucket, Key=key)["TagSet"]
    assert {"Key": "cartera-legal-hold", "Value": "on"} in tags
    with pytest.raises(ObjectLocked):
        store.delete(key)


@pytest.mark.abuse
def test_a_hold_while_the_store_is_down_is_held_and_audited_and_says_the_store_has_not_got_it(
    tmp_path: Path, s3_env: S3Endpoint, bucket: str, open_node: Callable[[Path], Node]
) -> None:
    """The catalog's hold and its audit row are one: a store that is down when a recording is held leaves it held
    in the catalog (the purge job skips it) and audited, the failure audited and reported; a release while the
    store is down changes nothing. Holding it again once the store is back puts the store's hold on."""
    env = {"S3_ACCESS_KEY": s3_env.access_key, "S3_SECRET_KEY": s3_env.secret_key}
    with fault_proxy(s3_env.url) as proxy:
        table = s3_recording_table(s3_env, bucket, proxy.url, max_attempts=1, connect_timeout_s=1, read_timeout_s=1)
        site = write_archival_site(tmp_path, table)
        spool_recordings(tmp_path / "spool", 1, 5000)
        node = open_node(site)
        assert node.archiver is not None
        report_spool(node, tmp_path / "spool")
        assert node.archiver.run_once().archived == 1
        key = _rows(node)[0][2]
        assert key is not None
        proxy.inject(*(Fault("500", method) for method in ("HEAD", "GET", "PUT") for _ in range(20)))  # down
        with pytest.raises(StoreUnavailable) as raised:
            node.library.set_legal_hold(1, True, actor="os:tester", reason="case 99")
        assert "recording 1 is on legal hold in the catalog" in str(raised.value)
        assert "recordings hold 1" in str(raised.value)  # what to run once the store is back
        held = run_site(site, "recordings", "hold", "1", "--reason", "case 99", env=env)
        assert held.returncode == 1, held.stderr
        assert "recording 1 is on legal hold in the catalog" in held.stderr
        with pytest.raises(StoreUnavailable) as refused:
            node.library.set_legal_hold(1, False, actor="os:tester", reason="case closed")
        assert "still on legal hold" in str(refused.value)
        with sqlite3.connect(tmp_path / "var" / "t.db") as db:
            assert db.execute("select legal_hold from recordings").fetchall() == [(1,)]
        proxy.faults.clear()  # back
        assert node.library.set_legal_hold(1, True, actor="os:tester", reason="case 99").legal_hold
    tags = s3_env.client().get_object_tagging(Bucket=bucket, Key=key)["TagSet"]
    assert {"Key": "cartera-legal-hold", "Value": "on"} in tags
    with sqlite3.connect(tmp_path / "var" / "t.db") as db:
        audited = db.execute("select action, actor, details from audit_log order by id").fetchall()
    assert [(action, actor) for action, actor, _ in audited] == [
        ("recordings.hold", "os:tester"),
        ("recordings.hold_store_failed", "os:tester"),
        ("recordings.hold", held_actor := audited[2][1]),
        ("recordings.hold_store_failed", held_actor),
        ("recordings.release_store_failed", "os:tester"),
        ("recordings.hold", "os:tester"),
    ]
    assert '"case 99"' in audited[0][2]
    assert "error" in audited[1][2]


def test_backfill_url_and_check_from_the_command_line(
    s3_site: Path, s3_env: S3Endpoint, bucket: str, open_node: Callable[[Path], Node]
) -> None:
    env = {"S3_ACCESS_KEY": s3_env.access_key, "S3_SECRET_KEY": s3_env.secret_key}
    made = spool_recordings(s3_site.parent / "spool", 120, 2000)
    assert report_spool(open_node(s3_site), s3_site.parent / "spool") == 120
    backfill = run_site_process(s3_site, "archive", "--backfill", env=env, timeout=300)
    assert backfill.returncode == 0, backfill.stderr
    assert "120/120" in backfill.stderr  # the progress bar
    assert "120 archived and verified, 0 failed" in backfill.stdout
    assert len(s3_env.objects(bucket)) == 120
    check = run_site(s3_site, "check", env=env)
    assert check.returncode == 0, check.stdout + check.stderr
    assert "ok    recordings: none waiting on local disk" in check.stdout
    url = run_site(s3_site, "recordings", "url", "7", "--expires", "60", env=env)
    assert url.returncode == 0, url.stderr
    with urllib.request.urlopen(url.stdout.strip(), timeout=10) as response:
        assert hashlib.sha256(response.read()).hexdigest() in made.values()
    too_long = run_site(s3_site, "recordings", "url", "7", "--expires", "901", env=env)
    assert too_long.returncode == 2
    assert "at most" in too_long.stderr or "between 1 and 900" in too_long.stderr
    with sqlite3.connect(s3_site.parent / "var" / "t.db") as db:
        audited = db.execute(
            "select action, subject, details from audit_log where action like 'recordings.%'"
        ).fetchall()
    assert [(action, subject) for action, subject, _ in audited] == [("recordings.url", "recording:7")]
    assert '"expires_s": 60' in audited[0][2]


def test_url_is_refused_by_a_store_that_cannot_issue_one(open_node: Callable[[Path], Node], tmp_path: Path) -> None:
    site = write_archival_site(tmp_path, 'plugin = "localdir"\npath = "archive"')
    spool_recordings(tmp_path / "spool", 1, 100)
    node = open_node(site)
    assert node.archiver is not None
    report_spool(node, tmp_path / "spool")
    node.archiver.run_once()
    with pytest.raises(Exception, match="cannot issue expiring URLs"):
        node.library.url(1, 60, actor="os:tester")
    with pytest.raises(UsageError, match="between 1 and 900"):
        node.library.url(1, 0, actor="os:tester")
