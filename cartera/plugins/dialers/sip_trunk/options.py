"""An OPTIONS request to the trunk, the health check of an IP-authenticated trunk (and of the registrar's host).

The pjsua2 binding has no way to send a request outside a call (no ``sendRequest``, no ``Buddy``), so this is a
plain UDP exchange from its own socket: one OPTIONS, retransmitted as RFC 3261 does, the first answer's status.
"""

from __future__ import annotations

import re
import secrets
import socket
import time
from dataclasses import dataclass

from cartera.plugin import CarteraError

_URI = re.compile(r"^sips?:(?:[^@]*@)?(\[[^\]]+\]|[^:;?]+)(?::(\d+))?")
_STATUS = re.compile(rb"^SIP/2\.0 (\d{3}) ?([^\r\n]*)")
_FIRST_RETRANSMIT_S = 0.5


class OptionsFailed(CarteraError):
    """Nothing answered the OPTIONS (or it could not be sent)."""


@dataclass(frozen=True)
class OptionsAnswer:
    status: int
    reason: str
    took_ms: float


def host_port(uri: str) -> tuple[str, int]:
    """Where a SIP URI's requests go: its host and port (5060, or 5061 for sips:), without DNS SRV."""
    match = _URI.match(uri)
    if match is None:
        raise ValueError(f"not a SIP URI: {uri!r}")
    default = 5061 if uri.startswith("sips:") else 5060
    return match.group(1).strip("[]"), int(match.group(2) or default)


def send_options(target: str, *, local_address: str, timeout: float) -> OptionsAnswer:
    """Send OPTIONS to SIP URI ``target`` over UDP and return the first final answer."""
    host, port = host_port(target)
    began = time.monotonic()
    deadline = began + timeout
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        try:
            sock.bind((local_address, 0))
            sock.connect((host, port))
        except OSError as exc:
            raise OptionsFailed(f"cannot send OPTIONS to {host}:{port}: {exc.strerror or exc}") from None
        request = _request(target, *sock.getsockname()[:2])
        interval = _FIRST_RETRANSMIT_S
        while (left := deadline - time.monotonic()) > 0:
            try:
                sock.send(request)
                sock.settimeout(min(interval, left))
                while True:
                    match = _STATUS.match(sock.recv(65535))
                    if match and int(match.group(1)) >= 200:
                        took = (time.monotonic() - began) * 1000
                        return OptionsAnswer(int(match.group(1)), match.group(2).decode(errors="replace"), took)
            except TimeoutError:
                interval *= 2
            except OSError as exc:  # e.g. ICMP port unreachable on a connected socket
                raise OptionsFailed(f"OPTIONS to {host}:{port} failed: {exc.strerror or exc}") from None
    raise OptionsFailed(f"no answer to OPTIONS from {host}:{port} within {timeout:g}s")


def _request(target: str, address: str, port: int) -> bytes:
    tag = secrets.token_hex(6)
    return (
        f"OPTIONS {target} SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP {address}:{port};branch=z9hG4bK{secrets.token_hex(8)};rport\r\n"
        f"Max-Forwards: 70\r\n"
        f"From: <sip:cartera@{address}>;tag={tag}\r\n"
        f"To: <{target}>\r\n"
        f"Call-ID: {secrets.token_hex(12)}@{address}\r\n"
        "CSeq: 1 OPTIONS\r\n"
        "Accept: application/sdp\r\n"
        "User-Agent: cartera sip_trunk\r\n"
        "Content-Length: 0\r\n\r\n"
    ).encode()
