"""The s3 recording store: conformance on radosgw, SeaweedFS and moto, integrity, checksums, the overwrite guard,
retries, faults, URLs."""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import botocore.exceptions
import pytest
from pydantic import ValidationError

from cartera.core.adapters import RecordingStore
from cartera.core.errors import IntegrityError, StoreUnavailable
from cartera.core.registry import AdapterCatalog
from cartera.core.testing.context import CapturingContext
from cartera.core.testing.recording_store import RecordingFile, RecordingStoreConformance, make_recording_file
from cartera.plugins.recording.s3 import plugin
from cartera.plugins.recording.s3.client import PROBE_PREFIX
from cartera.plugins.recording.s3.config import S3Config
from cartera.plugins.recording.s3.plugin import S3Store
from tests.peers.s3 import Fault, S3Endpoint, fault_proxy

pytestmark = pytest.mark.s3
MiB = 1 << 20
SMALL_PARTS = {"multipart_threshold_mb": 5, "part_size_mb": 5}


@pytest.fixture
def context(tmp_path: Path) -> CapturingContext:
    return CapturingContext(tmp_path / "data")


@pytest.fixture
def make_store(context: CapturingContext) -> Iterator[Callable[..., S3Store]]:
    """Builds started stores from plugin settings; stops them after the test."""
    stores: list[S3Store] = []

    def make(settings: dict[str, Any]) -> S3Store:
        store = S3Store(S3Config.model_validate(settings), context)
        store.start()
        stores.append(store)
        return store

    yield make
    for store in stores:
        store.stop()


@pytest.fixture(params=["radosgw", "seaweedfs"])
def strict_s3(request: pytest.FixtureRequest) -> S3Endpoint:
    """A real store that checks Content-MD5 (a wrong one is BadDigest) and signatures."""
    endpoint: S3Endpoint = request.getfixturevalue(request.param)
    return endpoint


@pytest.fixture(params=["moto_s3", "seaweedfs"])
def multipart_s3(request: pytest.FixtureRequest) -> S3Endpoint:
    """A store that assembles multipart uploads correctly (radosgw's dbstore does not)."""
    endpoint: S3Endpoint = request.getfixturevalue(request.param)
    return endpoint


@pytest.fixture
def recording(tmp_path: Path) -> RecordingFile:
    return make_recording_file(tmp_path / "source" / "rec.wav", 200 * 1024 + 5, seed=21)


class TestS3OnRadosgw(RecordingStoreConformance):
    """Ceph's gateway checks Content-MD5; retention and hold are tags. Uploads stay single-part here: the
    dbstore backend assembles multipart objects wrongly (see test_a_store_that_garbles_multipart...)."""

    @pytest.fixture
    def context(self, tmp_path: Path) -> CapturingContext:
        return CapturingContext(tmp_path / "data")

    @pytest.fixture
    def store(self, make_store: Callable[..., S3Store], radosgw: S3Endpoint) -> RecordingStore[Any]:
        return make_store(radosgw.settings(radosgw.new_bucket()))


class TestS3OnSeaweedFS(RecordingStoreConformance):
    """SeaweedFS checks Content-MD5 per part too and honours If-None-Match: conditional PUTs, 5 MB parts;
    retention and hold as tags, and again enforced by the bucket's S3 Object Lock."""

    @pytest.fixture
    def context(self, tmp_path: Path) -> CapturingContext:
        return CapturingContext(tmp_path / "data")

    @pytest.fixture(params=["off", "governance"], ids=["tags", "object-lock"])
    def store(
        self, make_store: Callable[..., S3Store], seaweedfs: S3Endpoint, request: pytest.FixtureRequest
    ) -> RecordingStore[Any]:
        bucket = seaweedfs.new_bucket(object_lock=request.param != "off")
        settings = seaweedfs.settings(bucket, object_lock=request.param, no_overwrite="if-none-match", **SMALL_PARTS)
        return make_store(settings)


class TestS3OnMotoWithObjectLock(RecordingStoreConformance):
    """moto implements S3 Object Lock and If-None-Match: the bucket itself enforces retention and hold."""

    @pytest.fixture
    def context(self, tmp_path: Path) -> CapturingContext:
        return CapturingContext(tmp_path / "data")

    @pytest.fixture
    def store(self, make_store: Callable[..., S3Store], moto_s3: S3Endpoint) -> RecordingStore[Any]:
        bucket = moto_s3.new_bucket(object_lock=True)
        return make_store(
            moto_s3.settings(bucket, object_lock="governance", no_overwrite="if-none-match", **SMALL_PARTS)
        )


def test_registered_as_s3() -> None:
    registry = AdapterCatalog.empty().recording_stores
    plugin.cartera_register_recording_stores(registry)
    assert registry.get("s3") is S3Store


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"bucket": "Bad_Bucket"}, "not a valid bucket name"),
        ({"bucket": "recs", "access_key_id": "AK"}, "give both access_key_id and secret_access_key"),
        ({"bucket": "recs", "sse_kms_key_id": "k"}, "needs server_side_encryption = 'aws:kms'"),
        ({"bucket": "recs", "part_size_mb": 80}, "part_size_mb must not exceed"),
        ({"bucket": "recs", "request_checksum_calculation": "always"}, "when_supported"),
        ({"bucket": "recs", "storage_class": "cold storage"}, "pattern"),
        ({"bucket": "recs", "no_overwrite": "if-match"}, "'head', 'if-none-match' or 'auto'"),
    ],
)
def test_config_errors(settings: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        S3Config.model_validate(settings)


def test_secrets_stay_out_of_repr() -> None:
    config = S3Config.model_validate({"bucket": "recs", "access_key_id": "AKVISIBLE", "secret_access_key": "s3cr3t-x"})
    assert "s3cr3t-x" not in repr(config)
    assert "AKVISIBLE" not in repr(config)


def _capture(store: S3Store, operation: str) -> list[dict[str, str]]:
    """Headers of every ``operation`` request the store's client sends from now on."""
    sent: list[dict[str, str]] = []

    def keep(request: Any, **_: Any) -> None:
        sent.append(
            {
                name.lower(): value.decode() if isinstance(value, bytes) else value
                for name, value in request.headers.items()
            }
        )

    store.bucket.client.meta.events.register(f"before-send.s3.{operation}", keep)
    return sent


def _operations(store: S3Store) -> list[str]:
    """Names of the requests (retries included) the store's client sends from now on."""
    sent: list[str] = []

    def keep(event_name: str, **_: Any) -> None:
        sent.append(event_name.rsplit(".", 1)[-1])

    store.bucket.client.meta.events.register("before-send.s3", keep)
    return sent


def _statuses(store: S3Store, operation: str) -> list[int]:
    """HTTP status of every ``operation`` answer the store's client gets from now on."""
    got: list[int] = []

    def keep(http_response: Any, **_: Any) -> None:
        got.append(http_response.status_code)

    store.bucket.client.meta.events.register(f"after-call.s3.{operation}", keep)
    return got


def test_checksum_mode_is_per_endpoint_and_content_md5_always_sent(
    make_store: Callable[..., S3Store], strict_s3: S3Endpoint, recording: RecordingFile
) -> None:
    """Two stores in one process: one sends boto3's CRC checksums, the other not; both send Content-MD5."""
    bucket = strict_s3.new_bucket()
    with_crc = make_store(
        strict_s3.settings(bucket, request_checksum_calculation="when_supported", sha256_check="client")
    )
    without = make_store(strict_s3.settings(bucket, sha256_check="client"))
    crc_headers, plain_headers = _capture(with_crc, "PutObject"), _capture(without, "PutObject")
    with_crc.put("a/1.wav", recording.path, recording.checksums)
    without.put("a/2.wav", recording.path, recording.checksums)
    content_md5 = base64.b64encode(bytes.fromhex(recording.checksums.md5_hex)).decode()
    assert [h["content-md5"] for h in crc_headers + plain_headers] == [content_md5, content_md5]
    assert any(name.startswith("x-amz-checksum-") for name in crc_headers[0])
    assert not any(name.startswith("x-amz-checksum-") for name in plain_headers[0])


def test_multipart_sends_content_md5_per_part(
    make_store: Callable[..., S3Store], multipart_s3: S3Endpoint, tmp_path: Path
) -> None:
    big = make_recording_file(tmp_path / "big.wav", 11 * MiB + 17, seed=22)
    store = make_store(multipart_s3.settings(multipart_s3.new_bucket(), **SMALL_PARTS))
    parts = _capture(store, "UploadPart")
    stored = store.put("a/big.wav", big.path, big.checksums)
    data = big.path.read_bytes()
    chunks = [data[i : i + 5 * MiB] for i in range(0, len(data), 5 * MiB)]
    assert [h["content-md5"] for h in parts] == [
        base64.b64encode(hashlib.md5(chunk, usedforsecurity=False).digest()).decode() for chunk in chunks
    ]
    assert stored.etag is not None
    assert stored.etag.endswith("-3")
    assert stored.sha256_hex == big.checksums.sha256_hex


def test_a_long_recording_goes_in_parts_each_held_to_its_sha256_by_the_store(
    make_store: Callable[..., S3Store], seaweedfs: S3Endpoint, tmp_path: Path
) -> None:
    """Over 16 MB (the default threshold): 16 MB parts, each with its Content-MD5 and x-amz-checksum-sha256
    (SeaweedFS checks both), then the object is read back."""
    big = make_recording_file(tmp_path / "long-stereo.wav", 40 * MiB + 11, seed=26)
    bucket = seaweedfs.new_bucket()
    store = make_store(seaweedfs.settings(bucket))
    assert store.bucket.sha256_check() == "store"
    created, parts = _capture(store, "CreateMultipartUpload"), _capture(store, "UploadPart")
    reads = _capture(store, "GetObject")
    stored = store.put("a/long-stereo.wav", big.path, big.checksums)
    data = big.path.read_bytes()
    chunks = [data[i : i + 16 * MiB] for i in range(0, len(data), 16 * MiB)]
    assert [len(chunk) for chunk in chunks] == [16 * MiB, 16 * MiB, 8 * MiB + 11]
    assert created[0]["x-amz-checksum-algorithm"] == "SHA256"
    assert [(h["content-md5"], h["x-amz-checksum-sha256"]) for h in parts] == [
        (
            base64.b64encode(hashlib.md5(chunk, usedforsecurity=False).digest()).decode(),
            base64.b64encode(hashlib.sha256(chunk).digest()).decode(),
        )
        for chunk in chunks
    ]
    assert len(reads) == 1  # a multipart ETag is no MD5 of the file: every byte is read back
    assert stored.etag is not None
    assert stored.etag.endswith("-3")
    assert stored.sha256_hex == big.checksums.sha256_hex
    got = seaweedfs.client().get_object(Bucket=bucket, Key="a/long-stereo.wav")["Body"].read()
    assert hashlib.sha256(got).hexdigest() == big.checksums.sha256_hex
    assert seaweedfs.client().list_multipart_uploads(Bucket=bucket).get("Uploads", []) == []


def test_seaweedfs_refuses_a_part_whose_sha256_is_wrong(seaweedfs: S3Endpoint) -> None:
    """What the per-part x-amz-checksum-sha256 buys: the store refuses a part with other bytes (BadDigest)."""
    client, bucket = seaweedfs.client(), seaweedfs.new_bucket()
    upload = client.create_multipart_upload(Bucket=bucket, Key="k", ChecksumAlgorithm="SHA256")["UploadId"]
    part = b"x" * (5 * MiB)
    other = base64.b64encode(hashlib.sha256(b"y" + part[1:]).digest()).decode()
    with pytest.raises(botocore.exceptions.ClientError) as refused:
        client.upload_part(Bucket=bucket, Key="k", UploadId=upload, PartNumber=1, Body=part, ChecksumSHA256=other)
    assert refused.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400
    client.abort_multipart_upload(Bucket=bucket, Key="k", UploadId=upload)


def test_a_wrong_content_md5_is_rejected_with_bad_digest(
    make_store: Callable[..., S3Store], strict_s3: S3Endpoint, recording: RecordingFile
) -> None:
    store = make_store(strict_s3.settings(strict_s3.new_bucket()))
    wrong = dataclasses.replace(recording.checksums, md5_hex=hashlib.md5(b"other", usedforsecurity=False).hexdigest())
    reads = _capture(store, "GetObject")
    with pytest.raises(IntegrityError, match="BadDigest"):
        store.put("a/1.wav", recording.path, wrong)
    assert reads == []  # the store itself refused the body: no read-back was needed
    assert store.head("a/1.wav") is None


@pytest.mark.parametrize("size", [200 * 1024, 6 * MiB], ids=["single", "multipart"])
def test_a_body_corrupted_in_flight_is_rejected_and_nothing_stored(
    make_store: Callable[..., S3Store], strict_s3: S3Endpoint, tmp_path: Path, size: int
) -> None:
    """A proxy flips a byte of the upload: the store refuses it, the plugin reports it, the key stays empty."""
    source = make_recording_file(tmp_path / "rec.wav", size, seed=23)
    endpoint = strict_s3
    bucket = endpoint.new_bucket()
    with fault_proxy(endpoint.url) as proxy:
        store = make_store({**endpoint.settings(bucket, max_attempts=1, **SMALL_PARTS), "endpoint_url": proxy.url})
        proxy.inject(Fault("corrupt", "PUT", "/a/1.wav"))
        with pytest.raises(IntegrityError, match="rejected the body"):
            store.put("a/1.wav", source.path, source.checksums)
        assert proxy.done("corrupt")
    assert endpoint.objects(bucket) == {}
    assert endpoint.client().list_multipart_uploads(Bucket=bucket).get("Uploads", []) == []


def test_a_store_that_garbles_multipart_objects_never_keeps_one(
    make_store: Callable[..., S3Store], radosgw: S3Endpoint, tmp_path: Path
) -> None:
    """radosgw 20.2 on dbstore returns a two-part object with its parts out of order and filled with other
    bytes. Whatever a store does, the read-back means put never returns with a wrong object under the key."""
    big = make_recording_file(tmp_path / "big.wav", 6 * MiB + 3, seed=25)
    bucket = radosgw.new_bucket()
    store = make_store(radosgw.settings(bucket, **SMALL_PARTS))
    try:
        stored = store.put("a/big.wav", big.path, big.checksums)
    except IntegrityError as exc:
        refused: IntegrityError | None = exc
    else:
        refused = None
    if refused is not None:
        assert "read-back differs" in str(refused)
        assert radosgw.objects(bucket) == {}
    else:
        assert stored.sha256_hex == big.checksums.sha256_hex
        got = radosgw.client().get_object(Bucket=bucket, Key="a/big.wav")["Body"].read()
        assert hashlib.sha256(got).hexdigest() == big.checksums.sha256_hex


def test_moto_does_not_check_content_md5_but_the_read_back_does(
    make_store: Callable[..., S3Store], moto_s3: S3Endpoint, recording: RecordingFile
) -> None:
    bucket = moto_s3.new_bucket()
    wrong_md5 = base64.b64encode(b"\0" * 16).decode()
    moto_s3.client().put_object(Bucket=bucket, Key="raw.wav", Body=b"abc", ContentMD5=wrong_md5)  # accepted
    store = make_store(moto_s3.settings(bucket))
    wrong = dataclasses.replace(recording.checksums, md5_hex="0" * 32)
    with pytest.raises(IntegrityError, match="read-back differs"):
        store.put("a/1.wav", recording.path, wrong)
    assert store.head("a/1.wav") is None


def test_encryption_and_storage_class_are_requested(
    make_store: Callable[..., S3Store], moto_s3: S3Endpoint, recording: RecordingFile, tmp_path: Path
) -> None:
    bucket = moto_s3.new_bucket()
    store = make_store(
        moto_s3.settings(bucket, server_side_encryption="AES256", storage_class="STANDARD_IA", **SMALL_PARTS)
    )
    big = make_recording_file(tmp_path / "big.wav", 6 * MiB, seed=24)
    store.put("a/1.wav", recording.path, recording.checksums)
    store.put("a/big.wav", big.path, big.checksums)
    for key in ("a/1.wav", "a/big.wav"):
        head = moto_s3.client().head_object(Bucket=bucket, Key=key)
        assert (head["ServerSideEncryption"], head["StorageClass"]) == ("AES256", "STANDARD_IA")
        assert head["ContentType"] == "audio/x-wav"


@pytest.mark.parametrize(
    "faults",
    [
        [Fault("500"), Fault("500")],
        [Fault("slowdown"), Fault("slowdown"), Fault("500", "HEAD")],
        [Fault("stall", stall_s=3.0)],
        [Fault("drop"), Fault("drop", "HEAD")],
    ],
    ids=["5xx", "slowdown", "slow-response", "dropped-connection"],
)
def test_transient_failures_are_retried(
    make_store: Callable[..., S3Store], strict_s3: S3Endpoint, recording: RecordingFile, faults: list[Fault]
) -> None:
    bucket = strict_s3.new_bucket()
    with fault_proxy(strict_s3.url) as proxy:
        store = make_store({**strict_s3.settings(bucket, max_attempts=4, read_timeout_s=1), "endpoint_url": proxy.url})
        proxy.inject(*faults)
        stored = store.put("a/1.wav", recording.path, recording.checksums)
        assert proxy.pending() == 0
    assert stored.sha256_hex == recording.checksums.sha256_hex
    assert strict_s3.objects(bucket) == {"a/1.wav": recording.checksums.size}


def test_an_endpoint_that_is_down_is_store_unavailable(
    make_store: Callable[..., S3Store], strict_s3: S3Endpoint, recording: RecordingFile
) -> None:
    with fault_proxy(strict_s3.url) as proxy:
        store = make_store({**strict_s3.settings(strict_s3.new_bucket(), max_attempts=2), "endpoint_url": proxy.url})
        proxy.stop()
        began = time.monotonic()
        with pytest.raises(StoreUnavailable, match=proxy.url.removeprefix("http://")):
            store.put("a/1.wav", recording.path, recording.checksums)
        assert time.monotonic() - began < 10
        check = store.check()
    assert not check.ok
    assert strict_s3.secret_key not in check.detail


def test_persistent_slowdown_is_store_unavailable(
    make_store: Callable[..., S3Store], strict_s3: S3Endpoint, recording: RecordingFile
) -> None:
    with fault_proxy(strict_s3.url) as proxy:
        store = make_store({**strict_s3.settings(strict_s3.new_bucket(), max_attempts=2), "endpoint_url": proxy.url})
        proxy.inject(Fault("slowdown"), Fault("slowdown"))
        with pytest.raises(StoreUnavailable, match="SlowDown"):
            store.put("a/1.wav", recording.path, recording.checksums)


def test_check_names_a_missing_bucket_and_bad_credentials(
    make_store: Callable[..., S3Store], strict_s3: S3Endpoint
) -> None:
    missing = make_store(strict_s3.settings("no-such-bucket-here")).check()
    assert not missing.ok
    assert "no-such-bucket-here" in missing.detail
    wrong = make_store(strict_s3.settings(strict_s3.new_bucket(), secret_access_key="not-the-secret")).check()
    assert not wrong.ok
    assert "not-the-secret" not in wrong.detail
    good = make_store(strict_s3.settings(strict_s3.new_bucket())).check()
    assert good.ok, good.detail


def test_presigned_url_serves_until_it_expires(
    make_store: Callable[..., S3Store], strict_s3: S3Endpoint, recording: RecordingFile
) -> None:
    store = make_store(strict_s3.settings(strict_s3.new_bucket()))
    store.put("a/1.wav", recording.path, recording.checksums)
    url = store.url("a/1.wav", 2)
    assert "X-Amz-Expires=2" in url
    assert strict_s3.secret_key not in url
    with urllib.request.urlopen(url, timeout=10) as response:
        assert hashlib.sha256(response.read()).hexdigest() == recording.checksums.sha256_hex
    time.sleep(3)
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(url, timeout=10)
    assert refused.value.code == 403


# --- the overwrite guard ------------------------------------------------------------------------------


def test_radosgw_overwrites_despite_if_none_match_so_the_head_guard_stays(
    make_store: Callable[..., S3Store], radosgw: S3Endpoint, recording: RecordingFile
) -> None:
    """radosgw 20.2 lets a second If-None-Match: * PUT replace an object; ``auto`` finds that out with its probe
    and keeps the HEAD before every PUT, like ``head``."""
    bucket = radosgw.new_bucket()
    raw = radosgw.client()
    raw.put_object(Bucket=bucket, Key="raw.wav", Body=b"first", IfNoneMatch="*")
    raw.put_object(Bucket=bucket, Key="raw.wav", Body=b"second", IfNoneMatch="*")  # no 412
    assert raw.get_object(Bucket=bucket, Key="raw.wav")["Body"].read() == b"second"
    for guard in ("head", "auto"):
        store = make_store(radosgw.settings(bucket, no_overwrite=guard))
        assert store.bucket.overwrite_guard() == "head"
        assert store.bucket.sha256_check() == "client"  # probed now, so the requests below are the upload's
        sent, puts = _operations(store), _capture(store, "PutObject")
        store.put(f"a/{guard}.wav", recording.path, recording.checksums)
        assert sent == ["HeadObject", "PutObject", "HeadObject"]
        assert "if-none-match" not in puts[0]
        assert "overwrite guard head" in store.check().detail
    assert sorted(radosgw.objects(bucket)) == ["a/auto.wav", "a/head.wav", "raw.wav"]  # the probe was deleted


def test_auto_keeps_the_head_guard_where_the_store_does_not_know_the_header(
    make_store: Callable[..., S3Store], seaweedfs: S3Endpoint, recording: RecordingFile
) -> None:
    """A store that answers the probe with 501 NotImplemented gets a HEAD before each PUT, and nothing else."""
    bucket = seaweedfs.new_bucket()
    with fault_proxy(seaweedfs.url) as proxy:
        store = make_store({**seaweedfs.settings(bucket, no_overwrite="auto"), "endpoint_url": proxy.url})
        proxy.inject(Fault("not-implemented", "PUT", PROBE_PREFIX))
        store.put("a/1.wav", recording.path, recording.checksums)
        assert proxy.done("not-implemented")
        assert store.bucket.overwrite_guard() == "head"
    assert seaweedfs.objects(bucket) == {"a/1.wav": recording.checksums.size}


def test_auto_uses_the_conditional_put_where_the_store_honours_it(
    make_store: Callable[..., S3Store], seaweedfs: S3Endpoint, recording: RecordingFile, tmp_path: Path
) -> None:
    """On SeaweedFS the probe's second PUT is refused, so each recording costs a PUT and a verifying HEAD."""
    bucket = seaweedfs.new_bucket()
    store = make_store(seaweedfs.settings(bucket, no_overwrite="auto"))
    assert "overwrite guard auto" in store.check().detail
    store.put("a/1.wav", recording.path, recording.checksums)  # probes first
    assert store.bucket.overwrite_guard() == "if-none-match"
    other = make_recording_file(tmp_path / "other.wav", 1000, seed=30)
    sent, puts = _operations(store), _capture(store, "PutObject")
    store.put("a/2.wav", other.path, other.checksums)
    assert sent == ["PutObject", "HeadObject"]
    assert puts[0]["if-none-match"] == "*"
    assert "overwrite guard if-none-match" in store.check().detail
    assert seaweedfs.objects(bucket) == {"a/1.wav": recording.checksums.size, "a/2.wav": 1000}
    assert not any(key.startswith(PROBE_PREFIX) for key in seaweedfs.objects(bucket))


# --- who checks the SHA-256 -------------------------------------------------------------------------


def test_seaweedfs_checks_the_sha256_so_the_plugin_does_not_hash_again(
    make_store: Callable[..., S3Store], seaweedfs: S3Endpoint, recording: RecordingFile
) -> None:
    """``auto`` finds that SeaweedFS refuses a body whose x-amz-checksum-sha256 is wrong; uploads then carry the
    recording's SHA-256 and the store, not a second pass over the file, holds them to it."""
    bucket = seaweedfs.new_bucket()
    store = make_store(seaweedfs.settings(bucket))
    assert "sha256 checked by auto" in store.check().detail
    assert store.bucket.sha256_check() == "store"
    puts = _capture(store, "PutObject")
    store.put("a/1.wav", recording.path, recording.checksums)
    sha256 = base64.b64encode(bytes.fromhex(recording.checksums.sha256_hex)).decode()
    assert puts[0]["x-amz-checksum-sha256"] == sha256
    assert puts[0]["x-amz-content-sha256"] == "UNSIGNED-PAYLOAD"  # botocore does not hash the body to sign it
    wrong = dataclasses.replace(recording.checksums, sha256_hex="0" * 64)
    with pytest.raises(IntegrityError, match="BadDigest"):
        store.put("a/2.wav", recording.path, wrong)
    assert seaweedfs.objects(bucket) == {"a/1.wav": recording.checksums.size}  # the probe was deleted
    assert "sha256 checked by store" in store.check().detail


def test_a_probe_removes_what_the_probes_of_killed_processes_left(
    make_store: Callable[..., S3Store], seaweedfs: S3Endpoint
) -> None:
    bucket = seaweedfs.new_bucket()
    seaweedfs.client().put_object(Bucket=bucket, Key=f"{PROBE_PREFIX}{uuid.uuid4().hex}", Body=b"probe")
    assert make_store(seaweedfs.settings(bucket)).bucket.sha256_check() == "store"
    assert seaweedfs.objects(bucket) == {}


def test_radosgw_ignores_the_sha256_header_so_the_plugin_hashes_what_it_sends(
    make_store: Callable[..., S3Store], radosgw: S3Endpoint, recording: RecordingFile
) -> None:
    """radosgw 20.2 on dbstore stores a body whatever its x-amz-checksum-sha256 says; ``auto`` sees that and
    keeps hashing the bytes as they are sent, so a wrong SHA-256 still leaves nothing stored."""
    bucket = radosgw.new_bucket()
    raw = radosgw.client()
    wrong_header = base64.b64encode(bytes(32)).decode()
    raw.put_object(Bucket=bucket, Key="raw.wav", Body=b"body", ChecksumSHA256=wrong_header)  # not refused
    store = make_store(radosgw.settings(bucket))
    assert store.bucket.sha256_check() == "client"
    puts = _capture(store, "PutObject")
    wrong = dataclasses.replace(recording.checksums, sha256_hex="0" * 64)
    with pytest.raises(IntegrityError, match="sha256 expected"):
        store.put("a/1.wav", recording.path, wrong)
    assert not any(name.startswith("x-amz-checksum-") for name in puts[0])
    assert sorted(radosgw.objects(bucket)) == ["raw.wav"]


@pytest.mark.parametrize("guard", ["head", "if-none-match"])
def test_an_existing_key_is_verified_and_never_overwritten(
    make_store: Callable[..., S3Store], seaweedfs: S3Endpoint, recording: RecordingFile, guard: str
) -> None:
    """A key that already holds the recording (a retry, a run after a crash) is verified, not written again; a
    key holding other bytes of the same size under the recording's sha256 metadata is refused and kept."""
    bucket = seaweedfs.new_bucket()
    store = make_store(seaweedfs.settings(bucket, no_overwrite=guard))
    first = store.put("a/1.wav", recording.path, recording.checksums)
    statuses = _statuses(store, "PutObject")
    assert store.put("a/1.wav", recording.path, recording.checksums) == first
    assert statuses == ([412] if guard == "if-none-match" else [])
    data = recording.path.read_bytes()
    impostor = bytes([data[0] ^ 0xFF]) + data[1:]
    raw = seaweedfs.client()
    raw.put_object(Bucket=bucket, Key="a/2.wav", Body=impostor, Metadata={"sha256": recording.checksums.sha256_hex})
    with pytest.raises(IntegrityError, match="already holds different content"):
        store.put("a/2.wav", recording.path, recording.checksums)
    assert raw.get_object(Bucket=bucket, Key="a/2.wav")["Body"].read() == impostor


def test_concurrent_conditional_puts_to_one_key_leave_exactly_one_recording(
    make_store: Callable[..., S3Store], seaweedfs: S3Endpoint, tmp_path: Path
) -> None:
    """Eight different recordings raced to one key: one lands whole, the seven others are refused."""
    bucket = seaweedfs.new_bucket()
    store = make_store(seaweedfs.settings(bucket, no_overwrite="if-none-match"))
    files = [make_recording_file(tmp_path / f"{index}.wav", 300_000, seed=40 + index) for index in range(8)]

    def put(file: RecordingFile) -> str:
        try:
            return f"stored {store.put('a/1.wav', file.path, file.checksums).sha256_hex}"
        except IntegrityError as exc:
            return str(exc)

    with ThreadPoolExecutor(len(files)) as pool:
        outcomes = list(pool.map(put, files))
    winners = [outcome.removeprefix("stored ") for outcome in outcomes if outcome.startswith("stored ")]
    assert len(winners) == 1, outcomes
    assert sum("already holds different content" in outcome for outcome in outcomes) == 7, outcomes
    stored = seaweedfs.client().get_object(Bucket=bucket, Key="a/1.wav")["Body"].read()
    assert hashlib.sha256(stored).hexdigest() == winners[0]
