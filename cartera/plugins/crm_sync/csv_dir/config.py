"""Settings of the ``csv`` creditor exchange: the creditor's CSV layout and the local directories."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field

from cartera.plugin import (
    ConfigPath,
    FileMode,
    InboxFilesConfig,
    WritableDir,
)


class CsvDirConfig(InboxFilesConfig):
    """Assignment files arrive in ``inbox``; activity exports are written to ``outbox``."""

    inbox: ConfigPath = Field(description="Directory where the creditor drops assignment files.")
    pattern: str = Field("*.csv", min_length=1, description="Glob of the assignment files in the inbox.")
    archive: WritableDir | None = Field(
        None,
        description="Where imported files are moved (same filesystem as the inbox); unset: INBOX/imported.",
    )
    rejected: WritableDir | None = Field(
        None,
        description="Where files rejected whole are moved once their rejection report is written (same "
        "filesystem as the inbox); unset: INBOX/rejected.",
    )
    keep_files: bool = Field(
        False,
        description="Leave imported and rejected files in the inbox (their sha256 and file identity are "
        "remembered in the adapter's data directory so they are not fetched again) instead of moving them.",
    )
    outbox: WritableDir = Field(description="Directory the activity exports are written to.")
    file_mode: FileMode = Field(
        0o600,
        description='Mode of the exports and rejection reports, octal text: "0640" lets the creditor\'s pick-up '
        "account, in the service's group, read them (and only them: the store and every other file are 0600).",
    )

    @property
    def archive_dir(self) -> Path:
        return self.archive if self.archive is not None else self.inbox / "imported"

    @property
    def rejected_dir(self) -> Path:
        return self.rejected if self.rejected is not None else self.inbox / "rejected"
