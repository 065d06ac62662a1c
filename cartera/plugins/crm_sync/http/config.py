"""Settings of the creditor push API: one bearer token per creditor, optionally a webhook for the export."""

from __future__ import annotations

import re

from pydantic import Field, HttpUrl, SecretStr, field_validator

from cartera.plugin import CODE_PATTERN, PluginConfig, SettingError, secret_settings

#: A creditor code, portfolio code or batch id, whole (pydantic and FastAPI search a pattern): core's allow-list,
#: safe as a file name and a URL segment.
CODE = rf"^{CODE_PATTERN}$"
DEFAULT_MAX_BODY_BYTES = 16 << 20
#: RFC 6750's b64token: what a bearer token may hold, so the token a creditor presents is compared as written.
B64TOKEN = re.compile(r"[A-Za-z0-9\-._~+/]+=*")


class CreditorAccess(PluginConfig):
    """What one creditor may do on the API, and where its activity export is pushed."""

    token: SecretStr = Field(
        min_length=24,
        description='The bearer token this creditor sends (24+ characters); write it as "${ENV_VAR}" in sites.toml.',
    )
    portfolios: tuple[str, ...] = Field(
        (), description="Portfolio codes the creditor may push to; empty: any portfolio of this creditor."
    )
    webhook_url: HttpUrl | None = Field(
        None,
        description="The creditor's URL the node POSTs each activity export to (JSON); unset: the creditor "
        "pulls GET /plugins/crm_sync/v1/activities instead (always available).",
    )
    webhook_token: SecretStr | None = Field(
        None, description='Bearer token the node sends to the webhook; write it as "${ENV_VAR}".'
    )

    @field_validator("token", "webhook_token")
    @classmethod
    def _b64token(cls, token: SecretStr | None) -> SecretStr | None:
        """A token is an RFC 6750 b64token: one with whitespace would pass the shared-token check while meaning
        the same token to an HTTP stack that trims, and one with other characters cannot be sent in a header."""
        if token is not None and not B64TOKEN.fullmatch(token.get_secret_value()):
            raise ValueError(
                "must be an RFC 6750 b64token: ASCII letters, digits, '-', '.', '_', '~', '+', '/', then optional "
                "'=' padding (no spaces, newlines, quotes or non-ASCII characters)"
            )
        return token


class HttpApiConfig(PluginConfig):
    """The creditors allowed on the node's push API (``/plugins/crm_sync/v1``), by creditor code."""

    creditors: dict[str, CreditorAccess] = Field(
        min_length=1, description="Creditor code (as in the store) to its access: token, portfolios, webhook."
    )
    currency: str = Field("COP", pattern=r"^[A-Z]{3}$", description="ISO 4217 currency of rows that do not give one.")
    max_body_bytes: int = Field(
        DEFAULT_MAX_BODY_BYTES,
        ge=64 << 10,
        le=256 << 20,
        description="Largest request body the API reads, bytes (16 MiB: 10,000 rows with room); larger ones get 413.",
    )
    keep_batches_days: float = Field(
        30,
        ge=0,
        le=3650,
        description="Days a pushed batch is kept once imported (or rejected), with its summary and rejection report, "
        "then removed so a creditor cannot fill the node's disk; 0: removed once imported. Until then a re-push of "
        "its id answers its result; after, the id is unknown (a re-push is imported again, changing nothing).",
    )
    webhook_attempts: int = Field(
        3, ge=1, le=10, description="Tries per webhook delivery before the export fails (core re-sends later)."
    )
    webhook_timeout_s: float = Field(
        10.0, gt=0, le=120, description="Timeout of each connect, write or read of a webhook request, seconds."
    )
    webhook_deadline_s: float = Field(
        10.0,
        gt=0,
        le=300,
        description="Longest one webhook delivery may take, all tries and the answer included, seconds: past "
        "it the export fails (core re-sends later), so a slow webhook cannot hold the sync job or shutdown.",
    )
    webhook_backoff_s: float = Field(
        1.0, ge=0, le=60, description="Wait before the second try, doubled before each further try, seconds."
    )

    @field_validator("creditors")
    @classmethod
    def _codes(cls, creditors: dict[str, CreditorAccess]) -> dict[str, CreditorAccess]:
        for code in creditors:
            if not re.fullmatch(CODE_PATTERN, code):
                raise ValueError(f"creditor code {code!r} must be letters, digits, '.', '_', '@' or '-' (64 at most)")
        return creditors

    @field_validator("creditors")
    @classmethod
    def _secrets_of_their_own(cls, creditors: dict[str, CreditorAccess]) -> dict[str, CreditorAccess]:
        """No creditor's secret (token, webhook token) is another's: a token acts for the one creditor it maps
        to, so a shared one would let either push, withdraw, pay and pull the export, or be sent webhooks, as the
        other. A creditor's own webhook token may be its token."""
        holders: dict[str, str] = {}
        for code, access in creditors.items():
            own: dict[str, str] = {}
            for key, value in secret_settings(access):
                own.setdefault(value, ".".join(key))
            for value, name in own.items():
                if value in holders:
                    raise SettingError(
                        f"the same secret as creditors.{holders[value]}: each creditor needs secrets of its own "
                        "(a token two creditors share acts for either)",
                        code,
                        *name.split("."),
                    )
            holders |= {value: f"{code}.{name}" for value, name in own.items()}
        return creditors
