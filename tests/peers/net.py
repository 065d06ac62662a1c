"""Free loopback ports for the peers and nodes tests start, and waiting for what they do."""

from __future__ import annotations

import itertools
import os
import secrets
import socket
import time
from collections.abc import Callable, Iterator

#: Each process draws ports from a block of its own below the kernel's ephemeral range (32768-60999): a port the
#: kernel picked (``bind(0)``) could be picked again, or taken by an outgoing connection, in another xdist worker
#: between the probe and the bind of whoever asked for it.
_BLOCK = 2000


def _ports() -> Iterator[int]:
    """The block of this xdist worker (``gw0``, ``gw1``... ; the first one without xdist), from a random start."""
    worker = int(os.environ.get("PYTEST_XDIST_WORKER", "gw0").removeprefix("gw")) % 10
    first = 12000 + worker * _BLOCK
    start = secrets.randbelow(_BLOCK)
    return itertools.cycle([*range(first + start, first + _BLOCK), *range(first, first + start)])


_next_ports = _ports()


def free_port(kind: int = socket.SOCK_STREAM) -> int:
    """A port of 127.0.0.1 that is free right now (TCP, or UDP with ``socket.SOCK_DGRAM``), none given twice in a
    row by this process."""
    for _ in range(_BLOCK):
        port = next(_next_ports)
        if _free(port, kind):
            return port
    raise RuntimeError("no free port in this worker's block")


def free_udp_range(size: int) -> int:
    """The first of ``size`` consecutive UDP ports of 127.0.0.1 that are all free right now."""
    for _ in range(50):
        first = 20000 + secrets.randbelow(40000 - size) // 2 * 2
        if all(_free(port, socket.SOCK_DGRAM) for port in range(first, first + size)):
            return first
    raise RuntimeError(f"no {size} consecutive free UDP ports found")


def _free(port: int, kind: int) -> bool:
    with socket.socket(socket.AF_INET, kind) as probe:
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
