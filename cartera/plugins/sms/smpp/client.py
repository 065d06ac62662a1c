"""One SMPP transceiver session kept up by a thread of its own: bind, read, keepalive, rebind with backoff.

smpplib's client is blocking, so the thread owns the reading side of the socket; senders write under a lock
and wait for their response by sequence number. PDUs are never logged (a bind carries the password, a
deliver_sm a debtor's text).
"""

from __future__ import annotations

import itertools
import logging
import select
import threading
import time
from collections.abc import Callable
from contextlib import suppress
from dataclasses import dataclass, field
from typing import Any

import smpplib.client
import smpplib.consts
import smpplib.exceptions
import smpplib.smpp

from cartera.plugin import event
from cartera.plugins.sms.smpp.config import SmppConfig

ESME_ROK: int = smpplib.consts.SMPP_ESME_ROK
ESME_RX_T_APPN: int = smpplib.consts.SMPP_ESME_RX_T_APPN  # "temporary application error": the SMSC retries later
_POLL_S = 0.2
_LinkErrors = (smpplib.exceptions.ConnectionError, smpplib.exceptions.PDUError, OSError)

DeliverHandler = Callable[[Any], int]
ResponseHandler = Callable[[Any], None]


def _ignore(_response: Any) -> None:
    """A response needing no handling beyond being waited for."""


class LinkDown(Exception):
    """The PDU did not leave: there is no bound session, or writing it failed. Resubmitting is safe."""


class InDoubt(Exception):
    """The PDU was written but no response came (connection lost or timeout): the SMSC may have it."""


def status_text(status: int) -> str:
    return f"0x{status:08X} {smpplib.consts.DESCRIPTIONS.get(status, 'unknown status')}"


class _Sequences:
    """Thread-safe sequence numbers 1..0x7FFFFFFF for smpplib's PDU factory."""

    def __init__(self) -> None:
        self._counter = itertools.count(1)
        self._lock = threading.Lock()
        self.sequence = 0

    def next_sequence(self) -> int:
        with self._lock:
            self.sequence = next(self._counter) % 0x7FFFFFFF or next(self._counter)
            return self.sequence


class _Client(smpplib.client.Client):  # type: ignore[misc]
    """smpplib's client with thread-safe sequences and writes, and no PDU dumps in the log."""

    def __init__(self, host: str, port: int, timeout: float) -> None:
        super().__init__(
            host,
            port,
            timeout=timeout,
            sequence_generator=_Sequences(),
            logger_name="cartera.smpp.pdu",
            allow_unknown_opt_params=True,
        )
        self.logger.setLevel(logging.WARNING)  # its DEBUG lines dump PDUs in hex, the bind password included
        self.write_lock = threading.Lock()

    def send_pdu(self, p: Any) -> bool:
        if self.state not in smpplib.consts.COMMAND_STATES[p.command]:
            raise smpplib.exceptions.PDUError(f"{p.command} not allowed in state {self.state}")
        data = p.generate()
        with self.write_lock:
            if self._socket is None:
                raise smpplib.exceptions.ConnectionError("not connected")
            try:
                self._socket.sendall(data)
            except OSError as exc:
                raise smpplib.exceptions.ConnectionError(str(exc)) from exc
        return True


@dataclass(slots=True)
class _Waiter:
    on_response: ResponseHandler
    done: threading.Event = field(default_factory=threading.Event)
    response: Any = None
    lost: bool = False


class SmppLink:
    """A bound transceiver: ``submit`` from any thread; deliver_sm PDUs go to ``on_deliver`` (in the link's
    thread), whose return value is the deliver_sm_resp status."""

    def __init__(self, config: SmppConfig, on_deliver: DeliverHandler, log: logging.Logger) -> None:
        self.config = config
        self._on_deliver = on_deliver
        self._log = log
        self._client: _Client | None = None
        self._bound = threading.Event()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._pending: dict[int, _Waiter] = {}
        self._pending_lock = threading.Lock()
        self.last_error = "not bound yet"
        self.binds = 0

    @property
    def where(self) -> str:
        return f"{self.config.host}:{self.config.port} as {self.config.system_id}"

    def start(self) -> None:
        self._stopping.clear()
        self._thread = threading.Thread(target=self._run, name=f"smpp-{self.config.system_id}", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Unbind, close and join the thread; waiting senders get :class:`InDoubt` or :class:`LinkDown`."""
        self._stopping.set()
        client = self._client
        if client is not None and self._bound.is_set():
            with suppress(*_LinkErrors):
                client.send_pdu(smpplib.smpp.make_pdu("unbind", client=client))
        if self._thread is not None:
            self._thread.join(self.config.response_timeout_s + 2 * _POLL_S)
            self._thread = None

    def wait_bound(self, timeout: float) -> bool:
        return self._bound.wait(timeout)

    def submit(self, on_response: ResponseHandler, **params: Any) -> Any:
        """Send one submit_sm and return its submit_sm_resp (any status). ``on_response`` runs in the link's
        thread as the response arrives, before any later PDU is read (so a receipt never overtakes it)."""
        waiter = self._request("submit_sm", on_response, **params)
        if not waiter.done.wait(self.config.response_timeout_s):
            # left registered: a late response is still recorded, so its receipt finds the message
            raise InDoubt(f"no submit_sm_resp from {self.where} within {self.config.response_timeout_s:g}s")
        if waiter.lost:
            raise InDoubt(f"the connection to {self.where} dropped before the submit_sm_resp")
        return waiter.response

    def enquire(self) -> float:
        """Send enquire_link on the bound session; the round trip in seconds. Raises LinkDown/InDoubt."""
        started = time.monotonic()
        waiter = self._request("enquire_link", _ignore)
        if not waiter.done.wait(self.config.response_timeout_s) or waiter.lost:
            raise InDoubt(f"no enquire_link_resp from {self.where} within {self.config.response_timeout_s:g}s")
        return time.monotonic() - started

    def _request(self, command: str, on_response: ResponseHandler, **params: Any) -> _Waiter:
        """Write a request on the bound session, its waiter registered first; LinkDown when it did not leave."""
        client = self._client
        if client is None or not self._bound.is_set():
            raise LinkDown(f"not bound to {self.where}: {self.last_error}")
        try:
            return self._send_request(client, smpplib.smpp.make_pdu(command, client=client, **params), on_response)
        except _LinkErrors as exc:
            raise LinkDown(f"writing {command} to {self.where} failed: {exc}") from exc

    def _send_request(self, client: _Client, pdu: Any, on_response: ResponseHandler) -> _Waiter:
        waiter = _Waiter(on_response)
        with self._pending_lock:
            self._pending[pdu.sequence] = waiter
        try:
            client.send_pdu(pdu)
        except _LinkErrors:
            with self._pending_lock:
                self._pending.pop(pdu.sequence, None)
            raise
        return waiter

    def _run(self) -> None:
        delay = self.config.reconnect_min_s
        while not self._stopping.is_set():
            try:
                client = self._bind()
            except _LinkErrors as exc:
                self.last_error = f"bind failed: {exc or type(exc).__name__}"
                event(self._log, "smpp.bind_failed", logging.WARNING, to=self.where, error=self.last_error,
                      retry_in_s=delay)  # fmt: skip
                self._stopping.wait(delay)
                delay = min(delay * 2, self.config.reconnect_max_s)
                continue
            delay = self.config.reconnect_min_s
            try:
                self._serve(client)
            except _LinkErrors as exc:
                self.last_error = f"connection lost: {exc or type(exc).__name__}"
                event(self._log, "smpp.link_lost", logging.WARNING, to=self.where, error=self.last_error)
            finally:
                self._drop(client)

    def _bind(self) -> _Client:
        client = _Client(self.config.host, self.config.port, self.config.response_timeout_s)
        try:
            client.connect()
            client.bind_transceiver(
                system_id=self.config.system_id,
                password=self.config.password.get_secret_value(),
                system_type=self.config.system_type,
                addr_ton=self.config.source_addr_ton,
                addr_npi=self.config.source_addr_npi,
            )
        except BaseException:
            client.disconnect()
            raise
        self._client = client
        self.binds += 1
        self.last_error = ""
        self._bound.set()
        event(self._log, "smpp.bound", to=self.where, binds=self.binds)
        return client

    def _serve(self, client: _Client) -> None:
        idle_since = time.monotonic()
        keepalive: _Waiter | None = None
        stop_by: float | None = None
        while True:
            sock = client._socket
            if sock is None:
                raise smpplib.exceptions.ConnectionError("socket closed")
            readable, _, _ = select.select([sock], [], [], _POLL_S)
            now = time.monotonic()
            if self._stopping.is_set():  # stop() sent unbind: wait for unbind_resp, not forever
                stop_by = stop_by or now + self.config.response_timeout_s
                if now > stop_by:
                    return
            if readable:
                pdu = client.read_pdu()
                idle_since = now
                if pdu.command == "unbind_resp" or self._dispatch(client, pdu):
                    return
            elif keepalive is not None and not keepalive.done.is_set():
                if now - idle_since > self.config.enquire_link_s + self.config.response_timeout_s:
                    raise smpplib.exceptions.ConnectionError("no enquire_link_resp: the SMSC stopped answering")
            elif now - idle_since > self.config.enquire_link_s:
                keepalive = self._send_request(client, smpplib.smpp.make_pdu("enquire_link", client=client), _ignore)

    def _dispatch(self, client: _Client, pdu: Any) -> bool:
        """Act on one PDU; True when the SMSC ended the session."""
        if pdu.command in ("submit_sm_resp", "enquire_link_resp", "generic_nack"):
            with self._pending_lock:
                waiter = self._pending.pop(pdu.sequence, None)
            if waiter is not None:
                waiter.response = pdu
                waiter.on_response(pdu)
                waiter.done.set()
        elif pdu.command == "deliver_sm":
            status = self._deliver(pdu)
            self._respond(client, "deliver_sm_resp", pdu.sequence, status)
        elif pdu.command == "enquire_link":
            self._respond(client, "enquire_link_resp", pdu.sequence, ESME_ROK)
        elif pdu.command == "unbind":
            self._respond(client, "unbind_resp", pdu.sequence, ESME_ROK)
            self.last_error = "the SMSC unbound"
            event(self._log, "smpp.unbound_by_smsc", logging.WARNING, to=self.where)
            return True
        else:
            event(self._log, "smpp.unhandled_pdu", logging.WARNING, command=pdu.command)
        return False

    def _deliver(self, pdu: Any) -> int:
        try:
            return self._on_deliver(pdu)
        except Exception as exc:  # the SMSC redelivers on a temporary error; the link stays up
            event(self._log, "smpp.deliver_failed", logging.ERROR, error=repr(exc))
            return ESME_RX_T_APPN

    @staticmethod
    def _respond(client: _Client, command: str, sequence: int, status: int) -> None:
        response = smpplib.smpp.make_pdu(command, client=client, status=status)
        response.sequence = sequence
        client.send_pdu(response)

    def _drop(self, client: _Client) -> None:
        self._bound.clear()
        self._client = None
        with suppress(*_LinkErrors):
            client.disconnect()
        with self._pending_lock:
            waiters, self._pending = list(self._pending.values()), {}
        for waiter in waiters:
            waiter.lost = True
            waiter.done.set()
