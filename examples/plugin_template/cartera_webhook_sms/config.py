"""Configuration of the webhook SMS gateway: the keys under ``[sites.NAME.sms]`` in ``sites.toml``."""

from __future__ import annotations

from cartera.plugin import PluginConfig
from pydantic import Field, HttpUrl, SecretStr


class WebhookSmsConfig(PluginConfig):
    url: HttpUrl = Field(description="The vendor's endpoint: messages are POSTed to it, check() GETs it.")
    token: SecretStr = Field(
        description='API token sent as "Authorization: Bearer ..."; write it as "${ENV_VAR}" in sites.toml.'
    )
    timeout: float = Field(
        default=10.0, gt=0, le=120, description="Seconds to wait for the vendor before a send fails."
    )
