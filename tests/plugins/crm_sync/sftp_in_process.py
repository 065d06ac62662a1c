"""An SFTP server in the test's own process (paramiko, on 127.0.0.1) that serves what a test's classes say: the
hostile servers the sshd peer cannot play (one trickling bytes, one never ending a listing). Any login is let in."""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import paramiko
from paramiko.common import AUTH_SUCCESSFUL, OPEN_SUCCEEDED

from cartera.core.clock import SimulatedClock
from cartera.core.testing.context import CapturingContext
from cartera.plugins.crm_sync.sftp_csv.config import SftpCsvConfig
from cartera.plugins.crm_sync.sftp_csv.plugin import SftpCsvSync

NOW = datetime(2026, 3, 2, 13, 30, tzinfo=UTC)


class _Login(paramiko.ServerInterface):
    def check_auth_password(self, username: str, password: str) -> int:
        return AUTH_SUCCESSFUL

    def get_allowed_auths(self, username: str) -> str:
        return "password"

    def check_channel_request(self, kind: str, chanid: int) -> int:
        return OPEN_SUCCEEDED


class InProcessSftp:
    """Serves ``folder`` (the files) through ``server`` (the protocol handler) until :meth:`close`."""

    def __init__(
        self,
        tmp_path: Path,
        folder: type[paramiko.SFTPServerInterface],
        server: type[paramiko.SubsystemHandler] = paramiko.SFTPServer,
    ) -> None:
        self.key = paramiko.RSAKey.generate(2048)
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.known_hosts = tmp_path / f"known_hosts.{self.port}"
        self.known_hosts.write_text(f"[127.0.0.1]:{self.port} ssh-rsa {self.key.get_base64()}\n")
        self.transports: list[paramiko.Transport] = []

        def serve() -> None:
            while True:
                try:
                    client, _ = self.listener.accept()
                except OSError:
                    return
                transport = paramiko.Transport(client)
                transport.add_server_key(self.key)
                transport.set_subsystem_handler("sftp", server, folder)
                self.transports.append(transport)
                try:
                    transport.start_server(server=_Login())
                except (EOFError, paramiko.SSHException):  # the client left during the handshake (its deadline)
                    transport.close()

        self.thread = threading.Thread(target=serve, daemon=True)
        self.thread.start()

    def sync(self, data_dir: Path, **overrides: Any) -> SftpCsvSync:
        """A started ``sftp_csv`` adapter logged in to this server, files read at once (``settle_seconds = 0``)."""
        config = SftpCsvConfig.model_validate(
            {
                "host": "127.0.0.1",
                "port": self.port,
                "username": "acreedor",
                "password": "x",
                "known_hosts": self.known_hosts,
                "inbox": "/inbox",
                "outbox": "/outbox",
                "creditor": "BCO",
                "portfolio": "TARJETAS",
                "settle_seconds": 0,
                "timeout_s": 5,
            }
            | overrides
        )
        adapter = SftpCsvSync(config, CapturingContext(data_dir, clock=SimulatedClock(NOW, 1e-6)))
        adapter.start()
        return adapter

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.listener.shutdown(socket.SHUT_RDWR)  # wakes the accept() under way: close() alone does not
        self.listener.close()
        for transport in self.transports:
            transport.close()
        self.thread.join(5)


def files_folder(
    files: Mapping[str, bytes | None],
    read: Callable[[str, int, int], bytes] | None = None,
    opened: list[str] | None = None,
) -> type[paramiko.SFTPServerInterface]:
    """A folder (any path) listing ``files`` by name as the mapping holds them at each request: a regular file of
    its bytes' size, or a symlink for None; read as they are or as ``read(name, offset, length)`` answers (a
    server sending slowly). The names opened are appended to ``opened``."""

    def attributes(name: str) -> paramiko.SFTPAttributes:
        found = paramiko.SFTPAttributes()
        content = files[name]
        found.filename, found.st_size = name, len(content) if content is not None else 10
        found.st_mode = 0o100644 if content is not None else 0o120777
        found.st_mtime = found.st_atime = 1_700_000_000
        return found

    class Handle(paramiko.SFTPHandle):
        name = ""

        def read(self, offset: int, length: int) -> bytes:
            if read is not None:
                return read(self.name, offset, length)
            return (files[self.name] or b"")[offset : offset + length]

        def stat(self) -> paramiko.SFTPAttributes:
            return attributes(self.name)

    class Folder(paramiko.SFTPServerInterface):
        def list_folder(self, path: str) -> list[paramiko.SFTPAttributes]:
            return [attributes(name) for name in files]

        def stat(self, path: str) -> paramiko.SFTPAttributes:
            return attributes(path.rsplit("/", 1)[-1])

        lstat = stat

        def open(self, path: str, flags: int, attr: paramiko.SFTPAttributes) -> Handle:
            handle = Handle(flags)
            handle.name = path.rsplit("/", 1)[-1]
            if opened is not None:
                opened.append(handle.name)
            return handle

    return Folder
