"""Settings of the CSV creditor exchange: the file layout (reusable by other transports) and the directories."""

from __future__ import annotations

import codecs
from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator

from core.adapters import ConfigPath, PluginConfig


class ColumnsConfig(PluginConfig):
    """Which of the creditor's headers holds each of our fields (matched ignoring case, accents, spaces)."""

    account_ref: str = Field("cuenta", min_length=1, description="Header of the creditor's account reference.")
    debtor_name: str = Field("nombre", min_length=1, description="Header of the debtor's name.")
    phones: tuple[str, ...] = Field(
        ("telefono1", "telefono2", "telefono3"),
        min_length=1,
        description="Headers of the phone columns, in order of preference; the file needs at least one.",
    )
    balance: str = Field(
        "saldo", min_length=1, description="Header of the balance (the payment amount on payment rows)."
    )
    currency: str = Field("moneda", min_length=1, description="Header of the ISO 4217 currency; optional column.")
    action: str = Field(
        "accion",
        min_length=1,
        description="Header of the action (asignar/assign, retirar/withdraw, pago/payment); optional column.",
    )


class CsvFormatConfig(PluginConfig):
    """How one creditor writes its assignment files."""

    creditor: str = Field(min_length=1, description="Creditor code the accounts of these files belong to.")
    portfolio: str = Field(min_length=1, description="Portfolio code the accounts of these files belong to.")
    currency: str = Field(
        "COP", pattern=r"^[A-Z]{3}$", description="ISO 4217 currency of rows without a currency column."
    )
    delimiter: Literal[";", ","] | None = Field(
        None, description="Field delimiter; unset: the one the header line uses most."
    )
    encoding: str | None = Field(
        None,
        description="Text encoding (utf-8, windows-1252...); unset: UTF-8 (with or without BOM), else Windows-1252.",
    )
    decimal_comma: bool | None = Field(
        None,
        description="Amounts use ',' for decimals and '.' for thousands; unset: decided per value "
        "(the last separator is decimal; a single one followed by exactly 3 digits groups thousands).",
    )
    columns: ColumnsConfig = Field(
        default_factory=ColumnsConfig, description="The creditor's header names for our fields."
    )

    @field_validator("encoding")
    @classmethod
    def _ascii_compatible(cls, value: str | None) -> str | None:
        if value is None:
            return None
        sample = b"cuenta;saldo\r\n"
        try:
            codecs.lookup(value)
            compatible = sample.decode(value) == sample.decode("ascii")
        except (LookupError, UnicodeDecodeError):
            compatible = False
        if not compatible:
            raise ValueError(f"{value!r} is not a known ASCII-compatible encoding (use utf-8 or windows-1252)")
        return value


class CsvDirConfig(CsvFormatConfig):
    """Assignment files arrive in ``inbox``; activity exports are written to ``outbox``."""

    inbox: ConfigPath = Field(description="Directory where the creditor drops assignment files.")
    pattern: str = Field("*.csv", min_length=1, description="Glob of the assignment files in the inbox.")
    archive: ConfigPath | None = Field(
        None,
        description="Where imported files are moved (same filesystem as the inbox); unset: INBOX/imported.",
    )
    keep_files: bool = Field(
        False,
        description="Leave imported files in the inbox (their sha256 is remembered in the adapter's data "
        "directory so they are not fetched again) instead of moving them to the archive.",
    )
    outbox: ConfigPath = Field(description="Directory the activity exports are written to.")

    @property
    def archive_dir(self) -> Path:
        return self.archive if self.archive is not None else self.inbox / "imported"
