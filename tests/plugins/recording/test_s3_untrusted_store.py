"""A store whose listings and tags cannot be trusted (round 18 I1, I3): the probe deletes only its own keys, and
one object with a retain-until tag that is not a date keeps only that object, never the rest of the run."""

from __future__ import annotations

import logging
import re
import sqlite3
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from cartera.core.errors import IntegrityError, ObjectLocked
from cartera.core.testing.context import CapturingContext
from cartera.core.testing.recording_store import make_recording_file
from cartera.node import Node
from cartera.plugins.recording.s3.client import PROBE_PREFIX, RETAIN_TAG, S3Bucket
from cartera.plugins.recording.s3.config import S3Config
from cartera.plugins.recording.s3.plugin import S3Store
from tests.peers.s3 import Fault, S3Endpoint, fault_proxy, s3_recording_table, spool_recordings, write_archival_site
from tests.recording_spool import report_spool

pytestmark = [pytest.mark.abuse, pytest.mark.s3]


@pytest.fixture
def keys(moto_s3: S3Endpoint, monkeypatch: pytest.MonkeyPatch) -> S3Endpoint:
    monkeypatch.setenv("S3_ACCESS_KEY", moto_s3.access_key)
    monkeypatch.setenv("S3_SECRET_KEY", moto_s3.secret_key)
    return moto_s3


def _ignore_list_prefix(method: str, path: str) -> str:
    """ListObjectsV2 without its ``prefix=``: a store that ignores (or lies about) it."""
    return re.sub(r"([?&])prefix=[^&]*&?", r"\1", path) if method == "GET" and "list-type=2" in path else path


@pytest.fixture
def prefix_ignoring(keys: S3Endpoint) -> Iterator[str]:
    """The URL of moto behind a proxy whose object listings ignore ``prefix``."""
    with fault_proxy(keys.url, rewrite=_ignore_list_prefix) as proxy:
        yield proxy.url


PAST = "2000-01-01T00:00:00+00:00"


def _tag(endpoint: S3Endpoint, bucket: str, key: str, retain_until: str) -> None:
    tagging = {"TagSet": [{"Key": RETAIN_TAG, "Value": retain_until}]}
    endpoint.client().put_object_tagging(Bucket=bucket, Key=key, Tagging=tagging)


def _due(
    tmp_path: Path, keys: S3Endpoint, open_node: Callable[[Path], Node], tags: list[str]
) -> tuple[Node, str, list[str]]:
    """A node that archived one recording per tag (retention 1 day, local copies freed at once), then a day passed:
    each is due in the catalog and tagged as given in the store; a new recording waits in the spool."""
    bucket = keys.new_bucket()
    archival = "local_retention_hours = 0\n[sites.t.archival.retention]\ndefault_days = 1"
    site = write_archival_site(tmp_path, s3_recording_table(keys, bucket), archival=archival)
    spool = tmp_path / "spool"
    spool_recordings(spool, len(tags), 5000)
    node = open_node(site)
    report_spool(node, spool)
    assert node.archiver is not None
    assert node.archiver.run_once().archived == len(tags)
    with sqlite3.connect(tmp_path / "var" / "t.db") as db:
        stored = [key for (key,) in db.execute("select store_key from recordings order by id")]
        db.execute("update recordings set retain_until = '2000-01-01 00:00:00.000000'")
    for key, until in zip(stored, tags, strict=True):
        _tag(keys, bucket, key, until)
    spool_recordings(spool, 1, 5000, seed=7)
    report_spool(node, spool)
    return node, bucket, stored


def _catalog(tmp_path: Path) -> list[tuple[int, str, int]]:
    with sqlite3.connect(tmp_path / "var" / "t.db") as db:
        return db.execute("select id, state, legal_hold from recordings order by id").fetchall()


def test_a_store_ignoring_the_probes_prefix_gets_no_probe_and_loses_no_recording(
    tmp_path: Path,
    keys: S3Endpoint,
    prefix_ignoring: str,
    open_node: Callable[[Path], Node],
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Round 18 I1: the listing of earlier probes named every recording, and the probe deleted them all (the one
    on legal hold too) while the catalog still said verified."""
    bucket = keys.new_bucket()
    spool = tmp_path / "spool"
    site = write_archival_site(tmp_path, s3_recording_table(keys, bucket, prefix_ignoring, sha256_check="client"))
    spool_recordings(spool, 3, 5000)
    node = open_node(site)
    report_spool(node, spool)
    assert node.archiver is not None
    assert node.archiver.run_once().archived == 3
    node.library.set_legal_hold(1, True, actor="os:tester", reason="case 42")
    node.close()
    site = write_archival_site(tmp_path, s3_recording_table(keys, bucket, prefix_ignoring))  # both "auto"
    spool_recordings(spool, 1, 5000, seed=9)
    node = open_node(site)
    report_spool(node, spool)
    assert node.archiver is not None
    with caplog.at_level(logging.WARNING):
        assert node.archiver.run_once().archived == 1
    assert len(keys.objects(bucket)) == 4  # every recording still stored, no probe key written
    assert _catalog(tmp_path) == [(1, "verified", 1), (2, "verified", 0), (3, "verified", 0), (4, "verified", 0)]
    assert [r for r in caplog.records if r.getMessage() == "s3.probe_listing_foreign"]


@pytest.fixture
def bucket(keys: S3Endpoint, tmp_path: Path) -> Iterator[tuple[S3Bucket, str]]:
    name = keys.new_bucket()
    store = S3Store(S3Config.model_validate(keys.settings(name)), CapturingContext(tmp_path / "data"))
    store.start()
    yield store.bucket, name
    store.stop()


def test_a_store_ignoring_the_prefix_gets_the_conservative_answers(
    keys: S3Endpoint, prefix_ignoring: str, tmp_path: Path
) -> None:
    name = keys.new_bucket()
    keys.client().put_object(Bucket=name, Key="t/2026/12/04/rec-1.wav", Body=b"a recording")
    store = S3Store(
        S3Config.model_validate(keys.settings(name, endpoint_url=prefix_ignoring)), CapturingContext(tmp_path / "d")
    )
    store.start()
    try:
        assert store.bucket.sha256_check() == "client"
        assert store.bucket.overwrite_guard() == "head"
    finally:
        store.stop()
    assert keys.objects(name) == {"t/2026/12/04/rec-1.wav": 11}


def test_a_probe_deletes_only_probe_keys_of_its_own_form(keys: S3Endpoint, bucket: tuple[S3Bucket, str]) -> None:
    """What a killed process's probe left (``.cartera-probe/`` and 32 hex digits) is removed; anything else under
    the prefix is not the probe's and stays."""
    s3, name = bucket
    left, other = f"{PROBE_PREFIX}{uuid.uuid4().hex}", f"{PROBE_PREFIX}notes.txt"
    for key in (left, other):
        keys.client().put_object(Bucket=name, Key=key, Body=b"probe")
    s3.sha256_check()
    assert keys.objects(name) == {other: 5}


@pytest.mark.parametrize("tag", ["not-a-date", "2020-01-01T00:00:00", "99999-01-01T00:00:00+00:00"])
def test_one_unreadable_retention_tag_keeps_that_recording_and_the_run_goes_on(
    tag: str, tmp_path: Path, keys: S3Endpoint, open_node: Callable[[Path], Node], caplog: pytest.LogCaptureFixture
) -> None:
    """Round 18 I3: one object whose retain-until tag was not an aware date made every archival run raise: no
    later recording was purged and local disk was never freed again."""
    node, bucket, stored = _due(tmp_path, keys, open_node, [tag, PAST, PAST])  # recording 1's tag is not a date
    assert node.archiver is not None
    with caplog.at_level(logging.WARNING):
        run = node.archiver.run_once()
    assert (run.archived, run.purged, run.deleted_local) == (1, 2, 1)
    assert _catalog(tmp_path) == [(1, "verified", 0), (2, "purged", 0), (3, "purged", 0), (4, "verified", 0)]
    objects = keys.objects(bucket)
    assert stored[0] in objects
    assert stored[1] not in objects
    assert stored[2] not in objects
    assert [r for r in caplog.records if r.getMessage() == "s3.retention_tag_unreadable"]
    assert [r for r in caplog.records if r.getMessage() == "recording.purge_refused"]
    assert node.archiver.run_once().purged == 0  # and the next run neither raises nor deletes it


def test_hold_and_retention_on_an_object_with_an_unreadable_tag(bucket: tuple[S3Bucket, str]) -> None:
    """A hold leaves an unreadable retain-until tag as it is (the object is kept); a new date replaces it."""
    s3, name = bucket
    s3.client.put_object(Bucket=name, Key="a/1.wav", Body=b"x")
    tagging = {"TagSet": [{"Key": RETAIN_TAG, "Value": "2020-01-01T00:00:00"}]}
    s3.client.put_object_tagging(Bucket=name, Key="a/1.wav", Tagging=tagging)
    s3.set_retention("a/1.wav", None, legal_hold=True)
    s3.set_retention("a/1.wav", None, legal_hold=False)
    assert s3._tags("a/1.wav")[RETAIN_TAG] == "2020-01-01T00:00:00"
    with pytest.raises(ObjectLocked, match="not a date"):
        s3.delete("a/1.wav")
    until = datetime.now(UTC) - timedelta(days=1)
    s3.set_retention("a/1.wav", until, legal_hold=False)
    assert s3._tags("a/1.wav")[RETAIN_TAG] == until.isoformat()
    s3.delete("a/1.wav")
    assert s3.head("a/1.wav") is None


def test_an_unexpected_store_error_on_one_purge_leaves_the_others_and_frees_local_disk(
    tmp_path: Path,
    keys: S3Endpoint,
    open_node: Callable[[Path], Node],
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Round 18 I3, the core half: any other error of the store's delete (a 400/405 it answers, say) stopped the
    purge of every later recording and skipped freeing local disk."""
    node, _, (first, _) = _due(tmp_path, keys, open_node, [PAST, PAST])
    assert node.archiver is not None
    delete = S3Store.delete

    def refusing(self: S3Store, key: str) -> None:
        if key == first:
            raise RuntimeError("405 MethodNotAllowed")
        delete(self, key)

    monkeypatch.setattr(S3Store, "delete", refusing)
    with caplog.at_level(logging.WARNING):
        run = node.archiver.run_once()
    assert (run.archived, run.purged, run.deleted_local) == (1, 1, 1)
    assert _catalog(tmp_path) == [(1, "verified", 0), (2, "purged", 0), (3, "verified", 0)]
    assert [r for r in caplog.records if r.getMessage() == "recording.purge_failed"]


def test_an_upload_found_wrong_is_removed_without_the_keys_earlier_versions(keys: S3Endpoint, tmp_path: Path) -> None:
    """An upload the store then describes wrongly (here: bytes changed on the way, which moto stores) is removed,
    and only it: the key's earlier version in a versioned bucket (behind a delete marker) stays."""
    name = keys.new_bucket()
    client = keys.client()
    client.put_bucket_versioning(Bucket=name, VersioningConfiguration={"Status": "Enabled"})
    earlier = client.put_object(Bucket=name, Key="a/1.wav", Body=b"an earlier recording")["VersionId"]
    client.delete_object(Bucket=name, Key="a/1.wav")
    recording = make_recording_file(tmp_path / "rec.wav", 5000, seed=3)
    with fault_proxy(keys.url) as proxy:
        settings = keys.settings(name, endpoint_url=proxy.url, no_overwrite="head", sha256_check="client")
        store = S3Store(S3Config.model_validate(settings), CapturingContext(tmp_path / "data"))
        store.start()
        try:
            proxy.inject(Fault("corrupt", method="PUT"))
            with pytest.raises(IntegrityError, match="read-back differs"):
                store.put("a/1.wav", recording.path, recording.checksums)
        finally:
            store.stop()
    versions = client.list_object_versions(Bucket=name, Prefix="a/1.wav").get("Versions", [])
    assert [v["VersionId"] for v in versions] == [earlier]
