"""One S3-compatible bucket: uploads carrying Content-MD5, verified after upload, never overwritten."""

from __future__ import annotations

import base64
import hashlib
import io
import logging
import mimetypes
import os
import re
import threading
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, BinaryIO, cast

import boto3
import botocore.exceptions
from botocore.config import Config

from cartera.plugin import (
    CHUNK_SIZE,
    CheckResult,
    Checksums,
    IntegrityError,
    ObjectLocked,
    ObjectNotFound,
    StoredObject,
    StoreUnavailable,
    copy_with_checksums,
    event,
)
from cartera.plugins.recording.s3.config import OverwriteGuard, S3Config, Sha256Check
from cartera.plugins.recording.s3.deadline import Deadlines
from cartera.plugins.recording.s3.deadline import install as install_deadlines

MiB = 1 << 20
SHA256_METADATA = "sha256"
RETAIN_TAG = "cartera-retain-until"
HOLD_TAG = "cartera-legal-hold"
PROBE_PREFIX = ".cartera-probe/"
PROBE_KEY = re.compile(re.escape(PROBE_PREFIX) + "[0-9a-f]{32}")  # the only keys a probe writes, and deletes
_UNAVAILABLE_CODES = {"SlowDown", "Throttling", "ThrottlingException", "RequestTimeout", "ServiceUnavailable"}
_REFUSED_CODES = {"AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch", "NoSuchBucket"}
_NOT_FOUND_CODES = {"404", "NoSuchKey", "NotFound", "NoSuchVersion"}
_UNREADABLE = datetime.max.replace(tzinfo=UTC)  # a retain-until tag that is not an aware date: kept for ever
_TRANSPORT_ERRORS = (botocore.exceptions.ConnectionError, botocore.exceptions.HTTPClientError)
MAX_PROBE_PAGES = 10  # earlier probe keys listed before a probe; the rest wait for the next probe
MAX_VERSION_PAGES = 100  # pages of a key's versions: a store whose listing never ends is unavailable


def botocore_config(config: S3Config) -> Config:
    """This endpoint's own botocore settings (never process-wide ones).

    No SigV4 payload hash: over plain HTTP botocore would read and SHA-256 every upload once more to sign it
    (over HTTPS it already skips that when Content-MD5 is sent). Each upload's body is held to its Content-MD5
    by the store and to its SHA-256 by the store or this plugin, and a multipart object is read back, so
    that hash would check nothing more; it cost ~0.7-1 ms of CPU per 1 MB PUT (bench/RESULTS.md)."""
    return Config(
        region_name=config.region,
        signature_version="s3v4",
        s3={"addressing_style": config.addressing_style, "payload_signing_enabled": False},
        retries={"mode": config.retry_mode, "total_max_attempts": config.max_attempts},
        max_pool_connections=config.max_pool_connections,
        connect_timeout=config.connect_timeout_s,
        read_timeout=config.read_timeout_s,
        request_checksum_calculation=config.request_checksum_calculation,
        response_checksum_validation=config.response_checksum_validation,
        tcp_keepalive=True,
    )


def _code(exc: botocore.exceptions.ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


def _status(exc: botocore.exceptions.ClientError) -> int:
    return int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0))


def _b64(hex_digest: str) -> str:
    return base64.b64encode(bytes.fromhex(hex_digest)).decode("ascii")


def _b64_md5(data: bytes) -> str:
    return _b64(hashlib.md5(data, usedforsecurity=False).hexdigest())


class _HashingReader:
    """The upload body: a file whose bytes are hashed (sha256) as botocore reads them, rewound on retries."""

    def __init__(self, src: BinaryIO) -> None:
        self._src = src
        self._sha256 = hashlib.sha256()

    def read(self, size: int = -1) -> bytes:
        data = self._src.read(size)
        self._sha256.update(data)
        return data

    def seek(self, offset: int, whence: int = os.SEEK_SET) -> int:
        position = self._src.seek(offset, whence)
        if position != 0:
            raise OSError(f"upload body sought to {position}; only rewinding is supported")
        self._sha256 = hashlib.sha256()
        return position

    def tell(self) -> int:
        return self._src.tell()

    def hexdigest(self) -> str:
        return self._sha256.hexdigest()


class _Discard(io.RawIOBase):
    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        return len(data)


class S3Bucket:
    """The bucket of one endpoint, with a boto3 client of its own."""

    def __init__(self, config: S3Config, now: Callable[[], datetime], log: logging.Logger) -> None:
        self.config = config
        self.bucket = config.bucket
        self.endpoint = str(config.endpoint_url).rstrip("/") if config.endpoint_url else None
        self._now = now
        self._log = log
        self._guard: OverwriteGuard | None = None if config.no_overwrite == "auto" else config.no_overwrite
        self._sha256_check: Sha256Check | None = None if config.sha256_check == "auto" else config.sha256_check
        self._probe_lock = threading.Lock()
        self.client: Any = boto3.session.Session().client(
            "s3",
            endpoint_url=self.endpoint,
            config=botocore_config(config),
            aws_access_key_id=config.access_key_id.get_secret_value() if config.access_key_id else None,
            aws_secret_access_key=config.secret_access_key.get_secret_value() if config.secret_access_key else None,
        )
        self.deadlines = Deadlines(config.request_deadline_s, config.min_rate_kib_s * 1024, self.where, log)
        install_deadlines(self.client, self.deadlines)
        self._upload_args: dict[str, str] = {}
        if config.server_side_encryption:
            self._upload_args["ServerSideEncryption"] = config.server_side_encryption
        if config.sse_kms_key_id:
            self._upload_args["SSEKMSKeyId"] = config.sse_kms_key_id
        if config.storage_class:
            self._upload_args["StorageClass"] = config.storage_class

    def close(self) -> None:
        """Closes the client's connections and ends its deadlines' watchdog."""
        self.client.close()
        self.deadlines.watchdog.close()

    @property
    def where(self) -> str:
        return f"bucket {self.bucket} at {self.endpoint or 'AWS S3'}"

    # --- the RecordingStore operations ----------------------------------------------------------------

    def put(self, key: str, source: Path, expected: Checksums) -> StoredObject:
        """Upload ``source`` under an empty ``key`` with Content-MD5, then verify what the store holds."""
        guard = self.overwrite_guard()
        if guard == "head":
            existing = self.head(key)
            if existing is not None:
                return self._already_stored(key, existing, expected)
        with source.open("rb") as src:
            size = os.fstat(src.fileno()).st_size
            if size != expected.size:
                raise IntegrityError(f"{key}: {source} has {size} bytes, expected {expected.size}; nothing stored")
            args = {
                "Bucket": self.bucket,
                "Key": key,
                "Metadata": {SHA256_METADATA: expected.sha256_hex},
                "ContentType": mimetypes.guess_type(key)[0] or "application/octet-stream",
                **self._upload_args,
            }
            if guard == "if-none-match":
                args["IfNoneMatch"] = "*"
            sent_sha256: str | None
            version: str | None  # the version this upload wrote, where the store names it
            try:
                with self._errors(f"upload {key}"):
                    if size > self.config.multipart_threshold_mb * MiB:
                        store_checks = self.sha256_check() == "store"
                        sent_sha256, version = self._put_parts(src, args, store_checks_sha256=store_checks)
                    else:
                        sent_sha256, version = self._put_single(src, size, expected, args)
            except botocore.exceptions.ClientError as exc:
                if _code(exc) != "PreconditionFailed":
                    raise
                existing = self.head(key)
                if existing is None:
                    raise IntegrityError(f"{key}: {self.where} answered 412 (exists) yet holds nothing") from None
                return self._already_stored(key, existing, expected)
        if sent_sha256 is not None and sent_sha256 != expected.sha256_hex:
            self._discard(key, version)
            raise IntegrityError(f"{key}: sha256 expected {expected.sha256_hex} got {sent_sha256}; nothing stored")
        return self._verify_new(key, expected, version)

    def head(self, key: str) -> StoredObject | None:
        try:
            with self._errors(f"head {key}"):
                answer = self.client.head_object(Bucket=self.bucket, Key=key)
        except botocore.exceptions.ClientError as exc:
            if _code(exc) in _NOT_FOUND_CODES or _status(exc) == 404:
                return None
            raise
        return StoredObject(
            key=key,
            size=int(answer["ContentLength"]),
            sha256_hex=answer.get("Metadata", {}).get(SHA256_METADATA),
            location=f"s3://{self.bucket}/{key}",
            etag=str(answer.get("ETag", "")).strip('"') or None,
        )

    def read(self, key: str, sink: BinaryIO) -> None:
        with self._object(key, "read"):
            body = self.client.get_object(Bucket=self.bucket, Key=key)["Body"]
            try:
                for chunk in body.iter_chunks(CHUNK_SIZE):
                    sink.write(chunk)
            finally:
                body.close()

    def delete(self, key: str) -> None:
        """Delete every version of ``key``, unless it is retained or held."""
        versions = self._versions(key)
        if not versions:
            return
        if self.config.object_lock == "off":
            retain_until, legal_hold = self._tag_hold(key)
            if retain_until is _UNREADABLE:
                raise ObjectLocked(f"{key}: its {RETAIN_TAG} tag is not a date with a UTC offset; kept")
            if legal_hold or (retain_until is not None and retain_until > self._now()):
                until = f" until {retain_until.isoformat()}" if retain_until else ""
                raise ObjectLocked(f"{key}: under {'legal hold' if legal_hold else 'retention'}{until}")
        for version in versions:
            with self._errors(f"delete {key}"):
                try:
                    self.client.delete_object(Bucket=self.bucket, Key=key, VersionId=version)
                except botocore.exceptions.ClientError as exc:
                    if _code(exc) == "AccessDenied" and self.config.object_lock != "off":
                        raise ObjectLocked(f"{key}: the bucket's object lock refuses deletion") from None
                    raise

    def set_retention(self, key: str, retain_until: datetime | None, legal_hold: bool) -> None:
        if self.head(key) is None:
            raise ObjectNotFound(f"no object {key!r} in {self.where}")
        if self.config.object_lock == "off":
            self._set_tag_hold(key, retain_until, legal_hold)
            return
        with self._object(key, "set retention on"):
            if retain_until is not None:
                current = self._lock_retention(key)
                if current is None or retain_until > current:
                    self.client.put_object_retention(
                        Bucket=self.bucket,
                        Key=key,
                        Retention={"Mode": self.config.object_lock.upper(), "RetainUntilDate": retain_until},
                    )
            self.client.put_object_legal_hold(
                Bucket=self.bucket, Key=key, LegalHold={"Status": "ON" if legal_hold else "OFF"}
            )

    def url(self, key: str, expires_s: int) -> str:
        if self.head(key) is None:
            raise ObjectNotFound(f"no object {key!r} in {self.where}")
        url: str = self.client.generate_presigned_url(
            "get_object", Params={"Bucket": self.bucket, "Key": key}, ExpiresIn=expires_s
        )
        return url

    def check(self) -> CheckResult:
        try:
            with self._errors("reach"):
                self.client.head_bucket(Bucket=self.bucket)
        except StoreUnavailable as exc:
            return CheckResult(ok=False, detail=str(exc))
        except botocore.exceptions.ClientError as exc:
            missing = " (no such bucket)" if _status(exc) == 404 else ""
            return CheckResult(ok=False, detail=f"{self.where}: {_code(exc) or _status(exc)}{missing}: {exc}")
        probed = "auto (probed before the first upload)"
        return CheckResult(
            ok=True,
            detail=f"{self.where} reachable ({self.config.addressing_style} addressing, "
            f"checksums {self.config.request_checksum_calculation}, object lock {self.config.object_lock}, "
            f"overwrite guard {self._guard or probed}, sha256 checked by {self._sha256_check or probed})",
        )

    # --- what the store enforces, configured or probed -------------------------------------------------

    def overwrite_guard(self) -> OverwriteGuard:
        """How uploads keep existing keys: the configured guard, or the probe's answer for ``auto``."""
        with self._probe_lock:
            if self._guard is None:
                self._guard = "if-none-match" if self._refuses_conditional_overwrite() else "head"
                event(self._log, "s3.overwrite_guard", endpoint=self.where, guard=self._guard)
            return self._guard

    def sha256_check(self) -> Sha256Check:
        """Who checks an upload's SHA-256: the configured side, or the probe's answer for ``auto``."""
        with self._probe_lock:
            if self._sha256_check is None:
                self._sha256_check = "store" if self._refuses_wrong_sha256() else "client"
                event(self._log, "s3.sha256_check", endpoint=self.where, by=self._sha256_check)
            return self._sha256_check

    def _refuses_conditional_overwrite(self) -> bool:
        """PUT a throwaway key twice with If-None-Match: *; True when the store refused the second (412)."""
        with self._probe_key() as key:
            return (
                key is not None
                and self._probe_put(key, b"probe", IfNoneMatch="*") == 200
                and (self._probe_put(key, b"again", IfNoneMatch="*") == 412)
            )

    def _refuses_wrong_sha256(self) -> bool:
        """PUT a throwaway key with its right x-amz-checksum-sha256, then with a wrong one; True when the store
        took the first and refused the second (400)."""
        right = hashlib.sha256(b"probe").hexdigest()
        with self._probe_key() as key:
            return (
                key is not None
                and self._probe_put(key, b"probe", ChecksumSHA256=_b64(right)) == 200
                and (self._probe_put(key, b"wrong", ChecksumSHA256=_b64(right)) == 400)
            )

    @contextmanager
    def _probe_key(self) -> Iterator[str | None]:
        """A throwaway key, deleted after the probe, and before it every probe key a killed process left. (A
        probe of another node that is deleted under it only gets the conservative answer: head, client.)

        ``None``, and nothing written or deleted, when the store's listing of the probes' prefix names any other
        key: a store that ignores the prefix (or lies) would otherwise have the probe delete recordings, so it
        gets no probe and the conservative answers."""
        left = self._earlier_probes()
        if left is None:
            yield None
            return
        key = f"{PROBE_PREFIX}{uuid.uuid4().hex}"
        try:
            yield key
        finally:
            for probe in [*left, key]:
                try:
                    self._discard_probe(probe)
                except (StoreUnavailable, botocore.exceptions.ClientError) as exc:
                    event(self._log, "s3.probe_left", logging.WARNING, endpoint=self.where, key=probe, error=str(exc))

    def _earlier_probes(self) -> list[str] | None:
        """The keys earlier probes left (only ever ``PROBE_KEY``s: anything else under the prefix is left alone);
        ``None`` when the listing names a key outside the prefix, logged as ``s3.probe_listing_foreign``."""
        left: list[str] = []
        with self._errors("list earlier probes"):
            pages = self.client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=PROBE_PREFIX)
            for number, page in enumerate(pages, 1):
                listed = [str(entry.get("Key", "")) for entry in page.get("Contents", [])]
                foreign = [key for key in listed if not key.startswith(PROBE_PREFIX)]
                if foreign:
                    event(
                        self._log,
                        "s3.probe_listing_foreign",
                        logging.ERROR,
                        endpoint=self.where,
                        prefix=PROBE_PREFIX,
                        key=foreign[0][:200],
                        keys=len(foreign),
                        action="no probe, nothing deleted; head guard and client sha256",
                    )
                    return None
                left.extend(key for key in listed if PROBE_KEY.fullmatch(key))
                if number == MAX_PROBE_PAGES and page.get("IsTruncated"):  # an endless listing ran out of memory
                    event(self._log, "s3.probe_listing_cut", logging.WARNING, endpoint=self.where, pages=number)
                    break
        return left

    def _probe_put(self, key: str, body: bytes, **header: str) -> int:
        """HTTP status of a PUT with one probed header: 200, 412 (refused), or 400/501 (a refused body, or a
        store that does not know the header)."""
        with self._errors(f"probe {', '.join(header)} with {key}"):
            try:
                self.client.put_object(Bucket=self.bucket, Key=key, Body=body, ContentMD5=_b64_md5(body), **header)
            except botocore.exceptions.ClientError as exc:
                if _status(exc) in (400, 412, 501):
                    return _status(exc)
                raise
        return 200

    # --- uploads --------------------------------------------------------------------------------------

    def _put_single(
        self, src: BinaryIO, size: int, expected: Checksums, args: dict[str, Any]
    ) -> tuple[str | None, str | None]:
        """One PUT with Content-MD5. Returns the SHA-256 of the bytes sent, or None when the store checked the
        expected one (x-amz-checksum-sha256) and would have refused other bytes; and the version written."""
        args = {"ContentLength": size, "ContentMD5": _b64(expected.md5_hex), **args}
        if self.sha256_check() == "store":
            answer = self.client.put_object(Body=src, ChecksumSHA256=_b64(expected.sha256_hex), **args)
            return None, answer.get("VersionId")
        body = _HashingReader(src)
        answer = self.client.put_object(Body=body, **args)
        return body.hexdigest(), answer.get("VersionId")

    def _put_parts(self, src: BinaryIO, args: dict[str, Any], *, store_checks_sha256: bool) -> tuple[str, str | None]:
        """Multipart upload, each part with its own Content-MD5 and, where the store checks it, its own
        x-amz-checksum-sha256 (a part with other bytes is refused, as a single PUT is); aborted on any failure.
        Returns the SHA-256 of all the bytes sent, and the version written."""
        conditional = {"IfNoneMatch": args.pop("IfNoneMatch")} if "IfNoneMatch" in args else {}
        if store_checks_sha256:
            args = {**args, "ChecksumAlgorithm": "SHA256"}
        upload_id = self.client.create_multipart_upload(**args)["UploadId"]
        where = {"Bucket": self.bucket, "Key": args["Key"], "UploadId": upload_id}
        sha256 = hashlib.sha256()
        parts: list[dict[str, Any]] = []
        try:
            while data := src.read(self.config.part_size_mb * MiB):
                sha256.update(data)
                part: dict[str, Any] = {"PartNumber": len(parts) + 1}
                if store_checks_sha256:
                    part["ChecksumSHA256"] = _b64(hashlib.sha256(data).hexdigest())
                answer = self.client.upload_part(
                    Body=data, ContentLength=len(data), ContentMD5=_b64_md5(data), **part, **where
                )
                parts.append({**part, "ETag": answer["ETag"]})
            answer = self.client.complete_multipart_upload(MultipartUpload={"Parts": parts}, **where, **conditional)
        except BaseException:
            with suppress(Exception):
                self.client.abort_multipart_upload(**where)
            raise
        return sha256.hexdigest(), answer.get("VersionId")

    def _verify_new(self, key: str, expected: Checksums, version: str | None) -> StoredObject:
        """Check what the store now holds: size, and the ETag as MD5 or else a read-back of every byte."""
        stored = self.head(key)
        if stored is None:
            raise IntegrityError(f"{key}: not in {self.where} after a successful upload")
        if stored.size != expected.size:
            self._discard(key, version)
            raise IntegrityError(f"{key}: the store holds {stored.size} bytes, expected {expected.size}")
        if stored.etag != expected.md5_hex:
            got = self._read_back(key)
            if got != expected:
                self._discard(key, version)
                raise IntegrityError(f"{key}: read-back differs from the upload ({got} vs {expected}); removed")
        return stored

    def _already_stored(self, key: str, existing: StoredObject, expected: Checksums) -> StoredObject:
        """The key holds an object already: fine when it is this recording, verified by the store's own MD5
        (a single-part ETag) or else a read-back; any other content is an error and stays untouched."""
        same = existing.size == expected.size and existing.sha256_hex in (None, expected.sha256_hex)
        if same and (existing.etag == expected.md5_hex or self._read_back(key) == expected):
            return existing
        raise IntegrityError(f"{key}: {self.where} already holds different content under this key")

    def _read_back(self, key: str) -> Checksums:
        with self._object(key, "read back"):
            body = self.client.get_object(Bucket=self.bucket, Key=key)["Body"]
            try:
                return copy_with_checksums(body, cast(BinaryIO, _Discard()))
            finally:
                body.close()

    def _discard(self, key: str, version: str | None) -> None:
        """Remove an object this put just wrote and found wrong: the version the store said it wrote, else the
        key's current object (a delete marker where the bucket keeps versions); never the key's other versions."""
        with self._errors(f"discard {key}"):
            if version:
                self.client.delete_object(Bucket=self.bucket, Key=key, VersionId=version)
            else:
                self.client.delete_object(Bucket=self.bucket, Key=key)

    def _discard_probe(self, key: str) -> None:
        """Remove every version of a probe's key (a probe writes two)."""
        if not PROBE_KEY.fullmatch(key):
            raise ValueError(f"{key!r} is not a probe's key")
        for version in self._versions(key):
            with self._errors(f"discard {key}"):
                self.client.delete_object(Bucket=self.bucket, Key=key, VersionId=version)

    # --- versions, tags, locks ------------------------------------------------------------------------

    def _versions(self, key: str) -> list[str]:
        """Version ids of ``key`` (and its delete markers); ``["null"]`` in an unversioned bucket."""
        found: list[str] = []
        with self._errors(f"list versions of {key}"):
            pages = self.client.get_paginator("list_object_versions").paginate(Bucket=self.bucket, Prefix=key)
            for number, page in enumerate(pages, 1):
                for entry in [*page.get("Versions", []), *page.get("DeleteMarkers", [])]:
                    if entry["Key"] == key:
                        found.append(str(entry.get("VersionId") or "null"))
                if number == MAX_VERSION_PAGES and page.get("IsTruncated"):  # an endless listing looped forever
                    event(self._log, "s3.versions_listing_cut", logging.WARNING, endpoint=self.where, key=key)
                    raise StoreUnavailable(f"{self.where}: list versions of {key}: no end after {number} pages")
        return found

    def _tags(self, key: str) -> dict[str, str]:
        with self._object(key, "read tags of"):
            answer = self.client.get_object_tagging(Bucket=self.bucket, Key=key)
        return {tag["Key"]: tag["Value"] for tag in answer.get("TagSet", [])}

    def _tag_hold(self, key: str) -> tuple[datetime | None, bool]:
        """The object's retain-until tag (``_UNREADABLE`` when it is not an aware date) and legal hold tag."""
        try:
            tags = self._tags(key)
        except ObjectNotFound:
            return None, False
        return self._retain_tag(key, tags), tags.get(HOLD_TAG) == "on"

    def _retain_tag(self, key: str, tags: dict[str, str]) -> datetime | None:
        """The retain-until tag as an aware date; ``_UNREADABLE`` (logged as ``s3.retention_tag_unreadable``)
        when the store holds anything else there, which the plugin never writes: such an object is kept."""
        until = tags.get(RETAIN_TAG)
        if not until:
            return None
        try:
            parsed = datetime.fromisoformat(until)
        except ValueError:
            parsed = None
        if parsed is None or parsed.utcoffset() is None:
            event(
                self._log,
                "s3.retention_tag_unreadable",
                logging.WARNING,
                endpoint=self.where,
                key=key,
                tag=until[:64],
            )
            return _UNREADABLE
        return parsed

    def _set_tag_hold(self, key: str, retain_until: datetime | None, legal_hold: bool) -> None:
        """Tag retention (only ever extended) and hold. An unreadable retain-until tag is replaced by a new
        date, or kept as it is (the object then is never deleted) when there is none."""
        tags = self._tags(key)
        current = self._retain_tag(key, tags)
        if current is _UNREADABLE:
            current = None
        if current is not None and (retain_until is None or current > retain_until):
            retain_until = current
        if retain_until is not None:
            tags[RETAIN_TAG] = retain_until.isoformat()
        tags[HOLD_TAG] = "on" if legal_hold else "off"
        with self._object(key, "tag"):
            self.client.put_object_tagging(
                Bucket=self.bucket, Key=key, Tagging={"TagSet": [{"Key": k, "Value": v} for k, v in tags.items()]}
            )

    def _lock_retention(self, key: str) -> datetime | None:
        """The object's current Object Lock retain-until date, from a HEAD."""
        until: datetime | None = self.client.head_object(Bucket=self.bucket, Key=key).get("ObjectLockRetainUntilDate")
        return until

    # --- errors ---------------------------------------------------------------------------------------

    @contextmanager
    def _object(self, key: str, what: str) -> Iterator[None]:
        """Like :meth:`_errors`, and a missing object becomes ObjectNotFound."""
        try:
            with self._errors(f"{what} {key}"):
                yield
        except botocore.exceptions.ClientError as exc:
            if _code(exc) in _NOT_FOUND_CODES or _status(exc) == 404:
                raise ObjectNotFound(f"no object {key!r} in {self.where}") from None
            raise

    @contextmanager
    def _errors(self, what: str) -> Iterator[None]:
        """Store-wide failures (after botocore's retries) become StoreUnavailable; a bad digest, IntegrityError."""
        try:
            yield
        except _TRANSPORT_ERRORS as exc:
            raise StoreUnavailable(f"{self.where}: {what}: {exc}") from exc
        except botocore.exceptions.ClientError as exc:
            code, status = _code(exc), _status(exc)
            if code in ("BadDigest", "InvalidDigest", "XAmzContentSHA256Mismatch"):
                raise IntegrityError(f"{what}: the store rejected the body ({code}); nothing stored") from None
            if status >= 500 or code in _UNAVAILABLE_CODES or code in _REFUSED_CODES or status in (401, 403):
                raise StoreUnavailable(f"{self.where}: {what}: {code or status}: {exc}") from exc
            raise
