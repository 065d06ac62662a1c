"""Per-creditor settings of the CSV layouts: assignment files in, activity exports and rejections out."""

from __future__ import annotations

import codecs
from collections.abc import Collection
from typing import Annotated, ClassVar, Literal

from pydantic import Field, field_validator

from cartera.core.adapters import PluginConfig
from cartera.core.models import AssignmentAction
from cartera.portfolio.files.settle import DEFAULT_SETTLE_SECONDS, SettleSeconds

#: Action column values as creditors write them (compared ignoring case, accents and spaces).
DEFAULT_ACTIONS: dict[str, AssignmentAction] = {
    "": AssignmentAction.ASSIGN,
    "asignar": AssignmentAction.ASSIGN,
    "nuevo": AssignmentAction.ASSIGN,
    "assign": AssignmentAction.ASSIGN,
    "new": AssignmentAction.ASSIGN,
    "actualizar": AssignmentAction.UPDATE,
    "update": AssignmentAction.UPDATE,
    "retirar": AssignmentAction.WITHDRAW,
    "withdraw": AssignmentAction.WITHDRAW,
    "pago": AssignmentAction.PAYMENT,
    "payment": AssignmentAction.PAYMENT,
}

#: Our export fields and the headers the creditor gets by default.
DEFAULT_EXPORT_COLUMNS: dict[str, str] = {
    "seq": "secuencia",
    "kind": "tipo",
    "at": "fecha_hora",
    "creditor": "acreedor",
    "portfolio": "cartera",
    "account_ref": "cuenta",
    "phone": "telefono",
    "outcome": "resultado",
    "amount": "monto",
    "due_date": "fecha_compromiso",
    "agent": "agente",
}
#: All export fields: ``attempt`` (the call's id, shared by a call_attempt and the one correcting it) on request.
EXPORT_FIELDS = (*DEFAULT_EXPORT_COLUMNS, "attempt")


#: The encodings creditor files are read and written in (codec name → the name operators write).
ENCODINGS = {"utf-8": "utf-8", "utf-8-sig": "utf-8-sig", "cp1252": "windows-1252", "iso8859-1": "latin-1"}
#: Those of spreadsheet exports that are not UTF-8: one byte a character.
LEGACY_ENCODINGS = ("cp1252", "iso8859-1")


def codec_name(encoding: str) -> str:
    """Python's name of ``encoding`` (``"windows-1252"`` → ``"cp1252"``); ``""`` when it is none."""
    try:
        return codecs.lookup(encoding).name
    except LookupError:
        return ""


def _allowed(value: str, codecs_allowed: Collection[str] = ENCODINGS) -> str:
    if codec_name(value) not in codecs_allowed:
        names = [ENCODINGS[codec] for codec in codecs_allowed]
        raise ValueError(f"{value!r} is not an allowed encoding (use {', '.join(names[:-1])} or {names[-1]})")
    return value


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
        description="Header of the action (values mapped by `actions`); optional column: no column assigns.",
    )
    payment_date: str = Field(
        "fecha_pago", min_length=1, description="Header of the day a payment was made (payment rows); optional."
    )
    payment_ref: str = Field(
        "referencia_pago",
        min_length=1,
        description="Header of the creditor's payment reference (payment rows); optional.",
    )
    due_date: str = Field(
        "fecha_vencimiento",
        min_length=1,
        description="Header of the day the debt fell due (a date in `date_formats`); optional: days past due on "
        "the screen and the list's segments (tramos de mora) come from it.",
    )
    days_past_due: str = Field(
        "dias_mora",
        min_length=1,
        description="Header of the days past due on the day the file is imported, for files without a due date; "
        "optional (the due date wins when a row has both).",
    )
    risk_score: str = Field(
        "puntaje_riesgo",
        min_length=1,
        description="Header of the creditor's risk score of the account (a number); optional: the call list "
        "weighs it as [campaign.listing] risk_score says.",
    )


class ExportFormatConfig(PluginConfig):
    """The creditor's CSV dialect for what we send back: activity exports and rejection reports."""

    delimiter: Literal[";", ","] = Field(";", description="Field delimiter.")
    encoding: str = Field(
        "utf-8-sig",
        description="Text encoding: utf-8-sig (UTF-8 with a BOM, as spreadsheets open it), utf-8, windows-1252 "
        "or latin-1; a character windows-1252 or latin-1 lacks is written as a backslash escape (\\u03a9).",
    )
    decimal_comma: bool = Field(True, description="Write amounts with a decimal comma (1250000,50).")
    date_format: str = Field("%Y-%m-%d", description="strftime format of dates (promise due dates).")
    columns: dict[str, str] = Field(
        default_factory=lambda: dict(DEFAULT_EXPORT_COLUMNS),
        description=f"Export field → the creditor's header, in output order; fields: {', '.join(EXPORT_FIELDS)}.",
    )
    rejection_columns: tuple[str, str, str] = Field(
        ("linea", "campo", "motivo"), description="Headers of the rejection report's line, field and reason."
    )

    @field_validator("encoding")
    @classmethod
    def _known(cls, value: str) -> str:
        return _allowed(value)

    @field_validator("columns")
    @classmethod
    def _known_fields(cls, value: dict[str, str]) -> dict[str, str]:
        unknown = sorted(set(value) - set(EXPORT_FIELDS))
        if unknown or not value:
            raise ValueError(f"unknown export field(s) {', '.join(unknown)}; use {', '.join(EXPORT_FIELDS)}")
        return value


#: 200,000 rows of a few hundred bytes, with room.
DEFAULT_MAX_FILE_BYTES = 512 << 20

MaxFileBytes = Annotated[
    int,
    Field(
        ge=64 << 10,
        le=64 << 30,
        description="Largest assignment file read, bytes: a larger one is left where it is, unread (one warning; "
        "sftp_csv does not download it), and a file (or download) growing past it is read no further, so a "
        "creditor's file can neither fill the node's disk nor hold the sync (a sparse file's terabytes).",
    ),
]
"""The ``max_file_bytes`` setting, one definition for ``csv`` and ``sftp_csv`` (default 512 MiB)."""


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
        description="Text encoding every file must be in: utf-8 (with or without BOM), windows-1252 or latin-1; "
        "unset: UTF-8 when the whole file decodes as UTF-8, else `legacy_encoding`.",
    )
    legacy_encoding: str = Field(
        "windows-1252",
        description="Encoding of spreadsheet exports that are not UTF-8: windows-1252 or latin-1; a file "
        "that is neither UTF-8 nor this is rejected naming the line.",
    )
    decimal_comma: bool | None = Field(
        None,
        description="Amounts use ',' for decimals and '.' for thousands (false: the reverse); a value written "
        "the other way fails its row. Unset: decided per value (the last separator is decimal; a single one "
        "followed by exactly 3 digits groups thousands: 7,999 and 7.999 are 7999). A first group starting with 0 "
        "is never one of thousands (0.004 is 4 thousandths), and an amount with more than 2 decimals fails its row, "
        "never rounded.",
    )
    date_formats: tuple[str, ...] = Field(
        ("%Y-%m-%d", "%d/%m/%Y", "%d-%m-%Y"),
        min_length=1,
        description="strptime formats of the dates in the files, tried in order.",
    )
    actions: dict[str, AssignmentAction] = Field(
        default_factory=lambda: dict(DEFAULT_ACTIONS),
        description="Action column values (ignoring case and accents) → assign, update, withdraw or payment.",
    )
    columns: ColumnsConfig = Field(
        default_factory=ColumnsConfig, description="The creditor's header names for our fields."
    )
    export: ExportFormatConfig = Field(
        default_factory=ExportFormatConfig,
        description="How activity exports and rejection reports are written for this creditor.",
    )

    @field_validator("encoding")
    @classmethod
    def _known(cls, value: str | None) -> str | None:
        return None if value is None else _allowed(value)

    @field_validator("legacy_encoding")
    @classmethod
    def _single_byte(cls, value: str) -> str:
        return _allowed(value, LEGACY_ENCODINGS)


class InboxFilesConfig(CsvFormatConfig):
    """CSV files a creditor leaves in an inbox, local (``csv``) or on its server (``sftp_csv``): the folders that are
    the site's alone (the archive and rejected folders may lie inside the inbox, their default place), how long a
    file must stay unchanged before it is read, and the largest file read."""

    exclusive_dirs: ClassVar[tuple[str, ...]] = ("inbox", "archive", "rejected", "outbox")
    nested_dirs: ClassVar[dict[str, str]] = {"archive": "inbox", "rejected": "inbox"}

    settle_seconds: SettleSeconds = DEFAULT_SETTLE_SECONDS
    max_file_bytes: MaxFileBytes = DEFAULT_MAX_FILE_BYTES
