"""The s3 store against a store that answers a byte at a time (round 16 M2): botocore's read_timeout bounds each
read, not the request, so every request has a wall-clock deadline, longer by the time its body takes at
min_rate_kib_s."""

from __future__ import annotations

import logging
import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import botocore.exceptions
import pytest

from cartera.core.errors import StoreUnavailable
from cartera.core.testing.context import CapturingContext
from cartera.core.testing.recording_store import make_recording_file
from cartera.plugins.recording.s3.client import MAX_PROBE_PAGES, MAX_VERSION_PAGES
from cartera.plugins.recording.s3.config import S3Config
from cartera.plugins.recording.s3.deadline import Deadlines
from cartera.plugins.recording.s3.plugin import S3Store
from tests.peers.net import wait_until

pytestmark = pytest.mark.abuse
MiB = 1 << 20


class Peer:
    """A TCP server on 127.0.0.1 handing each connection to ``handle(conn, request_head, stop)``."""

    def __init__(self, handle: Callable[[socket.socket, bytes, threading.Event], None]) -> None:
        self._handle = handle
        self._server = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self._server.getsockname()[1]}"
        self.stop = threading.Event()
        self.requests: list[bytes] = []
        self._conns: list[socket.socket] = []
        self._threads = [threading.Thread(target=self._accept, daemon=True)]
        self._threads[0].start()

    def _accept(self) -> None:
        while not self.stop.is_set():
            try:
                conn, _ = self._server.accept()
            except OSError:
                return
            self._conns.append(conn)
            thread = threading.Thread(target=self._serve, args=(conn,), daemon=True)
            self._threads.append(thread)
            thread.start()

    def _serve(self, conn: socket.socket) -> None:
        try:
            head = b""
            while b"\r\n\r\n" not in head:
                data = conn.recv(65536)
                if not data:
                    return
                head += data
            self.requests.append(head.split(b"\r\n", 1)[0])
            self._handle(conn, head, self.stop)
        except OSError:
            pass
        finally:
            conn.close()

    def close(self) -> None:
        self.stop.set()
        self._server.shutdown(socket.SHUT_RDWR)  # wakes the accept
        self._server.close()
        for conn in self._conns:
            conn.close()
        for thread in self._threads:
            thread.join(5)


@pytest.fixture
def peer() -> Iterator[Callable[..., Peer]]:
    peers: list[Peer] = []

    def make(handle: Callable[[socket.socket, bytes, threading.Event], None]) -> Peer:
        peers.append(Peer(handle))
        return peers[-1]

    yield make
    for started in peers:
        started.close()


def drip(conn: socket.socket, _head: bytes, stop: threading.Event) -> None:
    """A status line, then one header line every 0.2 s (each read well within read_timeout_s), for 60 s."""
    conn.sendall(b"HTTP/1.1 200 OK\r\n")
    for i in range(300):
        if stop.wait(0.2):
            return
        conn.sendall(b"X-Drip-%d: 1\r\n" % i)


def slow_reader(rate_bytes_s: float) -> Callable[[socket.socket, bytes, threading.Event], None]:
    """Reads the request body at ``rate_bytes_s``, then answers 200 (a PUT's answer, with its ETag)."""

    def handle(conn: socket.socket, head: bytes, stop: threading.Event) -> None:
        headers, _, body = head.partition(b"\r\n\r\n")
        fields = dict(line.split(b":", 1) for line in headers.split(b"\r\n")[1:])
        fields = {k.strip().lower(): v.strip() for k, v in fields.items()}
        length = int(fields.get(b"content-length", b"0"))
        if fields.get(b"expect", b"").lower() == b"100-continue":
            conn.sendall(b"HTTP/1.1 100 Continue\r\n\r\n")
        got = len(body)
        began = time.monotonic()
        while got < length and not stop.is_set():
            data = conn.recv(min(64 * 1024, length - got))
            if not data:
                return
            got += len(data)
            ahead = began + got / rate_bytes_s - time.monotonic()
            if ahead > 0:
                time.sleep(ahead)
        conn.sendall(b'HTTP/1.1 200 OK\r\nETag: "0123456789abcdef0123456789abcdef"\r\nContent-Length: 0\r\n\r\n')
        conn.recv(1)  # until the client closes

    return handle


@pytest.fixture
def make_store(tmp_path: Path) -> Iterator[Callable[..., S3Store]]:
    stores: list[S3Store] = []

    def make(url: str, **settings: Any) -> S3Store:
        config = S3Config.model_validate(
            {
                "bucket": "grabaciones",
                "endpoint_url": url,
                "access_key_id": "AKIAEXAMPLE",
                "secret_access_key": "not-a-secret",
                "connect_timeout_s": 0.5,
                "read_timeout_s": 0.5,
                "max_attempts": 1,
                "no_overwrite": "head",
                "sha256_check": "client",
                **settings,
            }
        )
        store = S3Store(config, CapturingContext(tmp_path / "data"))
        store.start()
        stores.append(store)
        return store

    yield make
    for store in stores:
        store.stop()


def test_check_ends_when_the_store_answers_a_line_at_a_time(
    peer: Callable[..., Peer], make_store: Callable[..., S3Store], caplog: pytest.LogCaptureFixture
) -> None:
    dripping = peer(drip)
    store = make_store(dripping.url)  # deadline: 0.5 + 2 * 0.5 = 1.5 s
    began = time.monotonic()
    with caplog.at_level(logging.WARNING):
        check = store.check()
    elapsed = time.monotonic() - began
    assert 1.4 < elapsed < 6, elapsed  # before: ~20 s, until http.client refused a 101st header line
    assert not check.ok
    assert "timeout" in check.detail.lower()
    assert [r for r in caplog.records if r.getMessage() == "s3.request_deadline"]
    assert "not-a-secret" not in check.detail


def test_an_upload_to_a_dripping_store_is_store_unavailable_within_its_retries(
    peer: Callable[..., Peer], make_store: Callable[..., S3Store], tmp_path: Path
) -> None:
    dripping = peer(drip)
    store = make_store(dripping.url, max_attempts=2, deadline_s=1)
    recording = make_recording_file(tmp_path / "rec.wav", 64 * 1024, seed=3)
    began = time.monotonic()
    with pytest.raises(StoreUnavailable, match=r"127\.0\.0\.1"):
        store.put("a/1.wav", recording.path, recording.checksums)
    assert time.monotonic() - began < 10
    assert len(dripping.requests) == 2  # the HEAD of the overwrite guard, tried twice


@pytest.mark.parametrize(("min_rate_kib_s", "stored"), [(512, True), (16384, False)])
def test_a_large_upload_gets_time_in_proportion_to_its_size(
    peer: Callable[..., Peer], make_store: Callable[..., S3Store], min_rate_kib_s: int, stored: bool
) -> None:
    """2 MiB read by the store at 1 MiB/s take ~2 s, longer than deadline_s: at a minimum rate of 512 KiB/s the
    deadline is 0.5 + 4 s and the upload goes through; at 16 MiB/s it is 0.625 s and the upload fails."""
    slow = peer(slow_reader(1 * MiB))
    store = make_store(slow.url, read_timeout_s=5, deadline_s=0.5, min_rate_kib_s=min_rate_kib_s)
    body = b"\x5a" * (2 * MiB)
    began = time.monotonic()
    if stored:
        store.bucket.client.put_object(Bucket="grabaciones", Key="a/1.wav", Body=body)
        assert time.monotonic() - began > 1.5
    else:
        with pytest.raises(botocore.exceptions.ReadTimeoutError):
            store.bucket.client.put_object(Bucket="grabaciones", Key="a/1.wav", Body=body)
        assert time.monotonic() - began < 1.8


def test_the_deadline_defaults_from_the_timeouts() -> None:
    config = S3Config(bucket="grabaciones", connect_timeout_s=5, read_timeout_s=60)
    assert config.request_deadline_s == 125
    assert S3Config(bucket="grabaciones", deadline_s=30).request_deadline_s == 30


def huge_answer(length: int, seconds: float) -> Callable[[socket.socket, bytes, threading.Event], None]:
    """Answers 200 announcing ``length`` bytes of body, then sends one byte every 0.2 s for ``seconds``."""

    def handle(conn: socket.socket, _head: bytes, stop: threading.Event) -> None:
        conn.sendall(b'HTTP/1.1 200 OK\r\nETag: "0123456789abcdef0123456789abcdef"\r\n')
        conn.sendall(b"Content-Length: %d\r\n\r\n" % length)
        for _ in range(int(seconds / 0.2)):
            if stop.wait(0.2):
                return
            conn.sendall(b"x")

    return handle


def test_an_announced_huge_answer_extends_the_deadline_at_most_by_the_cap(
    peer: Callable[..., Peer], make_store: Callable[..., S3Store], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Round 17 M1a: an answer announcing 1e11 bytes gave its request ~17 days at 64 KiB/s; the extension is
    capped (here at 1 s, so the deadline is 1 + 1 s)."""
    monkeypatch.setattr("cartera.plugins.recording.s3.deadline.MAX_ANSWER_EXTENSION_S", 1.0)
    store = make_store(peer(huge_answer(100_000_000_000, 20)).url, deadline_s=1)
    began = time.monotonic()
    with pytest.raises(botocore.exceptions.BotoCoreError):
        store.bucket.client.put_object(Bucket="grabaciones", Key="a/1.wav", Body=b"x")
    assert 1.8 < time.monotonic() - began < 6  # before: until the store stopped sending (20 s)


def test_an_answer_announcing_2_to_the_63_bytes_leaves_later_requests_a_deadline(
    peer: Callable[..., Peer], make_store: Callable[..., S3Store]
) -> None:
    """Round 17 M1b: the extension for 2^63 - 1 announced bytes made the watchdog's wait overflow; its thread
    died and no later request of the client had a deadline."""
    answers = iter([huge_answer(2**63 - 1, 1), drip])

    def handle(conn: socket.socket, head: bytes, stop: threading.Event) -> None:
        next(answers)(conn, head, stop)

    store = make_store(peer(handle).url, deadline_s=1)
    with pytest.raises((botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError)):
        store.bucket.client.put_object(Bucket="grabaciones", Key="a/1.wav", Body=b"x")
    began = time.monotonic()
    with pytest.raises(botocore.exceptions.ReadTimeoutError):
        store.bucket.client.put_object(Bucket="grabaciones", Key="a/2.wav", Body=b"x")
    assert time.monotonic() - began < 6  # before: the drip's 60 s


def test_a_request_too_slow_to_have_a_deadline_leaves_the_others_theirs(caplog: pytest.LogCaptureFixture) -> None:
    """A tiny min_rate_kib_s makes a request's deadline infinite: the watchdog still cuts the others, and logs
    each one it cuts."""
    deadlines = Deadlines(0.3, 1e-300, "here", logging.getLogger("test"))
    try:
        far = deadlines.start("PUT", 10**6)
        near = deadlines.start("GET", 0)
        wait_until(lambda: near.expired, "the near request's deadline", 5)
        assert not far.expired
        cut = [r.fields for r in caplog.records if r.getMessage() == "s3.request_deadline"]  # type: ignore[attr-defined]
        assert cut == [{"endpoint": "here", "method": "GET", "deadline_s": 0.3}]
        far.finish()
    finally:
        deadlines.watchdog.close()


def endless_listings(versions_end: bool) -> Callable[[socket.socket, bytes, threading.Event], None]:
    """A store whose object listing never ends (each page truncated, with a new token and one probe key); its
    versions listing ends at once if ``versions_end``, else never; DELETE succeeds."""
    count = iter(range(1_000_000))

    def handle(conn: socket.socket, head: bytes, _stop: threading.Event) -> None:
        line = head.split(b"\r\n", 1)[0]
        n = next(count)
        ns = b'xmlns="http://s3.amazonaws.com/doc/2006-03-01/"'
        if b"list-type=2" in line:
            body = (
                b"<ListBucketResult %s><Name>grabaciones</Name><IsTruncated>true</IsTruncated>"
                b"<NextContinuationToken>t%d</NextContinuationToken>"
                b"<Contents><Key>.cartera-probe/%032x</Key><Size>0</Size></Contents></ListBucketResult>" % (ns, n, n)
            )
        elif b"versions" in line:
            more = b"false" if versions_end else b"true"
            body = (
                b"<ListVersionsResult %s><Name>grabaciones</Name><IsTruncated>%s</IsTruncated>"
                b"<NextKeyMarker>k%d</NextKeyMarker><NextVersionIdMarker>v%d</NextVersionIdMarker>"
                b"</ListVersionsResult>" % (ns, more, n, n)
            )
        else:
            conn.sendall(b"HTTP/1.1 204 No Content\r\nConnection: close\r\n\r\n")
            return
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\nConnection: close\r\n\r\n%s" % (len(body), body))

    return handle


def test_a_listing_of_earlier_probes_that_never_ends_is_cut(
    peer: Callable[..., Peer], make_store: Callable[..., S3Store], caplog: pytest.LogCaptureFixture
) -> None:
    """Round 17 M2: every key of an endless listing was kept before the probe, until the node ran out of memory;
    the listing stops after MAX_PROBE_PAGES pages, logged, and the keys listed are still cleaned up."""
    store = peer(endless_listings(versions_end=True))
    bucket = make_store(store.url).bucket
    with caplog.at_level(logging.WARNING), bucket._probe_key():
        pass
    lists = [r for r in store.requests if b"list-type=2" in r]
    assert len(lists) == MAX_PROBE_PAGES
    assert [r for r in caplog.records if r.getMessage() == "s3.probe_listing_cut"]
    assert len([r for r in store.requests if b"versions" in r]) == MAX_PROBE_PAGES + 1  # each discarded, and its own


def test_a_versions_listing_that_never_ends_is_store_unavailable(
    peer: Callable[..., Peer], make_store: Callable[..., S3Store], caplog: pytest.LogCaptureFixture
) -> None:
    """Round 17 M2: delete (and retention's purge) listed a key's versions for as long as the store went on."""
    store = peer(endless_listings(versions_end=False))
    bucket = make_store(store.url).bucket
    with caplog.at_level(logging.WARNING), pytest.raises(StoreUnavailable, match="no end after"):
        bucket.delete("a/1.wav")
    assert len(store.requests) == MAX_VERSION_PAGES
    assert [r for r in caplog.records if r.getMessage() == "s3.versions_listing_cut"]
