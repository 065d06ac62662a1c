"""A real Kannel 1.4.5 (Debian's ``kannel``), chrooted in a Debian-unstable root, with its test SMSC.

``running_kannel(mo_url)`` builds (once, cached) the root with ``kannel`` and ``kannel-extras``, writes a
private instance under ``/srv/cartera/<id>`` and runs there (as root: Debian's ``kannel`` user has no group
of its own for ``chrooted``'s userspec), on free ports of 127.0.0.1:

- bearerbox with a ``fake`` SMSC connection and its admin/status interface;
- smsbox with a sendsms user (random password) and a default sms-service whose get-url is ``mo_url``;
- ``fakesmsc`` (``/usr/lib/kannel/test/fakesmsc``), Kannel's own test SMSC, connected to that fake connection
  in interactive mode: it logs every MT it receives (``Got message N: <from to type data>``) and sends as MO
  each line written to its standard input.

How the DLRs come (Kannel's ``gw/smsc/smsc_fake.c``): fakesmsc itself never acknowledges anything. When
bearerbox has written an MT to fakesmsc's socket, its fake SMSC module reports "delivered" (type 1) from the
DLR it stored at submission, and the generic sent path reports "accepted by the SMSC" (type 8), in either
order. A long text is split by bearerbox (UDH concatenation) and still gets one report of each type.
"""

from __future__ import annotations

import os
import re
import secrets
import socket
import subprocess
import time
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.peers.debian import ChrootedHome, chrooted, debian_root

PACKAGES = ("kannel", "kannel-extras")
FAKESMSC = "/usr/lib/kannel/test/fakesmsc"
USERNAME = "cartera"
#: The short code the debtors' phones text (MO receiver) and the sender of the site's texts.
SHORT_CODE = "12345"
_RECEIVED = re.compile(r"Got message (\d+): <(.*)>$")


def listening_port() -> int:
    """A free TCP port of 127.0.0.1 below the ephemeral range, for a server bound some time after it is picked.

    :func:`tests.peers.net.free_port` picks from the ephemeral range, where Kannel's own outgoing connections
    (smsbox to bearerbox and to the node, fakesmsc to bearerbox) may take the port first."""
    low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    for _ in range(100):
        port = 10000 + secrets.randbelow(low - 10000)
        with socket.socket() as probe:
            try:
                probe.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError("no free TCP port below the ephemeral range")


@dataclass(frozen=True, slots=True)
class FakeSmscMessage:
    """An MT as fakesmsc printed it: ``text`` (GSM-7 texts, shown as UTF-8), ``ucs-2`` (url-encoded UTF-16BE),
    ``udh`` (a concatenated part: url-encoded header and payload) or ``data`` (url-encoded 8-bit bytes)."""

    sender: str
    receiver: str
    kind: str
    udh: bytes
    payload: bytes

    def text(self) -> str:
        """The payload decoded: plain text as it came, UCS-2 (and our concatenated parts) as UTF-16BE."""
        encoding = {"text": "utf-8", "data": "latin-1"}.get(self.kind, "utf-16-be")
        return self.payload.decode(encoding)


def _unquote(field: str) -> bytes:
    """fakesmsc's url-encoding: ``%XX`` bytes, ``+`` for a space."""
    return urllib.parse.unquote_to_bytes(field.replace("+", " "))


def parse_fakesmsc_line(line: str) -> FakeSmscMessage:
    sender, receiver, kind, rest = line.split(" ", 3)
    if kind == "udh":
        udh, data = rest.split(" data ", 1) if " data " in rest else rest.split(" ", 1)
        return FakeSmscMessage(sender, receiver, kind, _unquote(udh), _unquote(data))
    if kind in ("data", "ucs-2"):
        return FakeSmscMessage(sender, receiver, kind, b"", _unquote(rest))
    return FakeSmscMessage(sender, receiver, kind, b"", rest.encode("utf-8"))


@dataclass
class KannelPeer(ChrootedHome):
    """One running instance; paths are host paths unless named ``inner``."""

    root: Path
    name: str
    mo_url: str
    admin_port: int = field(default_factory=listening_port)
    smsbox_port: int = field(default_factory=listening_port)
    fake_port: int = field(default_factory=listening_port)
    sendsms_port: int = field(default_factory=listening_port)
    password: str = field(default_factory=lambda: secrets.token_hex(12))
    status_password: str = field(default_factory=lambda: secrets.token_hex(12))
    _stack: ExitStack = field(default_factory=ExitStack)
    _mo_pipe: int | None = None

    @property
    def fakesmsc_log(self) -> Path:
        return self.home / "fakesmsc.log"

    @property
    def smsbox_url(self) -> str:
        return f"http://127.0.0.1:{self.sendsms_port}"

    @property
    def status_url(self) -> str:
        return f"http://127.0.0.1:{self.admin_port}"

    def gateway_settings(self, **overrides: Any) -> dict[str, Any]:
        """Settings of the ``kannel`` SMS gateway for this instance."""
        return {
            "smsbox_url": self.smsbox_url,
            "username": USERNAME,
            "password": self.password,
            "sender": SHORT_CODE,
            "status_url": self.status_url,
            "status_password": self.status_password,
            **overrides,
        }

    # --- lifecycle --------------------------------------------------------------------------------

    def start(self) -> None:
        self.home.mkdir(parents=True, exist_ok=True)
        (self.home / "kannel.conf").write_text(self._config(), encoding="utf-8")
        fifo = self.home / "mo.fifo"
        os.mkfifo(fifo)
        try:
            self._run("bearerbox", ["bearerbox", f"{self.inner}/kannel.conf"])
            self._wait(lambda: "Status: running" in self.status(), "bearerbox's status page")
            self._run("smsbox", ["smsbox", f"{self.inner}/kannel.conf"])
            self._wait(self._smsbox_answers, "smsbox's sendsms interface")
            # Interactive fakesmsc: each line on its stdin (a FIFO we hold open) is sent as an MO.
            argv = ["sh", "-c", f"exec {FAKESMSC} -H 127.0.0.1 -r {self.fake_port} -i 0 -v 0 < {self.inner}/mo.fifo"]
            self._stack.enter_context(chrooted(self.root, argv, log=self.fakesmsc_log))
            self._mo_pipe = os.open(fifo, os.O_RDWR)
            self._wait(lambda: "(online" in self.status(), "the fake SMSC connection to come online")
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        if self._mo_pipe is not None:
            os.close(self._mo_pipe)
            self._mo_pipe = None
        self._stack.close()  # fakesmsc, then smsbox, then bearerbox

    def _run(self, box: str, argv: list[str]) -> None:
        self._stack.enter_context(chrooted(self.root, argv, log=self.home / f"{box}.console"))

    def _wait(self, ready: Callable[[], bool], what: str, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                if ready():
                    return
            except OSError:
                pass
            time.sleep(0.1)
        raise AssertionError(f"Kannel: timed out after {timeout}s waiting for {what} (logs in {self.home})")

    def _smsbox_answers(self) -> bool:
        query = urllib.parse.urlencode({"username": USERNAME, "password": self.password})
        try:
            urllib.request.urlopen(f"{self.smsbox_url}/cgi-bin/sendsms?{query}", timeout=2)
        except urllib.error.HTTPError as refused:
            return refused.code == 400  # "Missing receiver number": smsbox is up and knows the user
        return False

    # --- observing and driving ----------------------------------------------------------------------

    def status(self) -> str:
        """bearerbox's plain-text status page."""
        query = urllib.parse.urlencode({"password": self.status_password})
        with urllib.request.urlopen(f"{self.status_url}/status.txt?{query}", timeout=5) as answer:
            text: str = answer.read().decode("utf-8", "replace")
            return text

    def counter(self, pattern: str) -> int:
        """A number from the status page, e.g. ``r"SMS: received (\\d+)"``."""
        found = re.search(pattern, self.status())
        assert found, f"no {pattern!r} in bearerbox's status"
        return int(found.group(1))

    def received(self) -> list[FakeSmscMessage]:
        """Every MT fakesmsc received so far, in order."""
        lines = self.fakesmsc_log.read_text(encoding="utf-8", errors="replace").splitlines()
        return [parse_fakesmsc_line(m.group(2)) for line in lines if (m := _RECEIVED.search(line))]

    def received_by(self, receiver: str) -> list[FakeSmscMessage]:
        return [message for message in self.received() if message.receiver == receiver]

    def wait_received(self, receiver: str, count: int, timeout: float = 15.0) -> list[FakeSmscMessage]:
        """The first ``count`` MTs fakesmsc received for ``receiver`` (texts of earlier tests may still be on
        their way to other numbers: fakesmsc reads its socket at most once a second in interactive mode)."""
        self._wait(lambda: len(self.received_by(receiver)) >= count, f"{count} messages to {receiver}", timeout)
        return self.received_by(receiver)[:count]

    def send_mo(self, sender: str, text: str, *, kind: str = "text") -> None:
        """Have fakesmsc send ``text`` from ``sender`` to the short code; returns when bearerbox received it.

        One line at a time: fakesmsc reads its stdin with stdio buffering, so a second line written before it
        consumed the first would wait for a third."""
        assert self._mo_pipe is not None, "Kannel is not running"
        before = self.counter(r"SMS: received (\d+)")
        os.write(self._mo_pipe, f"{sender} {SHORT_CODE} {kind} {text}\n".encode())
        self._wait(lambda: self.counter(r"SMS: received (\d+)") > before, "bearerbox to receive the MO", 10)

    def _config(self) -> str:
        return f"""
group = core
admin-port = {self.admin_port}
admin-interface = 127.0.0.1
admin-password = {self.status_password}
status-password = {self.status_password}
admin-allow-ip = "127.0.0.1"
smsbox-port = {self.smsbox_port}
smsbox-interface = 127.0.0.1
box-allow-ip = "127.0.0.1"
log-level = 1
log-file = "{self.inner}/bearerbox.log"
dlr-storage = internal

group = smsc
smsc = fake
smsc-id = fake
port = {self.fake_port}
our-host = 127.0.0.1
connect-allow-ip = "127.0.0.1"

group = smsbox
bearerbox-host = 127.0.0.1
bearerbox-port = {self.smsbox_port}
sendsms-port = {self.sendsms_port}
sendsms-interface = 127.0.0.1
log-level = 1
log-file = "{self.inner}/smsbox.log"
http-request-retry = 3
http-queue-delay = 1

group = sendsms-user
username = {USERNAME}
password = {self.password}
max-messages = 10
concatenation = true

group = sms-service
keyword = default
get-url = "{self.mo_url}"
max-messages = 0
omit-empty = true
"""


@contextmanager
def running_kannel(mo_url: str) -> Iterator[KannelPeer]:
    """A started Kannel whose smsbox passes every MO to ``mo_url``; stopped (and its files removed) after."""
    root = debian_root("kannel", PACKAGES)
    peer = KannelPeer(root, secrets.token_hex(6), mo_url)
    peer.start()
    try:
        yield peer
    finally:
        peer.stop()
        subprocess.run(["rm", "-rf", str(peer.home)], check=False)
