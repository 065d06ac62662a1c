"""Settings of the creditor-database exchange: the connection, the assignments view, the activities table."""

from __future__ import annotations

import re

from pydantic import ConfigDict, Field, SecretStr, field_validator
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from cartera.plugin import (
    DEFAULT_ACTIONS,
    DEFAULT_EXPORT_COLUMNS,
    EXPORT_FIELDS,
    AssignmentAction,
    ColumnsConfig,
    PluginConfig,
)

#: A table or view name, optionally schema-qualified (``crm.asignaciones``).
TABLE_NAME = r"^[A-Za-z_][A-Za-z0-9_$]*(\.[A-Za-z_][A-Za-z0-9_$]*)?$"


class RejectionColumnsConfig(PluginConfig):
    """Columns of the creditor's rejections table."""

    id: str = Field("rechazo", min_length=1, description="Unique text column: the rejection's id (page and line).")
    account_ref: str = Field("cuenta", min_length=1, description="The rejected row's account reference.")
    field: str = Field("campo", min_length=1, description="The field at fault.")
    reason: str = Field("motivo", min_length=1, description="Why the row was not loaded.")
    at: str = Field("fecha_hora", min_length=1, description="When the node rejected it (timestamp with time zone).")


class SqlSyncConfig(PluginConfig):
    """Assignments come from ``view``, read incrementally by ``watermark``; activities go into ``activities_table``."""

    model_config = ConfigDict(hide_input_in_errors=True)

    url: SecretStr = Field(
        description="SQLAlchemy URL of the creditor's database (postgresql+psycopg://user:password@host/db); "
        'write it as "${ENV_VAR}" in sites.toml: it holds the password.'
    )
    view: str = Field(pattern=TABLE_NAME, description="The view (or table) of assignments, optionally schema.name.")
    creditor: str = Field(min_length=1, description="Creditor code the accounts of the view belong to.")
    portfolio: str = Field(min_length=1, description="Portfolio code the accounts of the view belong to.")
    currency: str = Field(
        "COP", pattern=r"^[A-Z]{3}$", description="ISO 4217 currency of rows without a currency column."
    )
    columns: ColumnsConfig = Field(
        default_factory=ColumnsConfig,
        description="The view's column names for our fields (matched ignoring case and accents).",
    )
    actions: dict[str, AssignmentAction] = Field(
        default_factory=lambda: dict(DEFAULT_ACTIONS),
        description="Action column values (ignoring case and accents) → assign, update, withdraw or payment.",
    )
    watermark: str = Field(
        "updated_at",
        min_length=1,
        description="Column that grows whenever a row is added or changed (a timestamp or a sequence set at "
        "commit); rows are read in (watermark, key) order after the last row imported. Rows where it is NULL "
        "are never read.",
    )
    key: str | None = Field(
        None,
        min_length=1,
        description="Column that orders rows of equal watermark; unset: the account column. (watermark, key) "
        "should be unique: rows of an equal pair are read into one page whole, however many.",
    )
    page_rows: int = Field(
        5000, ge=1, le=100_000, description="Rows per delivery: each page of the view is imported on its own."
    )
    statement_timeout_s: float = Field(
        300.0,
        ge=1,
        le=3600,
        description="Longest any one statement on the creditor's database may run, seconds (PostgreSQL's "
        "statement_timeout, set on each connection): a page of the view that does not answer in time (a lock held "
        "on it, a view too slow) is cancelled and that sync fails naming the view. The node itself waits on no "
        "statement longer than this and 5 s, nor on a connection longer than that (30 s at most), whatever the "
        "server or the network does, so neither the sync, check nor the node's stop waits on it for ever.",
    )
    activities_table: str = Field(
        pattern=TABLE_NAME,
        description="The creditor's table activities are inserted into; its seq column must be unique.",
    )
    activity_columns: dict[str, str] = Field(
        default_factory=lambda: dict(DEFAULT_EXPORT_COLUMNS),
        description=f"Activity field → column of the activities table; fields: {', '.join(EXPORT_FIELDS)} "
        "(seq is required: it keeps a re-sent export from inserting twice).",
    )

    rejections_table: str | None = Field(
        None,
        pattern=TABLE_NAME,
        description="The creditor's table each quarantined row of the view is reported into (once); unset: "
        "rejections stay in the node's store and log.",
    )
    rejection_columns: RejectionColumnsConfig = Field(
        default_factory=RejectionColumnsConfig, description="Column names of the rejections table."
    )

    @field_validator("url")
    @classmethod
    def _parses(cls, value: SecretStr) -> SecretStr:
        try:
            url = make_url(value.get_secret_value())
        except ArgumentError:
            raise ValueError("not a SQLAlchemy URL (dialect+driver://user:password@host:port/database)") from None
        if url.get_backend_name() == "postgresql":
            _text_encoding(url.query.get("client_encoding"))
        return value

    @field_validator("activity_columns")
    @classmethod
    def _known_fields(cls, value: dict[str, str]) -> dict[str, str]:
        unknown = sorted(set(value) - set(EXPORT_FIELDS))
        if unknown:
            raise ValueError(f"unknown activity field(s) {', '.join(unknown)}; use {', '.join(EXPORT_FIELDS)}")
        if "seq" not in value:
            raise ValueError("map seq to a unique column: it keeps a re-sent export from inserting twice")
        _one_column_each(value)
        return value

    @field_validator("rejection_columns")
    @classmethod
    def _distinct_rejection_columns(cls, value: RejectionColumnsConfig) -> RejectionColumnsConfig:
        _one_column_each(value.model_dump())
        return value

    @property
    def key_column(self) -> str:
        return self.key or self.columns.account_ref


def _text_encoding(named: str | tuple[str, ...] | None) -> None:
    """Refuse a ``client_encoding`` the driver reads text as bytes in: ``SQL_ASCII`` (however spelt: PostgreSQL
    ignores case and punctuation in an encoding's name), or libpq's ``auto``, the node's locale's encoding, which is
    ``SQL_ASCII`` under the C locale. Every statement failed on text as bytes (a bare ``TypeError``)."""
    for each in (named,) if isinstance(named, str) else named or ():
        if each == "auto" or re.sub(r"[^0-9a-z]", "", each.lower()) == "sqlascii":
            raise ValueError(
                f"client_encoding={each} reads the database's text as bytes, which the node cannot read: name the "
                "encoding the text is really in (a legacy SQL_ASCII database's, ?client_encoding=WIN1252 or LATIN1), "
                "or leave client_encoding out to read it as UTF-8"
            )


def _one_column_each(mapping: dict[str, str]) -> None:
    """Refuse two fields mapped to one column: one would overwrite the other in every inserted row."""
    by_column: dict[str, list[str]] = {}
    for field, column in mapping.items():
        by_column.setdefault(column, []).append(field)
    shared = [f"{' and '.join(fields)} → {column}" for column, fields in by_column.items() if len(fields) > 1]
    if shared:
        raise ValueError(f"fields mapped to one column ({'; '.join(shared)}): give each field its own column")
