"""A real OpenSSH sshd, chrooted in a Debian-unstable root, serving a creditor's SFTP folders.

``running_sshd()`` builds (once, cached) the root with ``openssh-server``, writes a private instance under
``/srv/cartera/<id>`` inside it (a throwaway host key, sshd_config, the client's authorized key) and runs
``sshd -D`` on a free port of 127.0.0.1. The throwaway user logs in with a key or a password and is jailed
(``ChrootDirectory``, ``internal-sftp``) in a directory holding ``inbox`` and ``outbox``.
"""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import socket
import subprocess
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from tests.peers.debian import chrooted, debian_root
from tests.peers.net import free_port

PACKAGES = ("openssh-server",)
USER = "cartera-sftp"


@dataclass(frozen=True)
class Sshd:
    port: int
    user: str
    password: str
    #: The client's private key (outside the root) and a known_hosts file holding the server's host key.
    private_key: Path
    known_hosts: Path
    #: The user's jail as seen from the host: remote ``/inbox`` is ``jail / "inbox"``.
    jail: Path
    #: The instance directory inside the root, as seen from the host.
    home: Path
    #: The listening sshd's process id (each session runs in a child of it).
    pid: int

    def drop_sessions(self) -> None:
        """End every open session from the server side, as an idle timeout or a restart would."""
        children = subprocess.run(["pgrep", "-P", str(self.pid)], capture_output=True, text=True, check=False)
        for child in children.stdout.split():
            os.kill(int(child), signal.SIGTERM)

    def other_host_key(self, directory: Path) -> Path:
        """A known_hosts file holding a different key for this server: what a changed host key looks like."""
        known = directory / "known_hosts.changed"
        known.write_text(f"[127.0.0.1]:{self.port} {(self.home / 'other_key.pub').read_text().strip()}\n")
        return known


def _in_root(root: Path, *argv: str, stdin: str | None = None) -> None:
    done = subprocess.run(["chroot", str(root), *argv], input=stdin, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} failed in {root}: {done.stderr.strip()}")


def _wait_listening(port: int, process: subprocess.Popen[bytes], log: Path, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"sshd exited with {process.returncode}: {log.read_text(errors='replace')[-800:]}")
        with socket.socket() as probe:
            if probe.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    raise RuntimeError(f"sshd did not listen on 127.0.0.1:{port} within {timeout}s")


@contextmanager
def running_sshd(workdir: Path) -> Iterator[Sshd]:
    """sshd on a free port of 127.0.0.1 with a fresh host key, user password and client key; stopped after."""
    root = debian_root("sshd", PACKAGES)
    instance = f"/srv/cartera/{uuid.uuid4().hex[:12]}"
    home = root / instance.lstrip("/")
    jail = home / "jail"
    jail.mkdir(parents=True)
    for directory in (root / "srv", root / "srv" / "cartera", home, jail):
        directory.chmod(0o755)
    (root / "run" / "sshd").mkdir(parents=True, exist_ok=True)
    if subprocess.run(["chroot", str(root), "id", USER], capture_output=True, check=False).returncode != 0:
        _in_root(root, "useradd", "--no-create-home", "--shell", "/usr/sbin/nologin", USER)
    password = secrets.token_urlsafe(18)
    _in_root(root, "chpasswd", stdin=f"{USER}:{password}\n")
    for name in ("inbox", "outbox"):
        (jail / name).mkdir()
        _in_root(root, "chown", f"{USER}:{USER}", f"{instance}/jail/{name}")
    for key in ("host_key", "client_key", "other_key"):
        _in_root(root, "ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", f"{instance}/{key}")
    workdir.mkdir(parents=True, exist_ok=True)
    private_key = workdir / "client_key"
    shutil.move(home / "client_key", private_key)
    shutil.copy(home / "client_key.pub", home / "authorized_keys")
    port = free_port()
    known_hosts = workdir / "known_hosts"
    known_hosts.write_text(f"[127.0.0.1]:{port} {(home / 'host_key.pub').read_text().strip()}\n")
    (home / "sshd_config").write_text(
        f"Port {port}\nListenAddress 127.0.0.1\nHostKey {instance}/host_key\nPidFile {instance}/sshd.pid\n"
        f"UsePAM no\nPasswordAuthentication yes\nPubkeyAuthentication yes\nKbdInteractiveAuthentication no\n"
        f"PermitRootLogin no\nAuthorizedKeysFile {instance}/authorized_keys\nStrictModes no\n"
        f"AllowUsers {USER}\nSubsystem sftp internal-sftp\nLogLevel VERBOSE\n"
        f"Match User {USER}\n  ChrootDirectory {instance}/jail\n  ForceCommand internal-sftp\n"
        "  AllowTcpForwarding no\n  X11Forwarding no\n"
    )
    log = workdir / "sshd.log"
    try:
        with chrooted(root, ["/usr/sbin/sshd", "-D", "-e", "-f", f"{instance}/sshd_config"], log=log) as process:
            _wait_listening(port, process, log)
            server = Sshd(port, USER, password, private_key, known_hosts, jail, home, process.pid)
            try:
                yield server
            finally:
                server.drop_sessions()  # sessions run in their own process sessions: stopping sshd leaves them
    finally:
        shutil.rmtree(home, ignore_errors=True)
