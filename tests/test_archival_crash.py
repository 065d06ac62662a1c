"""Crash safety: a real node process archiving to a real store, killed with SIGKILL at random instants, then
run to the end. Every recording must be archived exactly once: none lost, none duplicated, catalog and bucket
agreeing byte for byte. On radosgw uploads are guarded by a HEAD; on SeaweedFS, which serves the workers
concurrently, by conditional PUTs (If-None-Match: *), so a run after a kill meets 412s for keys already there."""

from __future__ import annotations

import os
import random
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from cartera.node import Node
from cartera.plugins.dialers.asterisk_ami.spool import SpoolWatcher
from tests.conftest import REPO
from tests.peers.s3 import S3Endpoint, s3_recording_table, spool_recordings, write_archival_site
from tests.recording_spool import spool_watcher

pytestmark = pytest.mark.s3
TRIALS = 8
RECORDINGS = 40  # in the spool at the start
PER_TRIAL = 20  # more arrive before each trial, so every run has work in flight when it is killed


def _archive(site: Path, env: dict[str, str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, str(REPO / "run_site.py"), "--config", str(site), "--site", "t", "archive"],
        cwd=site.parent,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )


def _verified(database: Path) -> set[str]:
    if not database.exists():
        return set()
    with sqlite3.connect(database) as db:
        return {Path(p).name for (p,) in db.execute("select local_path from recordings where state='verified'")}


def _dialer(request: pytest.FixtureRequest, site: Path, endpoint: S3Endpoint) -> SpoolWatcher:
    """What reports the spool's recordings to the site's catalog, as the Asterisk dialer does."""
    monkeypatch: pytest.MonkeyPatch = request.getfixturevalue("monkeypatch")
    monkeypatch.setenv("S3_ACCESS_KEY", endpoint.access_key)
    monkeypatch.setenv("S3_SECRET_KEY", endpoint.secret_key)
    open_node: Callable[[Path], Node] = request.getfixturevalue("open_node")
    return spool_watcher(open_node(site), site.parent / "spool")


@pytest.mark.parametrize(("store", "guard"), [("radosgw", "head"), ("seaweedfs", "if-none-match")])
def test_kill_9_at_random_instants_loses_and_duplicates_nothing(
    tmp_path: Path, request: pytest.FixtureRequest, store: str, guard: str
) -> None:
    endpoint: S3Endpoint = request.getfixturevalue(store)
    bucket = endpoint.new_bucket()
    table = s3_recording_table(endpoint, bucket, no_overwrite=guard)
    site = write_archival_site(tmp_path, table, archival="workers = 4")
    made = spool_recordings(tmp_path / "spool", RECORDINGS, 150_000)
    dialer = _dialer(request, site, endpoint)
    assert dialer.scan() == RECORDINGS
    env = {**os.environ, "S3_ACCESS_KEY": endpoint.access_key, "S3_SECRET_KEY": endpoint.secret_key}
    # The store is created and migrated first, so every trial exercises archival rather than start-up (a kill
    # during the first migration is covered by tests/test_store.py).
    migrated = subprocess.run(
        [sys.executable, str(REPO / "run_site.py"), "--config", str(site), "--site", "t", "check"],
        cwd=site.parent,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert "ok    store:" in migrated.stdout, migrated.stdout + migrated.stderr
    rng = random.Random(20261123)
    killed_mid_run = 0
    ended_alone: list[str] = []
    database = tmp_path / "var" / "t.db"
    for trial in range(1, TRIALS + 1):
        made |= spool_recordings(tmp_path / "spool", PER_TRIAL, 150_000, seed=trial)
        assert dialer.scan() == PER_TRIAL
        # Kill at a random instant after the run verified a random number of this trial's recordings: always
        # mid-run, however fast the machine (a fixed delay lets a fast run finish first).
        target = len(_verified(database)) + rng.randint(1, PER_TRIAL - 1)
        process = _archive(site, env)
        deadline = time.monotonic() + 120
        while process.poll() is None and len(_verified(database)) < target and time.monotonic() < deadline:
            time.sleep(0.01)
        time.sleep(rng.uniform(0, 0.05))
        if process.poll() is None:
            process.kill()
            killed_mid_run += 1
        process.wait(30)
        assert process.stderr is not None
        if process.returncode >= 0:
            ended_alone.append(f"exit {process.returncode}: {process.stderr.read().decode()[-300:]}")
        process.stderr.close()
        still_local = {path.name for path in (tmp_path / "spool").rglob("*.wav")}
        assert set(made) == still_local | _verified(database), (
            "a recording was neither on local disk nor verified in the store"
        )
    assert killed_mid_run >= TRIALS // 2, f"the trials should mostly kill a run in progress: {ended_alone}"
    final = _archive(site, env)
    assert final.wait(300) == 0, final.stderr.read().decode() if final.stderr else ""
    with sqlite3.connect(tmp_path / "var" / "t.db") as db:
        rows = db.execute("select local_path, state, store_key, sha256 from recordings").fetchall()
    assert len(rows) == len(made) == RECORDINGS + TRIALS * PER_TRIAL
    assert sorted(Path(path).name for path, *_ in rows) == sorted(made)
    assert {state for _, state, *_ in rows} == {"verified"}
    catalog = {key: sha for _, _, key, sha in rows}
    assert len(catalog) == len(made)  # one key per recording
    objects = endpoint.objects(bucket)
    assert set(objects) == set(catalog)  # nothing in the bucket the catalog does not know
    assert all(size == 150_000 for size in objects.values())
    client = endpoint.client()
    for key, sha in catalog.items():
        assert client.head_object(Bucket=bucket, Key=key)["Metadata"]["sha256"] == sha
    assert sorted(catalog.values()) == sorted(made.values())
    assert list((tmp_path / "spool").rglob("*.wav")) == []
    assert client.list_multipart_uploads(Bucket=bucket).get("Uploads", []) == []
