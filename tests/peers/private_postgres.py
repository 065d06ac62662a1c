"""A private PostgreSQL cluster a test may stop and start at will: ``initdb`` into a temporary directory with the
machine's server binaries (``/usr/lib/postgresql/<version>/bin``, or ``CARTERA_TEST_PG_BIN``), listening on a free
port of 127.0.0.1 only. The machine's shared server is never touched. As root the cluster runs as the ``postgres``
user (the server refuses root), in a directory of its own under the system's temporary directory: pytest keeps its
own temporary directories private to root, and another pytest run may make them so again at any time."""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from tests.peers import unavailable
from tests.peers.net import free_port


def _server_bin() -> Path:
    configured = os.environ.get("CARTERA_TEST_PG_BIN")
    found = [Path(configured)] if configured else sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True)
    usable = [directory for directory in found if (directory / "initdb").is_file() and (directory / "pg_ctl").is_file()]
    if not usable:
        unavailable("no PostgreSQL server binaries (initdb, pg_ctl) under /usr/lib/postgresql/*/bin")
    return usable[0]


@dataclass(frozen=True)
class PrivatePostgres:
    """The cluster in ``data``, its server on 127.0.0.1:``port``."""

    bin: Path
    data: Path
    port: int
    user: str | None  #: whom the server runs as (``None``: this process's user)

    @property
    def url(self) -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/postgres"

    def stop(self) -> None:
        """A fast shutdown: open connections are cut, as a restart or a failover cuts them."""
        self._pg_ctl("stop", "-m", "fast")

    def start(self) -> None:
        self._pg_ctl("start", "-l", str(self.data / "server.log"))

    def _pg_ctl(self, *argv: str) -> None:
        self._run(str(self.bin / "pg_ctl"), "-D", str(self.data / "cluster"), "-w", "-t", "60", *argv)

    def _run(self, *argv: str) -> None:
        command = ["runuser", "-u", self.user, "--", *argv] if self.user else list(argv)
        done = subprocess.run(command, capture_output=True, text=True, check=False, timeout=120)
        if done.returncode != 0:
            log = self.data / "server.log"
            tail = log.read_text(errors="replace")[-2000:] if log.exists() else ""
            raise RuntimeError(f"{' '.join(argv)} failed ({done.returncode}): {done.stderr.strip()}\n{tail}")


@contextmanager
def private_postgres() -> Iterator[PrivatePostgres]:
    """A fresh cluster, running for the block, stopped (immediately) and removed after it."""
    bin_dir = _server_bin()
    owner: pwd.struct_passwd | None = None
    if os.geteuid() == 0:
        try:
            owner = pwd.getpwnam("postgres")
        except KeyError:
            unavailable("running as root and no postgres user to run a private PostgreSQL server as")
        if shutil.which("runuser") is None:
            unavailable("running as root and no runuser to run a private PostgreSQL server as postgres")
    directory = Path(tempfile.mkdtemp(prefix="cartera-pg-"))
    try:
        if owner is not None:
            os.chown(directory, owner.pw_uid, owner.pw_gid)
        user = owner.pw_name if owner else None
        with _running(PrivatePostgres(bin_dir, directory, free_port(), user)) as cluster:
            yield cluster
    finally:
        shutil.rmtree(directory, ignore_errors=True)


@contextmanager
def _running(cluster: PrivatePostgres) -> Iterator[PrivatePostgres]:
    bin_dir, directory = cluster.bin, cluster.data
    cluster._run(
        str(bin_dir / "initdb"), "-D", str(directory / "cluster"), "-U", "postgres", "--auth=trust", "-E", "UTF8"
    )
    with (directory / "cluster" / "postgresql.conf").open("a") as conf:
        conf.write(
            f"listen_addresses = '127.0.0.1'\nport = {cluster.port}\nunix_socket_directories = '{directory}'\n"
            "fsync = off\nmax_connections = 50\n"
        )
    cluster.start()
    try:
        yield cluster
    finally:
        cluster._pg_ctl("stop", "-m", "immediate")
