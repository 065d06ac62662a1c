"""Kamailio as a site's SBC in front of a SIPp UAS playing the debtors' phones, chrooted in a Debian-unstable root.

``running_sip_peer()`` builds (once, cached) the root with ``kamailio`` and ``sip-tester``, writes a private
instance under ``/srv/cartera/<id>`` inside it and runs there, on free ports of 127.0.0.1:

- SIPp as the debtors' phones (``tests/peers/sipp/trunk_debtor.xml``): the number's last four digits pick what
  the line does (see :data:`NUMBERS` and the scenario's header);
- Kamailio with two UDP listeners: ``auth_port`` challenges every INVITE (proxy digest) and REGISTER (www
  digest) for one user and password, ``trust_port`` trusts its callers' address (an IP-authenticated trunk).
  Both answer OPTIONS to themselves, record-route and relay INVITEs to SIPp, but for numbers ending in 0503:
  Kamailio answers those 503 itself (a proxy turns a downstream 503 into 500, RFC 3261 16.7).
"""

from __future__ import annotations

import re
import secrets
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cartera.core.models import CallOutcome
from tests.peers.debian import ChrootedHome, chrooted, debian_root
from tests.peers.net import free_port, free_udp_range

PACKAGES = ("kamailio", "sip-tester")
SIPP_SCENARIO = Path(__file__).resolve().parent / "sipp" / "trunk_debtor.xml"
MODULES_DIR = "/usr/lib/x86_64-linux-gnu/kamailio/modules"
USERNAME = "cartera"
REALM = "sbc.cartera.test"

#: The debtors' phones, one per outcome: +57300555 M CCC (mode digit, SIP code; see trunk_debtor.xml).
NUMBERS: dict[CallOutcome, str] = {
    CallOutcome.ANSWERED: "+573005550200",
    CallOutcome.BUSY: "+573005550486",
    CallOutcome.NO_ANSWER: "+573005552180",  # rings until the dialer's ring timeout
    CallOutcome.REJECTED: "+573005550603",
    CallOutcome.INVALID_NUMBER: "+573005550404",
    CallOutcome.CONGESTION: "+573005550503",
    CallOutcome.FAILED: "+573005550500",
}
#: More final responses and the outcome each maps to.
MORE_NUMBERS: dict[str, CallOutcome] = {
    "+573005550600": CallOutcome.BUSY,
    "+573005550480": CallOutcome.NO_ANSWER,
    "+573005550408": CallOutcome.NO_ANSWER,
    "+573005550484": CallOutcome.INVALID_NUMBER,
    "+573005550402": CallOutcome.FAILED,
}
#: Rings 5 s, then answers like the ANSWERED number: many calls are in progress at once.
LATE_ANSWER = "+573005553200"
#: Answers, then refuses the REFER with this code.
REFER_FORBIDDEN = "+573005551403"
REFER_NOT_IMPLEMENTED = "+573005551501"


@dataclass
class SipPeer(ChrootedHome):
    """One running Kamailio + SIPp pair; paths are host paths unless named ``inner``."""

    root: Path
    name: str
    auth_port: int = field(default_factory=lambda: free_port(socket.SOCK_DGRAM))
    trust_port: int = field(default_factory=lambda: free_port(socket.SOCK_DGRAM))
    sipp_port: int = field(default_factory=lambda: free_port(socket.SOCK_DGRAM))
    media_port: int = field(default_factory=lambda: free_udp_range(4))
    password: str = field(default_factory=lambda: secrets.token_hex(12))

    @property
    def sipp_messages(self) -> Path:
        """Every SIP message SIPp sent and received."""
        return self.home / "sipp-messages.log"

    @property
    def kamailio_log(self) -> Path:
        return self.home / "kamailio.log"

    def trunk_settings(self, **overrides: Any) -> dict[str, Any]:
        """Settings of the ``sip_trunk`` dialer registering and authenticating (digest) at Kamailio."""
        sbc = f"127.0.0.1:{self.auth_port}"
        return {
            "account_uri": f"sip:{USERNAME}@{sbc}",
            "dial_uri": "sip:{number}@" + sbc,
            "registrar": f"sip:{sbc}",
            "username": USERNAME,
            "password": self.password,
            "queue_uri": f"sip:cobranza@{sbc}",
            "local_address": "127.0.0.1",
            "local_port": 0,
            "max_calls": 8,
            "ring_timeout_s": 15,
            **overrides,
        }

    def ip_trunk_settings(self, **overrides: Any) -> dict[str, Any]:
        """Settings of the ``sip_trunk`` dialer on Kamailio's IP-authenticated port: no registrar, no password."""
        sbc = f"127.0.0.1:{self.trust_port}"
        return {
            "account_uri": f"sip:{USERNAME}@{sbc}",
            "dial_uri": "sip:{number}@" + sbc,
            "queue_uri": f"sip:cobranza@{sbc}",
            "local_address": "127.0.0.1",
            "local_port": 0,
            "max_calls": 8,
            "ring_timeout_s": 15,
            **overrides,
        }

    def messages(self) -> list[str]:
        """Every SIP message SIPp logged, in order."""
        if not self.sipp_messages.exists():
            return []
        text = self.sipp_messages.read_text(encoding="utf-8", errors="replace")
        return [message for _, message in re.findall(r"(?m)^-{20,} (\S+)\n(.*?)(?=^-{20,} |\Z)", text, re.DOTALL)]

    def sipp_errors(self, call_id: str | None = None) -> str:
        """What SIPp's error log says (about call ``call_id``), for assertion messages."""
        path = self.home / "sipp-errors.log"
        text = path.read_text(encoding="utf-8", errors="replace") if path.exists() else ""
        events = [line for line in text.splitlines() if "\t" in line and (call_id is None or call_id in line)]
        return "\n".join(events[-5:]) or "SIPp logged no error"

    def received(self, method: str) -> list[str]:
        """The requests ``method`` SIPp received (as Kamailio relayed them)."""
        return [m for m in self.messages() if "message received" in m and f"\n{method} sip:" in m]

    def wait_received(self, method: str, call_id: str | None, timeout: float = 5.0) -> str:
        """The request ``method`` of call ``call_id`` SIPp received, waiting for its (buffered) log to show it."""
        deadline = time.monotonic() + timeout
        while True:
            found = [message for message in self.received(method) if call_id and call_id in message]
            if found or time.monotonic() > deadline:
                assert found, f"SIPp received no {method} for call {call_id}"
                return found[0]
            time.sleep(0.1)

    def most_calls_at_once(self) -> int:
        """The most calls the debtors' phones had at once: from each INVITE SIPp received to its BYE or CANCEL."""
        peak = calls = 0
        for message in self.messages():
            if "message received" not in message:
                continue
            if "\nINVITE sip:" in message:
                calls += 1
            elif "\nBYE sip:" in message or "\nCANCEL sip:" in message:
                calls -= 1
            peak = max(peak, calls)
        return peak

    # --- configuration -------------------------------------------------------------------------------

    def kamailio_cfg(self) -> str:
        return f"""#!KAMAILIO
debug=2
log_stderror=yes
children=1  # one receiver per socket: requests are relayed in the order they came (ACK before REFER)
auto_aliases=no
listen=udp:127.0.0.1:{self.auth_port}
listen=udp:127.0.0.1:{self.trust_port}
mpath="{MODULES_DIR}/"
loadmodule "tm.so"
loadmodule "sl.so"
loadmodule "rr.so"
loadmodule "pv.so"
loadmodule "maxfwd.so"
loadmodule "siputils.so"
loadmodule "auth.so"
loadmodule "usrloc.so"
loadmodule "registrar.so"
loadmodule "textops.so"
modparam("usrloc", "db_mode", 0)

request_route {{
    if (!mf_process_maxfwd_header("10")) {{ sl_send_reply("483", "Too Many Hops"); exit; }}
    if (has_totag()) {{
        if (loose_route()) {{ t_relay(); exit; }}
        if (is_method("ACK") && t_check_trans()) {{ t_relay(); exit; }}
        if (uri == myself) {{ $du = "sip:127.0.0.1:{self.sipp_port}"; }}  # a UAC that ignores Record-Route
        t_relay(); exit;
    }}
    if (is_method("CANCEL|ACK")) {{ if (t_check_trans()) {{ t_relay(); }} exit; }}
    if (is_method("OPTIONS") && $rU == $null) {{ sl_send_reply("200", "Keepalive"); exit; }}
    if ($Rp == {self.auth_port}) {{
        if (is_method("REGISTER")) {{
            if (!pv_www_authenticate("{REALM}", "{self.password}", "0")) {{ www_challenge("{REALM}", "0"); exit; }}
            if ($au != "{USERNAME}") {{ sl_send_reply("403", "Forbidden"); exit; }}
            save("location"); exit;
        }}
        if (!pv_proxy_authenticate("{REALM}", "{self.password}", "0")) {{ proxy_challenge("{REALM}", "0"); exit; }}
        if ($au != "{USERNAME}") {{ sl_send_reply("403", "Forbidden"); exit; }}
        consume_credentials();
    }} else if (is_method("REGISTER")) {{
        sl_send_reply("405", "Not A Registrar"); exit;
    }}
    if (!is_method("INVITE")) {{ sl_send_reply("405", "Method Not Allowed"); exit; }}
    if ($rU =~ "0503$") {{ sl_send_reply("503", "Service Unavailable"); exit; }}  # the SBC out of channels
    record_route();
    $du = "sip:127.0.0.1:{self.sipp_port}";
    t_relay();
}}
"""

    def sipp_argv(self) -> list[str]:
        return [
            "sipp",
            "-sf",
            f"{self.inner}/{SIPP_SCENARIO.name}",
            "-i",
            "127.0.0.1",
            "-p",
            str(self.sipp_port),
            "-mi",
            "127.0.0.1",
            "-mp",
            str(self.media_port),
            "-nostdin",
            "-trace_msg",
            "-message_file",
            f"{self.inner}/sipp-messages.log",
            "-trace_err",
            "-error_file",
            f"{self.inner}/sipp-errors.log",
        ]

    def kamailio_argv(self) -> list[str]:
        return ["kamailio", "-DD", "-E", "-m", "64", "-M", "8", "-f", f"{self.inner}/kamailio.cfg", "-w", self.inner]


def sip_root() -> Path:
    """The cached root with Kamailio and SIPp (skips with PEER UNAVAILABLE when it cannot be built)."""
    return debian_root("sip", PACKAGES)


def options_ok(port: int, timeout: float = 0.5) -> bool:
    """Whether something answers an OPTIONS on 127.0.0.1:``port`` with 200."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.bind(("127.0.0.1", 0))
        probe.settimeout(timeout)
        local = probe.getsockname()[1]
        tag = secrets.token_hex(4)
        request = (
            f"OPTIONS sip:127.0.0.1:{port} SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:{local};branch=z9hG4bK{tag}\r\n"
            f"From: <sip:probe@127.0.0.1>;tag={tag}\r\nTo: <sip:127.0.0.1:{port}>\r\nCall-ID: {tag}@probe\r\n"
            "CSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
        )
        probe.sendto(request.encode(), ("127.0.0.1", port))
        try:
            answer = probe.recv(4096)
        except OSError:
            return False
        return answer.startswith(b"SIP/2.0 200")


@contextmanager
def running_sip_peer() -> Iterator[SipPeer]:
    """Kamailio in front of SIPp, both running in the cached root; stopped and removed afterwards."""
    root = sip_root()
    peer = SipPeer(root=root, name=secrets.token_hex(4))
    peer.home.mkdir(parents=True)
    shutil.copy(SIPP_SCENARIO, peer.home / SIPP_SCENARIO.name)
    (peer.home / "kamailio.cfg").write_text(peer.kamailio_cfg(), encoding="utf-8")
    try:
        with ExitStack() as stack:
            sipp = stack.enter_context(chrooted(root, peer.sipp_argv(), log=peer.home / "sipp.log"))
            kamailio = stack.enter_context(chrooted(root, peer.kamailio_argv(), log=peer.kamailio_log))
            _wait_ready(peer, sipp, kamailio)
            yield peer
    finally:
        shutil.rmtree(peer.home, ignore_errors=True)


def _wait_ready(peer: SipPeer, sipp: subprocess.Popen[bytes], kamailio: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 20.0
    while time.monotonic() < deadline:
        for name, process, log in (("sipp", sipp, peer.home / "sipp.log"), ("kamailio", kamailio, peer.kamailio_log)):
            if process.poll() is not None:
                raise RuntimeError(f"{name} exited ({process.returncode}); see {log}")
        if options_ok(peer.auth_port) and options_ok(peer.trust_port):
            return
        time.sleep(0.1)
    raise RuntimeError(f"Kamailio not answering OPTIONS after 20s; see {peer.kamailio_log}")
