"""Configuration of the s3 recording store: one endpoint, one bucket, the endpoint's own botocore settings."""

from __future__ import annotations

import re
from typing import Literal

from pydantic import Field, HttpUrl, SecretStr, field_validator, model_validator

from cartera.plugin import PluginConfig

_BUCKET = re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]")
ChecksumMode = Literal["when_supported", "when_required"]
OverwriteGuard = Literal["head", "if-none-match"]
Sha256Check = Literal["store", "client"]


class S3Config(PluginConfig):
    bucket: str = Field(description="Bucket holding the recordings (it must exist).")
    endpoint_url: HttpUrl | None = Field(
        default=None, description="The S3-compatible endpoint, e.g. https://rgw.internal:7480; omit for AWS S3."
    )
    region: str = Field(default="us-east-1", description="Region the endpoint signs requests for.")
    access_key_id: SecretStr | None = Field(
        default=None, description='Access key; write it as "${ENV_VAR}". Omit both keys to use the AWS chain.'
    )
    secret_access_key: SecretStr | None = Field(default=None, description='Secret key; write it as "${ENV_VAR}".')
    addressing_style: Literal["path", "virtual", "auto"] = Field(
        default="path", description="path: endpoint/bucket/key (most S3-compatible stores); virtual: bucket.endpoint."
    )
    request_checksum_calculation: ChecksumMode = Field(
        default="when_required",
        description="when_supported adds boto3's default CRC checksums to uploads; several S3-compatible stores "
        "reject or ignore them. Every upload carries Content-MD5 either way.",
    )
    response_checksum_validation: ChecksumMode = Field(
        default="when_required", description="when_supported validates CRC checksums the store returns on reads."
    )
    server_side_encryption: Literal["AES256", "aws:kms"] | None = Field(
        default=None, description="Ask the store to encrypt each object at rest (SSE-S3 or SSE-KMS)."
    )
    sse_kms_key_id: str | None = Field(default=None, description="KMS key id, with server_side_encryption = aws:kms.")
    storage_class: str | None = Field(
        default=None, pattern=r"^[A-Z][A-Z0-9_]*$", description="e.g. STANDARD_IA or GLACIER_IR; the store's default."
    )
    object_lock: Literal["off", "governance", "compliance"] = Field(
        default="off",
        description="off: retention and legal hold are object tags the plugin obeys; governance/compliance: the "
        "bucket's S3 Object Lock enforces them (the bucket must have Object Lock enabled).",
    )
    no_overwrite: Literal["head", "if-none-match", "auto"] = Field(
        default="head",
        description="How a key is kept from being overwritten. head: a HEAD before each upload (any store). "
        "if-none-match: a conditional PUT (If-None-Match: *), one request fewer, only for stores that honour it "
        "(AWS S3, MinIO, SeaweedFS; not radosgw 20.2, which overwrites). auto: before the first upload, PUT a "
        "throwaway key twice with If-None-Match: * and use if-none-match only if the store refused the second "
        "(the probe is deleted after).",
    )
    sha256_check: Literal["store", "client", "auto"] = Field(
        default="auto",
        description="Who makes sure the bytes stored have the recording's SHA-256 (Content-MD5 is checked by the "
        "store either way). store: each single-part upload carries x-amz-checksum-sha256 and the store refuses a "
        "body that does not match (AWS S3, SeaweedFS): one pass over the file fewer. client: the plugin hashes "
        "the bytes as it sends them (any store; radosgw 20.2 on dbstore ignores the header). auto: before the "
        "first upload, PUT a throwaway key with a right and then a wrong x-amz-checksum-sha256, and use store "
        "only if the store took the first and refused the second (the probe is deleted after).",
    )
    multipart_threshold_mb: int = Field(
        default=16,
        ge=5,
        le=5120,
        description="Files larger than this (long or stereo calls) go up in parts, each with its Content-MD5 and, "
        "where the store checks it (sha256_check), its x-amz-checksum-sha256; the object is then read back.",
    )
    part_size_mb: int = Field(default=16, ge=5, le=5120, description="Size of each multipart part.")
    max_pool_connections: int = Field(
        default=32,
        ge=1,
        le=256,
        description="HTTP connections to the endpoint; the archival job uploads as many recordings at once unless "
        "[archival] workers says otherwise. Each upload waits out a few round trips, so a store far away (a cloud "
        "region) needs many in flight (bench/RESULTS.md, archives across a WAN).",
    )
    max_attempts: int = Field(
        default=5, ge=1, le=20, description="Tries per request (5xx, 503 SlowDown, timeouts, dropped connections)."
    )
    retry_mode: Literal["standard", "adaptive"] = Field(
        default="standard",
        description="botocore retry mode: exponential backoff with jitter (adaptive adds client-side rate limiting).",
    )
    connect_timeout_s: float = Field(default=5, gt=0, le=120, description="Seconds to open a connection.")
    read_timeout_s: float = Field(
        default=60, gt=0, le=600, description="Seconds to wait for each read of the store's answer (per read)."
    )
    deadline_s: float | None = Field(
        default=None,
        gt=0,
        le=3600,
        description="Wall-clock seconds one request (each try, each part) may take in all, plus the time to move "
        "its body at min_rate_kib_s; a store answering a byte at a time then counts as down. Default: "
        "connect_timeout_s + 2 * read_timeout_s.",
    )
    min_rate_kib_s: float = Field(
        default=64,
        gt=0,
        le=1048576,
        description="Slowest transfer (KiB/s) a request's deadline allows for: a request moving N KiB (an upload, "
        "a part, a read back) gets N / min_rate_kib_s seconds more than deadline_s; the size a store's answer "
        "announces adds at most one hour.",
    )

    @property
    def request_deadline_s(self) -> float:
        """deadline_s, or its default from the timeouts."""
        return self.deadline_s if self.deadline_s is not None else self.connect_timeout_s + 2 * self.read_timeout_s

    @field_validator("endpoint_url", mode="before")
    @classmethod
    def _no_credentials(cls, value: object) -> object:
        if isinstance(value, str) and "@" in value:  # never parsed, so never rewritten and shown
            raise ValueError("the endpoint URL must not carry credentials: use access_key_id and secret_access_key")
        return value

    @field_validator("bucket")
    @classmethod
    def _bucket_name(cls, value: str) -> str:
        if not _BUCKET.fullmatch(value) or ".." in value:
            raise ValueError(f"{value!r} is not a valid bucket name (3-63 of a-z, 0-9, '.', '-')")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> S3Config:
        if (self.access_key_id is None) != (self.secret_access_key is None):
            raise ValueError("give both access_key_id and secret_access_key, or neither")
        if self.sse_kms_key_id is not None and self.server_side_encryption != "aws:kms":
            raise ValueError("sse_kms_key_id needs server_side_encryption = 'aws:kms'")
        if self.part_size_mb > self.multipart_threshold_mb:
            raise ValueError("part_size_mb must not exceed multipart_threshold_mb")
        return self
