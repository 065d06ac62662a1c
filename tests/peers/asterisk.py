"""A real Asterisk 22, chrooted in a Debian-unstable root, dialling a SIPp UAS that plays the debtors' phones.

``running_asterisk()`` builds (once, cached) the root with ``asterisk``, ``asterisk-modules`` and
``sip-tester``, writes a private instance under ``/srv/cartera/<id>`` inside it (configs, spool, astdb, logs,
control socket, all owned by the ``asterisk`` user), and runs there, on free ports of 127.0.0.1:

- SIPp as the debtors' phones (``tests/peers/sipp/debtor.xml``): the dialled number's last digit picks what
  the line does (see :data:`NUMBERS`);
- Asterisk with AMI for the user ``cartera``, a ``carrier`` PJSIP endpoint pointing at SIPp, the ``agents``
  context (answer → ``MixMonitor(${UNIQUEID}.wav)`` → AMD() if asked → queue, or the identification message
  :attr:`AsteriskPeer.identification_message` once no agent took the call in time: docs/operations.md's
  dialplan, which also says so in a ``CarteraIdentified`` UserEvent), and the queue ``cobranza`` whose static members
  are the agents' phones: Local channels that answer, play tones for ``TALK_SECONDS`` and hang up, or, with
  ``sip_agents``, the PJSIP endpoints ``agent01``... that SIP user agents register to (:data:`SIP_AGENT`).
"""

from __future__ import annotations

import math
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import time
import wave
from array import array
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from asterisk.ami import AMIClient, SimpleAction

from cartera.core.models import CallOutcome
from cartera.plugins.dialers.simulator.audio import RATE, write_wav
from tests.peers.debian import ChrootedHome, chrooted, debian_root, stop
from tests.peers.net import free_port, free_udp_range

PACKAGES = ("asterisk", "asterisk-modules", "sip-tester")
SIPP_DIR = Path(__file__).resolve().parent / "sipp"
QUEUE = "cobranza"
AMI_USER = "cartera"
#: An AMI user that may log in and read, but not originate.
READONLY_USER = "auditor"
MODULES_DIR = "/usr/lib/x86_64-linux-gnu/asterisk/modules"

#: The debtors' phones: what SIPp does for a number depends on its last digit.
NUMBERS: dict[CallOutcome, str] = {
    CallOutcome.ANSWERED: "+573005550001",
    CallOutcome.BUSY: "+573005550002",
    CallOutcome.NO_ANSWER: "+573005550003",
    CallOutcome.REJECTED: "+573005550004",
    CallOutcome.INVALID_NUMBER: "+573005550005",
    CallOutcome.CONGESTION: "+573005550006",
    CallOutcome.FAILED: "+573005550007",
}
#: Answers, then the debtor hangs up after 3 seconds.
DEBTOR_HANGS_UP = "+573005550008"
#: The identification message the peer provisions: a tone of this pitch and length.
IDENTIFICATION_HZ = 1000
IDENTIFICATION_S = 1.5
#: What the debtor says on answer, for AMD(): a call's CARTERA_GREETING names one; Asterisk plays it during AMD()
#: and the debtor's phone (SIPp, echoing) sends it back, so AMD() hears it as the debtor's greeting. A machine's
#: greeting: 4 s without a pause; a person's: "hello" (0.3 s), then silence.
MACHINE_GREETING = "machine-greeting"
PERSON_GREETING = "person-hello"
#: The PJSIP endpoint (and AOR) of the n-th agent's phone, with ``sip_agents``; its queue member is ``PJSIP/...``.
SIP_AGENT = "agent{n:02d}"

_MODULES = (
    "res_timing_timerfd",
    "res_sorcery_config",
    "res_sorcery_memory",
    "res_sorcery_astdb",
    "res_pjproject",
    "res_pjsip",
    "res_pjsip_session",
    "res_pjsip_registrar",
    "res_pjsip_endpoint_identifier_user",
    "res_pjsip_pubsub",
    "res_pjsip_sdp_rtp",
    "res_pjsip_caller_id",
    "res_pjsip_header_funcs",
    "res_pjsip_rfc3326",
    "res_rtp_asterisk",
    "chan_pjsip",
    "codec_ulaw",
    "format_wav",
    "format_pcm",
    "bridge_simple",
    "pbx_config",
    "app_queue",
    "app_dial",
    "app_mixmonitor",
    "app_playtones",
    "app_playback",
    "app_amd",
    "app_userevent",
    "func_channel",
)


@dataclass
class AsteriskPeer(ChrootedHome):
    """One running instance; paths are host paths unless named ``inner``."""

    root: Path
    name: str
    agents: int
    talk_seconds: float
    ami_port: int = field(default_factory=free_port)
    sip_port: int = field(default_factory=lambda: free_port(socket.SOCK_DGRAM))
    sipp_port: int = field(default_factory=lambda: free_port(socket.SOCK_DGRAM))
    ami_secret: str = field(default_factory=lambda: secrets.token_hex(12))
    readonly_secret: str = field(default_factory=lambda: secrets.token_hex(12))
    rtp_ports: int = 400  # Asterisk's RTP ports (two a call); SIPp gets half as many (one a call)
    rtp_start: int = 0
    without: tuple[str, ...] = ()  # modules not loaded (noload in modules.conf), e.g. "app_queue"
    sip_agents: bool = False  # the agents are SIP phones registering to PJSIP endpoints, not Local channels
    _asterisk: ExitStack = field(default_factory=ExitStack)
    _process: subprocess.Popen[bytes] | None = None

    def __post_init__(self) -> None:
        if not self.rtp_start:
            self.rtp_start = free_udp_range(self.rtp_ports * 3 // 2)

    @property
    def sipp_rtp(self) -> tuple[int, int]:
        first = self.rtp_start + self.rtp_ports
        return first, first + self.rtp_ports // 2 - 1

    @property
    def spool(self) -> Path:
        """Where MixMonitor writes the recordings, as the node (the host) sees it."""
        return self.home / "spool" / "monitor"

    @property
    def identification_message(self) -> str:
        """The sound abandoned calls hear (Playback's argument, inside the root): a 1 kHz tone, 1.5 s long."""
        return f"{self.inner}/sounds/identification"

    def sound(self, name: str) -> str:
        """A sound the peer provisions (Playback's argument, inside the root): e.g. :data:`MACHINE_GREETING`."""
        return f"{self.inner}/sounds/{name}"

    @property
    def sipp_messages(self) -> Path:
        """Every SIP message SIPp sent and received."""
        return self.home / "log" / "sipp-messages.log"

    @property
    def asterisk_log(self) -> Path:
        return self.home / "log" / "full"

    @property
    def agent_interfaces(self) -> list[str]:
        """The queue members' interfaces: the agents' identities at this PBX."""
        if self.sip_agents:
            return [f"PJSIP/{SIP_AGENT.format(n=n)}" for n in range(1, self.agents + 1)]
        return [f"Local/{n:02d}@agent-phones/n" for n in range(1, self.agents + 1)]

    def dialer_settings(self, **overrides: Any) -> dict[str, Any]:
        """Settings of the ``asterisk_ami`` dialer for this instance."""
        return {
            "host": "127.0.0.1",
            "port": self.ami_port,
            "username": AMI_USER,
            "secret": self.ami_secret,
            "queue": QUEUE,
            "spool_dir": str(self.spool),
            "ring_timeout_s": 15,
            "identification_message": self.identification_message,
            **overrides,
        }

    # --- lifecycle --------------------------------------------------------------------------------

    def write_instance(self) -> None:
        for sub in ("etc", "spool/monitor", "spool/tmp", "lib", "log", "run", "cache", "sipp", "sounds"):
            (self.home / sub).mkdir(parents=True, exist_ok=True)
        write_tone(self.home / "sounds" / "identification.wav", IDENTIFICATION_HZ, IDENTIFICATION_S)
        write_tone(self.home / "sounds" / f"{MACHINE_GREETING}.wav", 400, 4.0)
        write_tone(self.home / "sounds" / f"{PERSON_GREETING}.wav", 400, 0.3, silence_s=2.0)
        for scenario in SIPP_DIR.glob("*.xml"):
            shutil.copy(scenario, self.home / "sipp" / scenario.name)
        for name, text in self._configs().items():
            (self.home / "etc" / name).write_text(text, encoding="utf-8")
        subprocess.run(["chroot", str(self.root), "chown", "-R", "asterisk:asterisk", self.inner], check=True)

    def start_asterisk(self) -> None:
        """Start Asterisk and wait until AMI answers and the queue has its agents."""
        argv = ["asterisk", "-f", "-n", "-C", f"{self.inner}/etc/asterisk.conf"]
        log = self.home / "log" / "console.log"
        self._asterisk = ExitStack()
        self._process = self._asterisk.enter_context(chrooted(self.root, argv, user="asterisk", log=log))
        try:
            self.wait_ready()
        except BaseException:
            self._asterisk.close()
            raise

    def stop_asterisk(self) -> None:
        self._asterisk.close()

    def kill_asterisk(self) -> None:
        """Kill Asterisk at once (SIGKILL, as in a crash): no Hangup, no Shutdown event."""
        if self._process is not None and self._process.poll() is None:
            os.killpg(self._process.pid, signal.SIGKILL)
            self._process.wait(10)
        self._asterisk.close()

    def freeze(self) -> None:
        """Stop Asterisk without closing anything (SIGSTOP): its connections stay open but silent."""
        assert self._process is not None
        os.kill(self._process.pid, signal.SIGSTOP)

    def thaw(self) -> None:
        assert self._process is not None
        os.kill(self._process.pid, signal.SIGCONT)

    def restart_asterisk(self, *, crash: bool = True) -> None:
        if crash:
            self.kill_asterisk()
        else:
            self.stop_asterisk()
        self.start_asterisk()

    def wait_ready(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        problem = "not started"
        while time.monotonic() < deadline:
            try:
                if "app_queue" in self.without:  # no queue to wait for: AMI answering is ready
                    self.action("Ping")
                    return
                members = self.queue_members()
            except (OSError, RuntimeError) as exc:
                problem = f"{type(exc).__name__}: {exc}"
            else:
                if len(members) == self.agents:
                    return
                problem = f"queue {QUEUE} has {len(members)} members"
            time.sleep(0.3)
        raise RuntimeError(f"Asterisk not ready after {timeout}s ({problem}); see {self.asterisk_log}")

    # --- AMI for tests (the bare asterisk-ami client, independent of the plugin) ---------------------

    @contextmanager
    def ami(self, username: str = AMI_USER, secret: str | None = None) -> Iterator[AMIClient]:
        client = AMIClient(address="127.0.0.1", port=self.ami_port, timeout=5)
        response = client.login(username=username, secret=secret or self.ami_secret).response
        try:
            if response is None or response.is_error():
                raise RuntimeError(f"AMI login failed: {response}")
            yield client
        finally:
            client.logoff()
            client.disconnect()

    def action(self, name: str, **keys: str) -> dict[str, str]:
        """Send one action on a fresh connection; its response's keys (raises on an error response)."""
        with self.ami() as client:
            response = client.send_action(SimpleAction(name, **keys)).response
        if response is None or response.is_error():
            raise RuntimeError(f"{name} failed: {response}")
        return dict(response.keys)

    def queue_members(self) -> list[dict[str, str]]:
        members: list[dict[str, str]] = []
        with self.ami() as client:
            done = client.add_event_listener(
                lambda event, **_: members.append(dict(event.keys)), white_list=["QueueMember"]
            )
            complete: list[bool] = []
            client.add_event_listener(lambda **_: complete.append(True), white_list=["QueueStatusComplete"])
            client.send_action(SimpleAction("QueueStatus", Queue=QUEUE)).response  # noqa: B018
            deadline = time.monotonic() + 5
            while not complete and time.monotonic() < deadline:
                time.sleep(0.02)
            client.remove_event_listener(done)
        if not complete:
            raise RuntimeError("no QueueStatusComplete")
        return members

    def set_talk_seconds(self, seconds: float) -> None:
        """How long an agent talks before hanging up, for the calls answered from now on."""
        self.action("Setvar", Variable="TALK_SECONDS", Value=f"{seconds:g}")

    def debtor_channels(self) -> int:
        """Debtors' channels alive right now (calls through the carrier)."""
        with self.ami() as client:
            listed: list[str] = []
            complete: list[bool] = []
            client.add_event_listener(
                lambda event, **_: listed.append(event["Channel"]), white_list=["CoreShowChannel"]
            )
            client.add_event_listener(lambda **_: complete.append(True), white_list=["CoreShowChannelsComplete"])
            client.send_action(SimpleAction("CoreShowChannels")).response  # noqa: B018
            deadline = time.monotonic() + 5
            while not complete and time.monotonic() < deadline:
                time.sleep(0.01)
        return sum(channel.startswith("PJSIP/carrier-") for channel in listed)

    def _sip_messages(self) -> Iterator[tuple[datetime, str]]:
        """(when, text) of every SIP message SIPp logged."""
        text = self.sipp_messages.read_text(encoding="utf-8", errors="replace")
        for stamp, message in re.findall(r"(?m)^-{20,} (\S+)\n(.*?)(?=^-{20,} |\Z)", text, re.DOTALL):
            yield datetime.fromisoformat(stamp), message

    def invites(self) -> dict[str, set[str]]:
        """Call-IDs of the INVITEs SIPp received, by the X-Cartera-Attempt header they carried."""
        by_attempt: dict[str, set[str]] = {}
        for _, message in self._sip_messages():
            if "message received" not in message or "\nINVITE sip:" not in message:
                continue
            attempt = re.search(r"^X-Cartera-Attempt: *(\S+)", message, re.MULTILINE)
            call_id = re.search(r"^Call-ID: *(\S+)", message, re.MULTILINE | re.IGNORECASE)
            if attempt and call_id:
                by_attempt.setdefault(attempt.group(1), set()).add(call_id.group(1))
        return by_attempt

    def most_calls_at_once(self, since: datetime) -> int:
        """The most calls the debtors' phones had at once after ``since``: from each INVITE to its BYE."""
        changes: list[tuple[datetime, int]] = []
        for at, message in self._sip_messages():
            if at < since or "message received" not in message:
                continue
            if "\nINVITE sip:" in message:
                changes.append((at, 1))
            elif "\nBYE sip:" in message:
                changes.append((at, -1))
        peak = calls = 0
        for _, change in sorted(changes):
            calls += change
            peak = max(peak, calls)
        return peak

    # --- configuration ------------------------------------------------------------------------------

    def _configs(self) -> dict[str, str]:
        inner = self.inner
        members = "\n".join(
            f"member => {interface},0,agent{n:02d}" for n, interface in enumerate(self.agent_interfaces, start=1)
        )
        phones = "".join(
            f"""
[{name}]
type = aor
max_contacts = 1
remove_existing = yes

[{name}]
type = endpoint
transport = transport-udp
context = from-agents
disallow = all
allow = ulaw
aors = {name}
direct_media = no
media_address = 127.0.0.1
"""
            for name in (SIP_AGENT.format(n=n) for n in range(1, self.agents + 1) if self.sip_agents)
        )
        loads = "\n".join(f"{'noload' if module in self.without else 'load'} => {module}.so" for module in _MODULES)
        return {
            "asterisk.conf": f"""
[directories]
astetcdir => {inner}/etc
astmoddir => {MODULES_DIR}
astvarlibdir => /var/lib/asterisk
astdbdir => {inner}/lib
astkeydir => {inner}/lib
astdatadir => /usr/share/asterisk
astagidir => /usr/share/asterisk/agi-bin
astspooldir => {inner}/spool
astrundir => {inner}/run
astlogdir => {inner}/log
astcachedir => {inner}/cache
astsbindir => /usr/sbin

[options]
runuser = asterisk
rungroup = asterisk
nocolor = yes
hideconnect = yes
""",
            "modules.conf": f"[modules]\nautoload = no\n{loads}\n",
            "logger.conf": "[general]\n[logfiles]\nfull => notice,warning,error,verbose(2)\n",
            "manager.conf": f"""
[general]
enabled = yes
bindaddr = 127.0.0.1
port = {self.ami_port}
displayconnects = no

[{AMI_USER}]
secret = {self.ami_secret}
deny = 0.0.0.0/0.0.0.0
permit = 127.0.0.1/255.255.255.255
read = system,call,agent,user,reporting
write = system,call,originate,agent,reporting
writetimeout = 5000

[{READONLY_USER}]
secret = {self.readonly_secret}
deny = 0.0.0.0/0.0.0.0
permit = 127.0.0.1/255.255.255.255
read = system,call,agent,reporting
write = reporting
""",
            "pjsip.conf": f"""
[transport-udp]
type = transport
protocol = udp
bind = 127.0.0.1:{self.sip_port}

[carrier]
type = aor
contact = sip:127.0.0.1:{self.sipp_port}

[carrier]
type = endpoint
transport = transport-udp
context = from-carrier
disallow = all
allow = ulaw
aors = carrier
direct_media = no
media_address = 127.0.0.1
bind_rtp_to_media_address = yes
from_user = cobranza
{phones}""",
            "rtp.conf": f"[general]\nrtpstart = {self.rtp_start}\nrtpend = {self.rtp_start + self.rtp_ports - 2}\n",
            "extensions.conf": f"""
[globals]
TALK_SECONDS = {self.talk_seconds:g}

[from-carrier]
exten => _X.,1,Hangup(21)

[from-agents]
exten => _X.,1,Hangup(21)

; The debtor answered an Originate: record the call; a machine (AMD, when the dialer asks) is hung up; a person
; goes to the next free agent, or, none free within CARTERA_ABANDON_AFTER seconds, hears the identification message.
[agents]
exten => s,1,UserEvent(CarteraAnswered,Attempt: ${{CARTERA_ATTEMPT}},Account: ${{CARTERA_ACCOUNT}})
 same => n,MixMonitor(${{UNIQUEID}}.wav)
 same => n,GotoIf($["${{CARTERA_AMD}}" != "1"]?queue)
 same => n,AMD(,,,,,,,,,${{CARTERA_GREETING}})
 same => n,GotoIf($["${{AMDSTATUS}}" = "MACHINE"]?machine)
 same => n(queue),Queue({QUEUE},r,,,${{CARTERA_ABANDON_AFTER}})
 same => n,UserEvent(CarteraAbandoned,Detail: ${{QUEUESTATUS}})
 same => n,Playback(${{CARTERA_MESSAGE}})
 same => n,UserEvent(CarteraIdentified,Detail: ${{PLAYBACKSTATUS}})
 same => n,Hangup()
 same => n(machine),UserEvent(CarteraMachine,Detail: ${{AMDCAUSE}})
 same => n,Hangup()

; The debtor answered a call placed for one agent (a callback): record it, then ring that agent's phone alone.
[agent]
exten => s,1,MixMonitor(${{UNIQUEID}}.wav)
 same => n,Dial(${{CARTERA_AGENT}},10)
 same => n,Hangup()

; Answered, recorded, hung up after a second: for benchmarks of the dialer itself (no queue).
[short-call]
exten => s,1,MixMonitor(${{UNIQUEID}}.wav)
 same => n,Playtones(440/400,0/200)
 same => n,Wait(1)
 same => n,Hangup()

; An agent's phone: answers, talks (tones) and hangs up.
[agent-phones]
exten => _XX,1,Answer()
 same => n,Playtones(440/400,0/200,620/300,0/300)
 same => n,Wait(${{TALK_SECONDS}})
 same => n,Hangup()
""",
            "amd.conf": "[general]\n",
            "queues.conf": f"""
[general]
persistentmembers = no

[{QUEUE}]
strategy = rrmemory
timeout = 10
retry = 1
wrapuptime = 0
ringinuse = no
autofill = yes
joinempty = yes
leavewhenempty = no
{members}
""",
        }


def write_tone(path: Path, hertz: float, seconds: float, silence_s: float = 0.0) -> None:
    """A WAV Asterisk plays (8 kHz, 16-bit, mono): a sine of ``hertz`` lasting ``seconds``, then ``silence_s`` of
    silence."""
    samples = array("h", (round(8000 * math.sin(2 * math.pi * hertz * n / RATE)) for n in range(round(RATE * seconds))))
    samples.extend([0] * round(RATE * silence_s))
    write_wav(path, [samples.tobytes()])


def tone_share(path: Path, hertz: float) -> float:
    """The share of a recording's energy at ``hertz`` (Goertzel), from 0 to 1."""
    with wave.open(str(path), "rb") as wav:
        rate = wav.getframerate()
        samples = array("h", wav.readframes(wav.getnframes()))
    coefficient = 2 * math.cos(2 * math.pi * hertz / rate)
    previous = before = 0.0
    for sample in samples:
        previous, before = sample + coefficient * previous - before, previous
    power = previous * previous + before * before - coefficient * previous * before
    energy = sum(sample * sample for sample in samples)
    return 2 * power / (len(samples) * energy) if energy else 0.0


@contextmanager
def running_asterisk(
    *,
    agents: int = 4,
    talk_seconds: float = 2.0,
    rtp_ports: int = 400,
    without: tuple[str, ...] = (),
    sip_agents: bool = False,
) -> Iterator[AsteriskPeer]:
    """A running Asterisk + SIPp pair in the cached root; everything is stopped and removed afterwards.

    ``without``: modules of the usual set left unloaded. ``sip_agents``: the agents' phones are PJSIP endpoints
    (unreachable until a user agent registers to each), not Local channels.
    """
    root = debian_root("asterisk", PACKAGES)
    peer = AsteriskPeer(
        root=root,
        name=secrets.token_hex(4),
        agents=agents,
        talk_seconds=talk_seconds,
        rtp_ports=rtp_ports,
        without=without,
        sip_agents=sip_agents,
    )
    peer.write_instance()
    sipp = [
        "sipp",
        "-sf",
        f"{peer.inner}/sipp/debtor.xml",
        "-i",
        "127.0.0.1",
        "-p",
        str(peer.sipp_port),
        "-mi",
        "127.0.0.1",
        "-min_rtp_port",
        str(peer.sipp_rtp[0]),
        "-max_rtp_port",
        str(peer.sipp_rtp[1]),
        "-rtp_echo",
        "-nostdin",
        "-trace_msg",
        "-message_file",
        f"{peer.inner}/log/sipp-messages.log",
        "-trace_err",
        "-error_file",
        f"{peer.inner}/log/sipp-errors.log",
    ]
    try:
        with chrooted(root, sipp, user="asterisk", log=peer.home / "log" / "sipp.log") as process:
            time.sleep(0.2)
            if process.poll() is not None:
                raise RuntimeError(f"sipp exited at once; see {peer.home / 'log' / 'sipp.log'}")
            peer.start_asterisk()
            try:
                yield peer
            finally:
                peer.stop_asterisk()
                stop(process)
    finally:
        shutil.rmtree(peer.home, ignore_errors=True)
