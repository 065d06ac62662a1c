"""Free loopback ports for the peers and nodes tests start."""

from __future__ import annotations

import secrets
import socket


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
