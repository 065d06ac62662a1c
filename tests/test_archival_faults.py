"""The archival job against radosgw behind a fault-injecting proxy: retried faults, an endpoint that is down."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from cartera.node import Node
from tests.peers.s3 import Fault, FaultProxy, S3Endpoint, fault_proxy, s3_recording_table, spool_recordings
from tests.peers.s3 import write_archival_site as write_site
from tests.recording_spool import report_spool

pytestmark = pytest.mark.s3


@pytest.fixture
def proxy(radosgw: S3Endpoint, monkeypatch: pytest.MonkeyPatch) -> Iterator[FaultProxy]:
    monkeypatch.setenv("S3_ACCESS_KEY", radosgw.access_key)
    monkeypatch.setenv("S3_SECRET_KEY", radosgw.secret_key)
    with fault_proxy(radosgw.url) as running:
        yield running


def _site(tmp_path: Path, radosgw: S3Endpoint, proxy: FaultProxy, bucket: str) -> Path:
    table = s3_recording_table(
        radosgw, bucket, proxy.url, max_attempts=4, read_timeout_s=1.0, connect_timeout_s=1.0, sha256_check="client"
    )  # radosgw ignores x-amz-checksum-sha256 (tests/plugins/recording): no probe to take the faults
    return write_site(tmp_path, table, archival="workers = 3")


def test_faults_during_a_run_are_retried_and_every_recording_lands_once(
    tmp_path: Path, radosgw: S3Endpoint, proxy: FaultProxy, open_node: Callable[[Path], Node]
) -> None:
    bucket = radosgw.new_bucket()
    made = spool_recordings(tmp_path / "spool", 12, 50_000)
    node = open_node(_site(tmp_path, radosgw, proxy, bucket))
    assert node.archiver is not None
    report_spool(node, tmp_path / "spool")
    proxy.inject(
        Fault("500"),
        Fault("slowdown"),
        Fault("slowdown", "HEAD"),
        Fault("stall", stall_s=2.5),
        Fault("drop"),
        Fault("drop", "HEAD"),
        Fault("500", "HEAD"),
    )
    run = node.archiver.run_once()
    assert (run.archived, run.failed, run.left) == (12, 0, 0), node.archiver.backlog()
    assert proxy.pending() == 0
    assert len(proxy.seen) > 12 * 3  # the faults' retries on top of HEAD, PUT, HEAD per recording
    assert len(radosgw.objects(bucket)) == 12
    heads = [radosgw.client().head_object(Bucket=bucket, Key=key) for key in radosgw.objects(bucket)]
    assert sorted(head["Metadata"]["sha256"] for head in heads) == sorted(made.values())


def test_an_endpoint_that_is_down_leaves_recordings_local_then_the_next_run_resumes(
    tmp_path: Path,
    radosgw: S3Endpoint,
    proxy: FaultProxy,
    open_node: Callable[[Path], Node],
    caplog: pytest.LogCaptureFixture,
) -> None:
    bucket = radosgw.new_bucket()
    spool = tmp_path / "spool"
    spool_recordings(spool, 20, 20_000)
    node = open_node(_site(tmp_path, radosgw, proxy, bucket))
    assert node.archiver is not None
    report_spool(node, spool)
    proxy.stop()
    with caplog.at_level(logging.INFO, logger="cartera"):
        down = node.archiver.run_once()
    assert down.archived == 0
    assert down.left == 20
    assert down.store_error is not None
    assert "archive.store_unavailable" in [record.getMessage() for record in caplog.records]
    assert len(list(spool.rglob("*.wav"))) == 20  # safe on local disk
    lines = {line.what: line.result for line in node.check()}
    assert not lines["recording s3"].ok
    assert not lines["recordings"].ok
    assert "20 waiting on local disk" in lines["recordings"].detail
    assert "store unavailable" in lines["recordings"].detail
    proxy.start()
    up = node.archiver.run_once()
    assert (up.archived, up.failed, up.left, up.deleted_local) == (20, 0, 0, 20)
    assert len(radosgw.objects(bucket)) == 20
    assert list(spool.rglob("*.wav")) == []
    assert {line.what: line.result for line in node.check()}["recordings"].ok
