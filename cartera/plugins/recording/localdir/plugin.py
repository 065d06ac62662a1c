"""The ``localdir`` recording store adapter."""

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
from cartera.plugins.recording.localdir.client import ArchiveDirectory
from cartera.plugins.recording.localdir.config import LocalDirConfig


class LocalDirStore(RecordingStore[LocalDirConfig]):
    """Archives recordings into a directory (a local disk or a mounted share)."""

    name: ClassVar[str] = "localdir"
    config_model: ClassVar[type[PluginConfig]] = LocalDirConfig
    capabilities: ClassVar[RecordingStoreCapabilities] = RecordingStoreCapabilities()

    def __init__(self, config: LocalDirConfig, context: PluginContext) -> None:
        super().__init__(config, context)
        self.archive = ArchiveDirectory(config.path, fsync=config.fsync)

    def start(self) -> None:
        self.archive.root.mkdir(parents=True, exist_ok=True)

    def check(self) -> CheckResult:
        return self.archive.check()

    def put(self, key: str, source: Path, checksums: Checksums) -> StoredObject:
        return self.archive.put(key, source, checksums)

    def head(self, key: str) -> StoredObject | None:
        return self.archive.head(key)

    def read(self, key: str, sink: BinaryIO) -> None:
        self.archive.read(key, sink)

    def delete(self, key: str) -> None:
        self.archive.delete(key, self.context.clock.now())

    def set_retention(self, key: str, retain_until: datetime | None, legal_hold: bool) -> None:
        self.archive.set_retention(key, retain_until, legal_hold)


@hookimpl
def cartera_register_recording_stores(register: AdapterRegistry[RecordingStore[Any]]) -> None:
    register.add(LocalDirStore)
