"""Settings of the ``sftp_csv`` creditor exchange: the server, its host key, the login and the remote folders."""

from __future__ import annotations

import posixpath
from typing import ClassVar

from pydantic import Field, SecretStr, model_validator

from cartera.plugin import (
    ConfigPath,
    FileMode,
    InboxFilesConfig,
)


class SftpCsvConfig(InboxFilesConfig):
    """Assignment files wait in the remote ``inbox``; exports and rejection reports go to the remote ``outbox``."""

    exclusive_server: ClassVar[tuple[str, ...]] = ("username", "host", "port")

    host: str = Field(min_length=1, description="The creditor's SFTP server (name or address).")
    port: int = Field(22, ge=1, le=65535, description="Its SSH port.")
    username: str = Field(min_length=1, description="The login the creditor gave the agency.")
    password: SecretStr | None = Field(None, description='Password login; write it as "${ENV_VAR}".')
    private_key: ConfigPath | None = Field(
        None, description="Private key file (OpenSSH or PEM; Ed25519, ECDSA or RSA) for key login."
    )
    private_key_passphrase: SecretStr | None = Field(
        None, description='Passphrase of the private key, if it has one; write it as "${ENV_VAR}".'
    )
    known_hosts: ConfigPath = Field(
        description="known_hosts file holding the server's host key (`ssh-keyscan -p PORT HOST`, checked "
        "out of band); an unknown or changed host key refuses the connection."
    )
    inbox: str = Field(min_length=1, description="Remote directory where the creditor drops assignment files.")
    pattern: str = Field("*.csv", min_length=1, description="fnmatch pattern of the assignment files in the inbox.")
    archive: str | None = Field(
        None, description="Remote directory imported files are renamed into; unset: INBOX/imported."
    )
    rejected: str | None = Field(
        None,
        description="Remote directory files rejected whole are renamed into once their rejection report is "
        "uploaded (created if missing); unset: INBOX/rejected.",
    )
    outbox: str = Field(min_length=1, description="Remote directory exports and rejection reports are uploaded to.")
    file_mode: FileMode = Field(
        0o600,
        description='Mode of the uploaded exports and rejection reports, octal text ("0640": readable by the '
        "login's group on the server), set whatever the server's umask.",
    )
    timeout_s: float = Field(30.0, gt=0, description="Connect, authentication and per-operation timeout.")
    download_timeout_s: float = Field(
        600.0,
        gt=0,
        le=86400,
        description="Longest one assignment file may take to download, and any other operation on the server as a "
        "whole (listing the inbox, a rename, an upload), seconds (timeout_s bounds each answer only): a server sending "
        "too slowly is cut (a file is skipped with one warning and tried again next sync, after the others; any "
        "other operation fails the fetch or export naming it), so it never holds the sync, nor the node's stop, "
        "longer than this.",
    )

    @model_validator(mode="after")
    def _some_login(self) -> SftpCsvConfig:
        if self.password is None and self.private_key is None:
            raise ValueError("set password or private_key (or both) to log in")
        return self

    @property
    def archive_dir(self) -> str:
        return self.archive if self.archive is not None else posixpath.join(self.inbox, "imported")

    @property
    def rejected_dir(self) -> str:
        return self.rejected if self.rejected is not None else posixpath.join(self.inbox, "rejected")
