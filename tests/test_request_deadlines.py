"""core.deadlines: a request's socket is shut down when its wall-clock deadline passes, never after it is over."""

from __future__ import annotations

import logging
import socket
import threading
from collections.abc import Iterator

import pytest

from cartera.plugin import DeadlineWatchdog, RequestDeadline
from tests.peers.net import wait_until


@pytest.fixture
def expired() -> list[RequestDeadline]:
    return []


@pytest.fixture
def watchdog(expired: list[RequestDeadline]) -> Iterator[DeadlineWatchdog]:
    dog = DeadlineWatchdog("test-deadlines", logging.getLogger("test"), expired.append)
    yield dog
    dog.close()


@pytest.fixture
def pair() -> Iterator[tuple[socket.socket, socket.socket]]:
    ours, peers = socket.socketpair()
    yield ours, peers
    ours.close()
    peers.close()


def blocked_read(sock: socket.socket) -> tuple[threading.Thread, list[bytes | OSError]]:
    """A thread blocked reading ``sock`` (as a request waiting for a peer that never answers)."""
    got: list[bytes | OSError] = []

    def read() -> None:
        try:
            got.append(sock.recv(10))
        except OSError as exc:
            got.append(exc)

    thread = threading.Thread(target=read, daemon=True)
    thread.start()
    return thread, got


def test_a_request_past_its_deadline_has_its_blocked_read_ended(
    watchdog: DeadlineWatchdog, expired: list[RequestDeadline], pair: tuple[socket.socket, socket.socket]
) -> None:
    deadline = watchdog.start(0.2, "GET")
    deadline.watch(pair[0])
    thread, got = blocked_read(pair[0])
    thread.join(10)
    assert not thread.is_alive()
    assert got == [b""]
    assert deadline.expired
    wait_until(lambda: expired == [deadline], "the watchdog's report of the expired request", 10)  # after the cut
    assert deadline.finish()


def test_a_request_over_in_time_keeps_its_socket(
    watchdog: DeadlineWatchdog, expired: list[RequestDeadline], pair: tuple[socket.socket, socket.socket]
) -> None:
    deadline = watchdog.start(0.2, "GET")
    deadline.watch(pair[0])
    assert not deadline.finish()
    later = watchdog.start(0.3, "GET")
    wait_until(lambda: later.expired, "the later request's deadline", 10)
    assert not deadline.expired
    assert expired == [later]
    pair[1].sendall(b"still open")
    assert pair[0].recv(10) == b"still open"


def test_an_extended_deadline_passes_later(watchdog: DeadlineWatchdog, expired: list[RequestDeadline]) -> None:
    extended = watchdog.start(0.2, "GET")
    extended.extend(1.0)
    plain = watchdog.start(0.4, "GET")
    wait_until(lambda: plain.expired, "the plain request's deadline", 10)
    assert not extended.expired
    assert extended.seconds == pytest.approx(1.2)
    wait_until(lambda: extended.expired, "the extended request's deadline", 10)
    assert expired == [plain, extended]


def test_a_deadline_that_passed_while_connecting_cuts_the_socket_at_once(
    watchdog: DeadlineWatchdog, pair: tuple[socket.socket, socket.socket]
) -> None:
    deadline = watchdog.start(0.0, "GET")
    wait_until(lambda: deadline.expired, "the deadline", 10)
    deadline.watch(pair[0])
    assert pair[0].recv(10) == b""


def test_an_infinite_deadline_leaves_the_others_theirs(
    watchdog: DeadlineWatchdog, expired: list[RequestDeadline]
) -> None:
    far = watchdog.start(float("inf"), "PUT")
    near = watchdog.start(0.2, "GET")
    wait_until(lambda: near.expired, "the near request's deadline", 10)
    assert not far.expired
    assert expired == [near]


def test_no_error_ends_the_watchdog(caplog: pytest.LogCaptureFixture) -> None:
    def fail(_deadline: RequestDeadline) -> None:
        raise RuntimeError("boom")

    dog = DeadlineWatchdog("test-deadlines", logging.getLogger("test"), fail, endpoint="here")
    try:
        first = dog.start(0.1, "GET")
        wait_until(lambda: first.expired, "the first deadline", 10)
        second = dog.start(0.1, "GET")
        wait_until(lambda: second.expired, "the second deadline", 10)
    finally:
        dog.close()
    errors = [r.fields for r in caplog.records if r.getMessage() == "deadline.watchdog_error"]  # type: ignore[attr-defined]
    assert errors[0] == {"error": "RuntimeError('boom')", "endpoint": "here"}


def test_close_ends_the_thread(watchdog: DeadlineWatchdog) -> None:
    watchdog.start(30, "GET")
    assert [t for t in threading.enumerate() if t.name == "test-deadlines"]
    watchdog.close()
    assert not [t for t in threading.enumerate() if t.name == "test-deadlines"]
