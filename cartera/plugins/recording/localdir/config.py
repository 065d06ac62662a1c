"""Configuration of the localdir recording store."""

from __future__ import annotations

from pydantic import Field

from cartera.plugin import PluginConfig, WritableDir


class LocalDirConfig(PluginConfig):
    path: WritableDir = Field(description="Root directory of the archive; created when missing.")
    fsync: bool = Field(
        default=True,
        description="fsync every object and its directory before put returns (turn off only for tests).",
    )
