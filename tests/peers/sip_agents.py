"""The agents' phones for an Asterisk peer started with ``sip_agents``: SIP user agents (SIPp) registered to the
PJSIP endpoints ``agent01``, ``agent02``... that answer every call the queue offers them.

One SIPp UAS (``sipp/agent.xml``) is every agent's phone; ``sipp/agent_register.xml`` registers each endpoint
with a contact at that UAS, as a desk phone registers. Every SIP message the phones saw is logged, so a test
reads which agent's phone took which call (its caller ID).
"""

from __future__ import annotations

import re
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from tests.peers.asterisk import SIP_AGENT, AsteriskPeer
from tests.peers.debian import chrooted
from tests.peers.net import free_port, free_udp_range

REGISTER_TIMEOUT_S = 15


@dataclass(frozen=True)
class AgentPhones:
    """The agents' phones of ``peer``, running."""

    peer: AsteriskPeer

    @property
    def messages(self) -> Path:
        return self.peer.home / "log" / "agents-messages.log"

    def answered(self) -> list[tuple[str, str]]:
        """(agent, caller ID number) of each call the phones answered, in order: from the INVITEs they received."""
        text = self.messages.read_text(encoding="utf-8", errors="replace") if self.messages.exists() else ""
        calls: list[tuple[str, str]] = []
        for message in re.split(r"(?m)^-{20,} ", text):
            if "message received" not in message:
                continue
            invite = re.search(r"^INVITE sip:([^@;>]+)@", message, re.MULTILINE)
            caller = re.search(r"^From:[^<]*<sip:([^@;>]+)@", message, re.MULTILINE | re.IGNORECASE)
            if invite and caller:
                calls.append((invite.group(1), caller.group(1)))
        return calls


@contextmanager
def agent_phones(peer: AsteriskPeer, talk_s: float) -> Iterator[AgentPhones]:
    """Every agent of ``peer`` registered and its phone answering (talking ``talk_s`` before it hangs up)."""
    assert peer.sip_agents, "start the peer with running_asterisk(sip_agents=True)"
    phones_port = free_port(socket.SOCK_DGRAM)
    rtp = free_udp_range(2 * peer.agents + 2)
    inner, log = peer.inner, peer.home / "log"
    agents = [SIP_AGENT.format(n=n) for n in range(1, peer.agents + 1)]
    (peer.home / "sipp" / "agents.csv").write_text(
        "SEQUENTIAL\n" + "".join(f"{agent};{phones_port}\n" for agent in agents), encoding="utf-8"
    )
    phones = [
        "sipp",
        "-sf",
        f"{inner}/sipp/agent.xml",
        "-i",
        "127.0.0.1",
        "-p",
        str(phones_port),
        "-mi",
        "127.0.0.1",
        "-min_rtp_port",
        str(rtp),
        "-max_rtp_port",
        str(rtp + 2 * peer.agents + 1),
        "-d",
        str(round(talk_s * 1000)),
        "-nostdin",
        "-trace_msg",
        "-message_file",
        f"{inner}/log/agents-messages.log",
    ]
    register = [
        "sipp",
        f"127.0.0.1:{peer.sip_port}",
        "-sf",
        f"{inner}/sipp/agent_register.xml",
        "-inf",
        f"{inner}/sipp/agents.csv",
        "-i",
        "127.0.0.1",
        "-p",
        str(free_port(socket.SOCK_DGRAM)),
        "-m",
        str(len(agents)),
        "-r",
        "10",
        "-nostdin",
        "-trace_err",
        "-error_file",
        f"{inner}/log/agents-register-errors.log",
    ]
    with chrooted(peer.root, phones, user="asterisk", log=log / "agents-sipp.log"):
        with chrooted(peer.root, register, user="asterisk", log=log / "agents-register.log") as registering:
            code = registering.wait(REGISTER_TIMEOUT_S)
        assert code == 0, f"the agents' phones did not register (sipp exit {code}); see {log}"
        yield AgentPhones(peer)
