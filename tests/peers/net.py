"""Free loopback ports for the peers and nodes tests start, and waiting for what they do."""

from __future__ import annotations

import secrets
import socket
import time
from collections.abc import Callable


def free_port(kind: int = socket.SOCK_STREAM) -> int:
    """A port of 127.0.0.1 that is free right now (TCP, or UDP with ``socket.SOCK_DGRAM``)."""
    with socket.socket(socket.AF_INET, kind) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def free_udp_range(size: int) -> int:
    """The first of ``size`` consecutive UDP ports of 127.0.0.1 that are all free right now."""
    for _ in range(50):
        first = 20000 + secrets.randbelow(40000 - size) // 2 * 2
        if all(_udp_free(port) for port in range(first, first + size)):
            return first
    raise RuntimeError(f"no {size} consecutive free UDP ports found")


def _udp_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def wait_until(ready: Callable[[], bool], what: str, timeout: float = 15.0) -> None:
    """Poll ``ready`` until it holds; fail the test naming ``what`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not ready():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.05)
