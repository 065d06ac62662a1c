"""Configuration of the outbox SMS gateway."""

from __future__ import annotations

from pydantic import Field

from cartera.plugin import ConfigPath, PluginConfig


class OutboxConfig(PluginConfig):
    path: ConfigPath = Field(
        description="The JSON Lines file each message is appended to; it and its directory are created."
    )
    fsync: bool = Field(
        default=True, description="fsync the file after each message, so a crash never loses a sent one."
    )
