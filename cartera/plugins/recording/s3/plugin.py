"""The ``s3`` recording store adapter."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any, BinaryIO, ClassVar

from cartera.plugin import (
    AdapterRegistry,
    CheckResult,
    Checksums,
    PluginConfig,
    PluginContext,
    RecordingStore,
    RecordingStoreCapabilities,
    StoredObject,
    hookimpl,
)
from cartera.plugins.recording.s3.client import S3Bucket
from cartera.plugins.recording.s3.config import S3Config


class S3Store(RecordingStore[S3Config]):
    """Archives recordings into a bucket of any S3-compatible endpoint."""

    name: ClassVar[str] = "s3"
    config_model: ClassVar[type[PluginConfig]] = S3Config
    capabilities: ClassVar[RecordingStoreCapabilities] = RecordingStoreCapabilities(presigned_urls=True)

    def __init__(self, config: S3Config, context: PluginContext) -> None:
        super().__init__(config, context)
        self._bucket: S3Bucket | None = None

    @property
    def bucket(self) -> S3Bucket:
        if self._bucket is None:
            raise RuntimeError("the s3 store is not started")
        return self._bucket

    def start(self) -> None:
        self._bucket = S3Bucket(self.config, self.context.clock.now, self.context.log)

    def stop(self) -> None:
        if self._bucket is not None:
            self._bucket.close()

    def check(self) -> CheckResult:
        return self.bucket.check()

    def put(self, key: str, source: Path, checksums: Checksums) -> StoredObject:
        return self.bucket.put(key, source, checksums)

    def head(self, key: str) -> StoredObject | None:
        return self.bucket.head(key)

    def read(self, key: str, sink: BinaryIO) -> None:
        self.bucket.read(key, sink)

    def delete(self, key: str) -> None:
        self.bucket.delete(key)

    def set_retention(self, key: str, retain_until: datetime | None, legal_hold: bool) -> None:
        self.bucket.set_retention(key, retain_until, legal_hold)

    def url(self, key: str, expires_s: int) -> str:
        return self.bucket.url(key, expires_s)

    def max_concurrency(self) -> int:
        return self.config.max_pool_connections


@hookimpl
def cartera_register_recording_stores(register: AdapterRegistry[RecordingStore[Any]]) -> None:
    register.add(S3Store)
