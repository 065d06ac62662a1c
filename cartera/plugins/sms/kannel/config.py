"""Configuration of the Kannel SMS gateway."""

from __future__ import annotations

import re
from typing import Annotated

from pydantic import AfterValidator, Field, SecretStr, field_validator

from cartera.plugin import PluginConfig


def _http_url(value: str) -> str:
    if not value.startswith(("http://", "https://")) or "?" in value:
        raise ValueError("must be an http:// or https:// URL without a query, e.g. http://127.0.0.1:13013")
    return value.rstrip("/")


HttpUrl = Annotated[str, AfterValidator(_http_url)]
_TOKEN = re.compile(r"[A-Za-z0-9_-]{16,}")


class KannelConfig(PluginConfig):
    smsbox_url: HttpUrl = Field(
        description="smsbox's sendsms interface (its sendsms-port), e.g. http://127.0.0.1:13013; "
        "messages go to {smsbox_url}/cgi-bin/sendsms"
    )
    username: str = Field(description="a sendsms-user's username: write it as ${ENV_VAR}")
    password: SecretStr = Field(description="that sendsms-user's password: write it as ${ENV_VAR}")
    sender: str | None = Field(
        default=None, description="the 'from' of each text (a short code or name); unset: the user's default-sender"
    )
    smsc_id: str | None = Field(default=None, description="route every text to this Kannel smsc-id (sendsms 'smsc')")
    dlr_mask: int = Field(
        default=31,
        ge=1,
        le=31,
        description="which delivery reports Kannel sends back: 1 delivered, 2 failed, 4 buffered, 8 accepted by "
        "the SMSC, 16 rejected by the SMSC (sum them; default all)",
    )
    validity_minutes: int | None = Field(
        default=None, ge=1, description="the SMSC drops a text not delivered within this time (reported expired)"
    )
    status_url: HttpUrl | None = Field(
        default=None,
        description="bearerbox's admin interface (its admin-port), e.g. http://127.0.0.1:13000: 'check' then "
        "also asks whether bearerbox runs and an SMSC connection is online",
    )
    status_password: SecretStr | None = Field(
        default=None, description="bearerbox's status-password (or admin-password): write it as ${ENV_VAR}"
    )
    callback_token: SecretStr | None = Field(
        default=None,
        description="a shared secret (16+ letters, digits, - or _) the node requires on Kannel's delivery-report "
        "and MO callbacks, as ?token=...: put the same in the sms-service get-url",
    )
    timeout_s: float = Field(
        default=10.0,
        gt=0,
        description="seconds smsbox or bearerbox has for a whole answer (connecting to the body's last byte): "
        "a box slower than that counts as not answering",
    )
    max_connections: int = Field(default=16, ge=1, le=256, description="HTTP connections kept open to smsbox")

    @field_validator("callback_token")
    @classmethod
    def _token_is_url_safe(cls, value: SecretStr | None) -> SecretStr | None:
        # Kannel expands %-escapes in the dlr-url, so the token must need no URL encoding.
        if value is not None and not _TOKEN.fullmatch(value.get_secret_value()):
            raise ValueError("must be 16 or more letters, digits, '-' or '_'")
        return value
