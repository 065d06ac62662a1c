"""The Jasmin SMS gateway (scripts/peers/jasmin.sh) as the SMSC the smpp plugin binds to.

Jasmin routes MT messages only to SMPP client connectors, so it needs a carrier upstream: :class:`Carrier`
is that carrier, a small SMPP server in the test process that Jasmin's connector binds to. It answers each
submit_sm, sends the delivery receipt the destination calls for, and originates MO messages. The path under
test is the real one: plugin ⇄ Jasmin's SMPP server ⇄ Jasmin's router, AMQP queues, Redis DLR map ⇄ carrier.
Jasmin itself runs with its own RabbitMQ vhost (when rabbitmqctl is there) and Redis database.
"""

from __future__ import annotations

import itertools
import os
import shutil
import socket
import struct
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import smpplib.smpp

from cartera.plugins.sms.smpp.text import ESM_DELIVERY_RECEIPT, encode_parts
from tests.peers import unavailable
from tests.peers.debian import stop
from tests.peers.net import free_port

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "scripts" / "peers" / "jasmin.sh"
PROVISION_TIMEOUT_S = 900
RECEIPT_DELAY_S = 0.05  # a handset's delivery takes a moment; Jasmin records the submit_sm_resp meanwhile
REDIS_DB = 11  # Jasmin's DLR map; keys are message UUIDs, so parallel runs sharing it do not collide
_MESSAGE_STATES = {"DELIVRD": 2, "EXPIRED": 3, "DELETED": 4, "UNDELIV": 5, "ACCEPTD": 6, "UNKNOWN": 7, "REJECTD": 8}


def jasmin_venv() -> Path:
    """Jasmin's own virtualenv, installed on first use; skips loudly when it (or its services) cannot be had."""
    for port, service in ((5672, "RabbitMQ"), (6379, "Redis")):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=2).close()
        except OSError as exc:
            unavailable(f"jasmin: {service} on 127.0.0.1:{port}: {exc}")
    try:
        done = subprocess.run([str(SCRIPT)], capture_output=True, text=True, timeout=PROVISION_TIMEOUT_S, check=False)
    except subprocess.TimeoutExpired:
        unavailable(f"jasmin: provisioning took over {PROVISION_TIMEOUT_S}s")
    if done.returncode != 0:
        tail = " | ".join(done.stderr.strip().splitlines()[-3:])
        unavailable(f"jasmin: {SCRIPT.name} failed ({done.returncode}): {tail}")
    return Path(done.stdout.strip().splitlines()[-1])


# --- the carrier upstream of Jasmin ------------------------------------------------------------------------


class _Sequences:
    def __init__(self) -> None:
        self._counter = itertools.count(1)
        self.sequence = 0

    def next_sequence(self) -> int:
        self.sequence = next(self._counter)
        return self.sequence


@dataclass(frozen=True)
class Submitted:
    """A submit_sm the carrier received from Jasmin."""

    carrier_id: str
    destination: str
    data_coding: int
    esm_class: int
    short_message: bytes
    registered_delivery: int


class Carrier:
    """An SMPP server for Jasmin's connector: ``outcomes`` maps a destination to the receipt's stat (else
    DELIVRD); ``receipt_delay_s`` holds receipts back. ``mo`` sends a message from a phone to Jasmin."""

    def __init__(self) -> None:
        self.port = free_port()
        self.submitted: list[Submitted] = []
        self.outcomes: dict[str, str] = {}
        self.receipt_delay_s = RECEIPT_DELAY_S
        self._ids = itertools.count(1)
        self._sequences = _Sequences()
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._sessions: list[socket.socket] = []
        self._server = socket.create_server(("127.0.0.1", self.port))
        self._closing = False
        self._threads = [threading.Thread(target=self._accept, daemon=True)]
        self._threads[0].start()

    def close(self) -> None:
        self._closing = True
        self._server.close()
        with self._lock:
            for session in self._sessions:
                with suppress(OSError):
                    session.shutdown(socket.SHUT_RDWR)
                session.close()

    def wait_bound(self, timeout: float = 20) -> None:
        with self._changed:
            if not self._changed.wait_for(lambda: self._sessions, timeout):
                raise AssertionError(f"Jasmin's connector did not bind to the carrier on port {self.port}")

    def wait_submitted(self, count: int, timeout: float = 10) -> list[Submitted]:
        with self._changed:
            if not self._changed.wait_for(lambda: len(self.submitted) >= count, timeout):
                raise AssertionError(f"carrier got {len(self.submitted)} submit_sm, expected {count}")
            return list(self.submitted)

    def mo(self, phone: str, text: str, shortcode: str = "5555") -> None:
        """Originate a message from ``phone`` (E.164) to Jasmin, in one or more concatenated parts."""
        for part in encode_parts(text, reference=next(self._ids)):
            self._send(
                "deliver_sm",
                source_addr_ton=1,
                source_addr_npi=1,
                source_addr=phone.removeprefix("+"),
                dest_addr_ton=0,
                dest_addr_npi=1,
                destination_addr=shortcode,
                esm_class=part.esm_class,
                data_coding=part.data_coding,
                short_message=part.short_message,
            )

    def _accept(self) -> None:
        while not self._closing:
            try:
                session, _ = self._server.accept()
            except OSError:
                return
            thread = threading.Thread(target=self._serve, args=(session,), daemon=True)
            self._threads.append(thread)
            thread.start()

    def _serve(self, session: socket.socket) -> None:
        with session:
            while not self._closing:
                try:
                    pdu = self._read(session)
                except OSError:
                    pdu = None
                if pdu is None:
                    break
                self._handle(session, pdu)
        with self._changed:
            if session in self._sessions:
                self._sessions.remove(session)

    @staticmethod
    def _read(session: socket.socket) -> Any:
        header = _recv(session, 4)
        if header is None:
            return None
        body = _recv(session, struct.unpack(">L", header)[0] - 4)
        if body is None:
            return None
        return smpplib.smpp.parse_pdu(header + body, client=_Sequences(), allow_unknown_opt_params=True)

    def _handle(self, session: socket.socket, pdu: Any) -> None:
        command = pdu.command
        if command.startswith("bind_"):
            self._reply(session, pdu, f"{command}_resp", system_id="carrier")
            with self._changed:
                self._sessions.append(session)
                self._changed.notify_all()
        elif command == "submit_sm":
            carrier_id = f"c{next(self._ids)}"
            self._reply(session, pdu, "submit_sm_resp", message_id=carrier_id)
            sent = Submitted(
                carrier_id,
                pdu.destination_addr.decode(),
                pdu.data_coding,
                pdu.esm_class,
                pdu.short_message or b"",
                pdu.registered_delivery,
            )
            with self._changed:
                self.submitted.append(sent)
                self._changed.notify_all()
            if pdu.registered_delivery & 0x03:
                timer = threading.Timer(self.receipt_delay_s, self._receipt, args=(sent, pdu))
                timer.daemon = True
                timer.start()
        elif command in ("enquire_link", "unbind"):
            self._reply(session, pdu, f"{command}_resp")

    def _receipt(self, sent: Submitted, pdu: Any) -> None:
        if self._closing:
            return
        stat = self.outcomes.get(sent.destination, "DELIVRD")
        now = datetime.now(UTC).strftime("%y%m%d%H%M")
        text = f"id:{sent.carrier_id} sub:001 dlvrd:{int(stat == 'DELIVRD'):03d} submit date:{now} "
        text += f"done date:{now} stat:{stat} err:000 text:"
        with suppress(OSError, AssertionError):  # Jasmin stopping: nobody to tell
            self._send(
                "deliver_sm",
                source_addr_ton=pdu.dest_addr_ton,
                source_addr_npi=pdu.dest_addr_npi,
                source_addr=sent.destination,
                dest_addr_ton=pdu.source_addr_ton,
                dest_addr_npi=pdu.source_addr_npi,
                destination_addr=pdu.source_addr.decode(),
                esm_class=ESM_DELIVERY_RECEIPT,
                short_message=text.encode(),
                receipted_message_id=sent.carrier_id,
                message_state=_MESSAGE_STATES.get(stat, 7),
            )

    def _send(self, command: str, **params: Any) -> None:
        with self._lock:
            if not self._sessions:
                raise AssertionError("Jasmin's connector is not bound to the carrier")
            session = self._sessions[-1]
            session.sendall(smpplib.smpp.make_pdu(command, client=self._sequences, **params).generate())

    def _reply(self, session: socket.socket, request: Any, command: str, **params: Any) -> None:
        response = smpplib.smpp.make_pdu(command, client=self._sequences, **params)
        response.sequence = request.sequence
        with self._lock:
            session.sendall(response.generate())


def _recv(session: socket.socket, size: int) -> bytes | None:
    data = b""
    while len(data) < size:
        chunk = session.recv(size - len(data))
        if not chunk:
            return None
        data += chunk
    return data


# --- Jasmin ---------------------------------------------------------------------------------------------


class JCli:
    """A jCli console session (telnet): ``run`` one command line, ``add`` an object through its prompts."""

    _IAC, _WILL, _WONT, _DO, _DONT, _SB, _SE, _NAWS = 255, 251, 252, 253, 254, 250, 240, 31

    def __init__(self, port: int, username: str, password: str) -> None:
        self._socket = socket.create_connection(("127.0.0.1", port), timeout=10)
        self._buffer = b""
        self._until(b"Username: ")
        self._send(username)
        self._until(b"Password: ")
        self._send(password)
        self._until(b"jcli : ")

    def close(self) -> None:
        with suppress(OSError):
            self._send("quit")
        self._socket.close()

    def run(self, line: str) -> str:
        self._send(line)
        return self._until(b"jcli : ")

    def add(self, command: str, **fields: str) -> str:
        """``command`` (e.g. ``user -a``), one ``key value`` line per field, then ``ok``; fails on an error."""
        for line in (command, *(f"{key} {value}" for key, value in fields.items()), "ok"):
            self._send(line)
        try:
            transcript = self._until(b"jcli : ", timeout=10)
        except (AssertionError, TimeoutError) as exc:
            self.run("ko")
            raise AssertionError(f"jCli {command} {fields} was refused: {exc}") from exc
        if "Successfully" not in transcript:
            raise AssertionError(f"jCli {command} {fields}: {transcript}")
        return transcript

    def _send(self, line: str) -> None:
        self._socket.sendall(line.encode() + b"\r\n")

    def _until(self, *marks: bytes, timeout: float = 15) -> str:
        deadline = time.monotonic() + timeout
        while not any(mark in self._buffer for mark in marks):
            if time.monotonic() > deadline:
                raise AssertionError(f"jCli: no {marks!r} after {self._buffer[-300:]!r}")
            chunk = self._socket.recv(4096)
            if not chunk:
                raise AssertionError(f"jCli closed the session: {self._buffer[-300:]!r}")
            self._buffer += self._negotiate(chunk)
        end, mark = min((self._buffer.find(m), m) for m in marks if m in self._buffer)
        text, self._buffer = self._buffer[:end], self._buffer[end + len(mark) :]
        return text.decode(errors="replace").replace("\r", "")

    def _negotiate(self, chunk: bytes) -> bytes:
        """Answer telnet options (a window size, so the console draws its prompts); return the text."""
        out, i = bytearray(), 0
        while i < len(chunk):
            if chunk[i] == self._IAC and i + 2 < len(chunk) and chunk[i + 1] in (self._WILL, self._WONT, self._DO):
                verb, option = chunk[i + 1], chunk[i + 2]
                if verb == self._DO and option == self._NAWS:
                    size = bytes([self._SB, self._NAWS, 0, 200, 0, 60, self._IAC, self._SE])
                    self._socket.sendall(bytes([self._IAC, self._WILL, self._NAWS, self._IAC]) + size)
                elif verb == self._DO:
                    self._socket.sendall(bytes([self._IAC, self._WONT, option]))
                else:
                    self._socket.sendall(bytes([self._IAC, self._DONT, option]))
                i += 3
            else:
                out.append(chunk[i])
                i += 1
        return bytes(out)


@dataclass
class Jasmin:
    """A running jasmind: its SMPP server port, its HTTP API port, its carrier and a jCli session."""

    smpp_port: int
    http_port: int
    carrier: Carrier
    jcli: JCli
    log: Path

    def add_user(self, uid: str, password: str) -> None:
        """An SMPP account (system_id = ``uid``, 3 to 15 characters) in group ``cartera``."""
        self.jcli.add("user -a", username=uid, password=password, gid="cartera", uid=uid)

    def route_mo_to(self, uid: str) -> None:
        """Every MO message to the SMPP account ``uid`` (the default MO route)."""
        self.jcli.add("morouter -a", type="DefaultRoute", connector=f"smpps({uid})")


@contextmanager
def rabbitmq_vhost() -> Iterator[str]:
    """A RabbitMQ vhost of its own (guest allowed), removed after; ``/`` when rabbitmqctl is not here."""
    ctl = shutil.which("rabbitmqctl")
    name = f"cartera-jasmin-{uuid.uuid4().hex[:8]}"
    if ctl is None or subprocess.run([ctl, "add_vhost", name], capture_output=True, check=False).returncode:
        yield "/"
        return
    try:
        subprocess.run([ctl, "set_permissions", "-p", name, "guest", ".*", ".*", ".*"], capture_output=True, check=True)
        yield name
    finally:
        subprocess.run([ctl, "delete_vhost", name], capture_output=True, check=False)


def _config(root: Path, venv: Path, vhost: str, ports: dict[str, int]) -> str:
    spec = next(venv.glob("lib/python*/site-packages/txamqp/specs/standard/amqp0-9-1.stripped.xml"))
    sections: dict[str, dict[str, object]] = {
        "smpp-server": {"bind": "127.0.0.1", "port": ports["smpp"], "log_file": root / "log/smpp-server.log"},
        "smpp-server-pb": {"bind": "127.0.0.1", "port": ports["smpps_pb"]},
        "client-management": {"bind": "127.0.0.1", "port": ports["cm"], "store_path": f"{root}/store/"},
        "router": {"bind": "127.0.0.1", "port": ports["router"], "store_path": f"{root}/store/"},
        "jcli": {"bind": "127.0.0.1", "port": ports["jcli"]},
        "http-api": {"bind": "127.0.0.1", "port": ports["http"]},
        "amqp-broker": {"host": "127.0.0.1", "port": 5672, "vhost": vhost, "spec": spec},
        "redis-client": {"host": "127.0.0.1", "port": 6379, "dbid": REDIS_DB},
        # retries after 1 s, not 10 or 30: a receipt that overtook Jasmin's recording of its submit_sm_resp,
        # a receipt or MO for an account whose session is being re-established
        "sm-listener": {"dlr_lookup_retry_delay": 1, "dlr_lookup_max_retries": 5},
        "dlr": {"dlr_lookup_retry_delay": 1, "dlr_lookup_max_retries": 5},
        "dlr-thrower": {"retry_delay": 1, "max_retries": 10},
        "deliversm-thrower": {"retry_delay": 1, "max_retries": 10},
    }
    return "".join(
        f"[{name}]\n" + "".join(f"{key} = {value}\n" for key, value in values.items()) + "\n"
        for name, values in sections.items()
    )


def _wait_port(port: int, process: subprocess.Popen[bytes], log: Path, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"jasmind exited ({process.returncode}): {log.read_text()[-2000:]}")
        with suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=1):
            return
        time.sleep(0.2)
    raise AssertionError(f"jasmind did not listen on {port} within {timeout}s: {log.read_text()[-2000:]}")


@contextmanager
def running_jasmin(root: Path) -> Iterator[Jasmin]:
    """jasmind on free 127.0.0.1 ports with a carrier connector (MT default route) and group ``cartera``."""
    venv = jasmin_venv()
    ports = {name: free_port() for name in ("smpp", "smpps_pb", "cm", "router", "jcli", "http")}
    for sub in ("log", "store"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    log = root / "jasmind.log"
    carrier = Carrier()
    with rabbitmq_vhost() as vhost, log.open("ab") as output:
        config = root / "jasmin.cfg"
        config.write_text(_config(root, venv, vhost, ports))
        env = {**os.environ, "LOG_PATH": str(root / "log"), "STORE_PATH": f"{root}/store/"}
        process = subprocess.Popen(
            [str(venv / "bin" / "python"), str(venv / "bin" / "jasmind.py"), "--config", str(config),
             "--enable-dlr-thrower", "--enable-dlr-lookup", "--enable-deliver-thrower"],
            stdout=output, stderr=subprocess.STDOUT, env=env, start_new_session=True,
        )  # fmt: skip
        jcli: JCli | None = None
        try:
            _wait_port(ports["jcli"], process, log)
            _wait_port(ports["smpp"], process, log)
            jcli = JCli(ports["jcli"], "jcliadmin", "jclipwd")
            jcli.add(
                "smppccm -a", cid="carrier", host="127.0.0.1", port=str(carrier.port), username="jasmin",
                password="jasmin", submit_throughput="0", con_fail_delay="1", con_loss_delay="1",
            )  # fmt: skip
            reply = jcli.run("smppccm -1 carrier")
            if "Successfully" not in reply:
                raise AssertionError(f"jCli smppccm -1 carrier: {reply}")
            carrier.wait_bound()
            jcli.add("mtrouter -a", type="DefaultRoute", connector="smppc(carrier)", rate="0.00")
            jcli.add("group -a", gid="cartera")
            yield Jasmin(ports["smpp"], ports["http"], carrier, jcli, log)
        finally:
            if jcli is not None:
                jcli.close()
            stop(process, 10)
            carrier.close()
