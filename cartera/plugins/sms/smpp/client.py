"""One SMPP transceiver session kept up by a thread of its own: bind, read, keepalive, rebind with backoff.

smpplib's client is blocking, so the thread owns the reading side of the socket; senders write under a lock
and wait for their response by sequence number. PDUs are never logged (a bind carries the password, a
deliver_sm a debtor's text).
"""

from __future__ import annotations

import itertools
import logging
import select
import struct
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from contextlib import suppress
from dataclasses import dataclass, field
from typing import Any

import smpplib.client
import smpplib.command_codes
import smpplib.consts
import smpplib.exceptions
import smpplib.smpp

from cartera.plugin import event
from cartera.plugins.sms.smpp.config import SmppConfig

ESME_ROK: int = smpplib.consts.SMPP_ESME_ROK
ESME_RX_T_APPN: int = smpplib.consts.SMPP_ESME_RX_T_APPN  # "temporary application error": the SMSC retries later
ESME_RX_P_APPN: int = smpplib.consts.SMPP_ESME_RX_P_APPN  # "permanent application error": the SMSC gives it up
ESME_RINVCMDID: int = smpplib.consts.SMPP_ESME_RINVCMDID  # "invalid command ID": the generic_nack status
#: "unknown error": the status a generic_nack carrying 0 is read as, since a nack never accepts a request
ESME_RUNKNOWNERR: int = smpplib.consts.SMPP_ESME_RUNKNOWNERR
_POLL_S = 0.2
_HEADER = 16  # command_length, command_id, command_status, sequence_number
#: The longest PDU read: a deliver_sm or data_sm with a full 64 KiB message_payload fits; a longer
#: command_length is a broken or hostile peer, not a message.
MAX_PDU = 0x10000 + 0x1000
_RESPONSE_BIT = 0x80000000
#: Requests an ESME is never sent, or needs no answer to: any other request this link does not handle gets a
#: generic_nack (ESME_RINVCMDID) so the SMSC's window does not fill with unanswered PDUs.
_NO_ANSWER = frozenset({"alert_notification"})
_MAY_BE_EMPTY = frozenset({"short_message"})  # sm_length 0: the text is in message_payload, or there is none
_LinkErrors = (smpplib.exceptions.ConnectionError, smpplib.exceptions.PDUError, OSError)
#: Submits left unanswered past response_timeout_s stay registered so that a late submit_sm_resp is still recorded
#: (its text reported, its receipts found): at most this many (the oldest dropped first) and for at most
#: LATE_WAIT_S seconds (or submit_timeout_s, if longer) each. A response after that finds no waiter and is
#: logged: the part stays in doubt. Without a bound an SMSC answering keepalives but not submits grew the node's
#: memory per text for the session's life (round 24 C-F6).
LATE_WAITERS_MAX = 1000
LATE_WAIT_S = 600.0

DeliverHandler = Callable[[Any], int]
ResponseHandler = Callable[[Any], None]


def _ignore(_response: Any) -> None:
    """A response needing no handling beyond being waited for."""


class LinkDown(Exception):
    """The PDU did not leave: there is no bound session, or writing it failed. Resubmitting is safe."""


class InDoubt(Exception):
    """The PDU was written but no response came (connection lost or timeout): the SMSC may have it."""

    def __init__(self, reason: str, waiter: _Waiter | None = None) -> None:
        super().__init__(reason)
        self._waiter = waiter  #: the request's, still registered after a timeout: a late response is still handled

    def late_response(self, timeout: float) -> Any | None:
        """The response that came after all, waiting up to ``timeout`` seconds for it on the live session; ``None``
        when none can come (the connection dropped), none came in time, or its handler failed."""
        waiter = self._waiter
        if waiter is None or not waiter.done.wait(timeout) or waiter.lost or waiter.failed:
            return None
        return waiter.response


class UnreadableDeliver(Exception):
    """Raised by a deliver handler for a deliver_sm or data_sm it cannot read (its argument: what failed, never the
    text): the link answers ESME_RX_P_APPN, so the SMSC gives it up instead of redelivering it until its validity
    ends."""


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


class MalformedPdu(smpplib.exceptions.PDUError):  # type: ignore[misc]
    """A PDU shorter than its header, longer than :data:`MAX_PDU`, or whose body does not parse: the byte stream
    can no longer be trusted, so the link drops the connection and rebinds."""


@dataclass(frozen=True, slots=True)
class UnknownPdu:
    """A well-framed PDU whose command_id this client does not know: answered generic_nack, the session goes on."""

    command_id: int
    sequence: int


class _Client(smpplib.client.Client):  # type: ignore[misc]
    """smpplib's client with thread-safe sequences and writes, no PDU dumps in the log, and a ``read_pdu`` that
    frames every PDU itself (smpplib's raises whatever its parser hit, unknown command ids included)."""

    state: int

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

    def read_pdu(self) -> Any:
        """The next PDU, or :class:`UnknownPdu`; :class:`MalformedPdu` when the framing or the body is broken."""
        (length,) = struct.unpack(">L", self._recv_exact(4))
        if not _HEADER <= length <= MAX_PDU:
            raise MalformedPdu(f"malformed PDU: command_length {length} (must be {_HEADER}..{MAX_PDU})")
        raw = struct.pack(">L", length) + self._recv_exact(length - 4)
        command_id, _status, sequence = struct.unpack(">LLL", raw[4:_HEADER])
        try:
            name = smpplib.command_codes.get_command_name(command_id)
            pdu = smpplib.smpp.parse_pdu(raw, client=self, allow_unknown_opt_params=True)
        except smpplib.exceptions.UnknownCommandError:  # unknown to SMPP 3.4, or to smpplib (e.g. outbind)
            if self.state == smpplib.consts.SMPP_CLIENT_STATE_OPEN:  # bind_transceiver reads its response
                raise MalformedPdu(f"command_id 0x{command_id:08X} instead of the bind response") from None
            return UnknownPdu(command_id, sequence)
        except Exception as exc:  # smpplib's parser raises struct.error, IndexError, ValueError...
            raise MalformedPdu(f"malformed {name} PDU: {type(exc).__name__}: {exc}") from exc
        if pdu.is_request():  # smpplib leaves the fields a cut-short body lacks as None
            missing = [f for f in pdu.params_order if f not in _MAY_BE_EMPTY and not pdu.field_is_optional(f)]
            missing = [f for f in missing if getattr(pdu, f, None) is None]
            if missing:
                raise MalformedPdu(f"malformed {name} PDU: the body ends before {missing[0]}")
        if not pdu.is_error() and pdu.command in smpplib.consts.STATE_SETTERS:
            self.state = smpplib.consts.STATE_SETTERS[pdu.command]
        return pdu


@dataclass(slots=True)
class _Waiter:
    command: str
    on_response: ResponseHandler
    sequence: int
    done: threading.Event = field(default_factory=threading.Event)
    response: Any = None
    lost: bool = False
    failed: str = ""  #: why ``on_response`` raised, if it did


class SmppLink:
    """A bound transceiver: ``submit`` from any thread; deliver_sm and data_sm PDUs go to ``on_deliver`` (in the
    link's thread), whose return value is the status of their response. A response is its request's only when
    both its sequence number and its command match (``<request>_resp``, or a generic_nack)."""

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
        #: sequence numbers of submits whose wait timed out, oldest first, with when (:attr:`_clock`); under
        #: ``_pending_lock``
        self._late: OrderedDict[int, float] = OrderedDict()
        self._clock: Callable[[], float] = time.monotonic
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

    def submit(self, on_response: ResponseHandler, *, wait_s: float | None = None, **params: Any) -> Any:
        """Send one submit_sm and return its submit_sm_resp (any status), waiting ``response_timeout_s`` for it or
        ``wait_s`` if less (what is left of the send's submit_timeout_s). ``on_response`` runs in the link's
        thread as the response arrives, before any later PDU is read (so a receipt never overtakes it). A
        generic_nack with its sequence number is its response too: the SMSC refused it with the nack's status
        (never 0). InDoubt when ``on_response`` raised: what the response said may not have been recorded."""
        waiter = self._request("submit_sm", on_response, **params)
        wait = self.config.response_timeout_s if wait_s is None else min(wait_s, self.config.response_timeout_s)
        if not waiter.done.wait(wait):
            # left registered a while: a late response is still recorded, so its receipt finds the message
            self._keep_late(waiter)
            raise InDoubt(f"no submit_sm_resp from {self.where} within {wait:g}s", waiter)
        if waiter.lost:
            raise InDoubt(f"the connection to {self.where} dropped before the submit_sm_resp")
        if waiter.failed:
            raise InDoubt(f"handling the {waiter.response.command} from {self.where} failed: {waiter.failed}")
        return waiter.response

    def enquire(self) -> float:
        """Send enquire_link on the bound session; the round trip in seconds. Raises LinkDown/InDoubt."""
        started = time.monotonic()
        waiter = self._request("enquire_link", _ignore)
        if not waiter.done.wait(self.config.response_timeout_s) or waiter.lost:
            with self._pending_lock:  # a late enquire_link_resp is of no use
                if self._pending.get(waiter.sequence) is waiter:
                    del self._pending[waiter.sequence]
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
        waiter = _Waiter(pdu.command, on_response, pdu.sequence)
        with self._pending_lock:
            self._pending[pdu.sequence] = waiter
        try:
            client.send_pdu(pdu)
        except _LinkErrors:
            with self._pending_lock:
                self._pending.pop(pdu.sequence, None)
            raise
        return waiter

    def _keep_late(self, waiter: _Waiter) -> None:
        """Keep a submit's waiter registered past its timeout, within :data:`LATE_WAITERS_MAX` and the late horizon."""
        with self._pending_lock:
            if self._pending.get(waiter.sequence) is waiter:
                self._late[waiter.sequence] = self._clock()
            self._expire_late()

    def _expire_late(self) -> None:
        """Unregister the waiters kept past their timeout beyond the bound or older than the horizon (under
        ``_pending_lock``). A sender still waiting on one gets no response: its part stays in doubt."""
        horizon = self._clock() - max(LATE_WAIT_S, self.config.submit_timeout_s)
        while self._late:
            sequence, since = next(iter(self._late.items()))
            if len(self._late) <= LATE_WAITERS_MAX and since > horizon:
                return
            del self._late[sequence]
            self._pending.pop(sequence, None)

    def _run(self) -> None:
        delay = self.config.reconnect_min_s
        while not self._stopping.is_set():
            try:
                client = self._bind()
            except Exception as exc:  # whatever the SMSC sent, the thread lives on and retries
                self.last_error = f"bind failed: {_reason(exc)}"
                event(self._log, "smpp.bind_failed", logging.WARNING, to=self.where, error=self.last_error,
                      retry_in_s=delay)  # fmt: skip
                self._stopping.wait(delay)
                delay = min(delay * 2, self.config.reconnect_max_s)
                continue
            delay = self.config.reconnect_min_s
            try:
                self._serve(client)
            except Exception as exc:  # a broken PDU or a bug in a handler: drop the connection and rebind
                self.last_error = f"connection lost: {_reason(exc)}"
                event(self._log, "smpp.link_lost", logging.WARNING, to=self.where, error=self.last_error)
            finally:
                self._drop(client)
            self._stopping.wait(delay)  # a peer that breaks every session is not rebound in a tight loop

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
                if isinstance(pdu, UnknownPdu):
                    self._unknown(client, pdu)
                elif pdu.command == "unbind_resp" or self._dispatch(client, pdu):
                    return
            elif keepalive is not None and not keepalive.done.is_set():
                if now - idle_since > self.config.enquire_link_s + self.config.response_timeout_s:
                    raise smpplib.exceptions.ConnectionError("no enquire_link_resp: the SMSC stopped answering")
            elif now - idle_since > self.config.enquire_link_s:
                keepalive = self._send_request(client, smpplib.smpp.make_pdu("enquire_link", client=client), _ignore)
            if self._late:
                with self._pending_lock:
                    self._expire_late()

    def _dispatch(self, client: _Client, pdu: Any) -> bool:
        """Act on one PDU; True when the SMSC ended the session."""
        if pdu.command in ("submit_sm_resp", "enquire_link_resp", "generic_nack"):
            with self._pending_lock:
                waiter = self._pending.get(pdu.sequence)
                if waiter is not None and pdu.command in (f"{waiter.command}_resp", "generic_nack"):
                    del self._pending[pdu.sequence]
                    self._late.pop(pdu.sequence, None)
                    other = None
                else:  # not an answer to the request of that number (round 24 C-F2): that one still waits
                    waiter, other = None, waiter
            if pdu.command == "generic_nack":
                self._nacked(pdu, waiter)
            if waiter is not None:
                self._answer(waiter, pdu)
            elif pdu.command != "generic_nack":
                event(self._log, "smpp.unmatched_response", logging.WARNING, to=self.where, command=pdu.command,
                      sequence=pdu.sequence, waiting=other.command if other else None)  # fmt: skip
        elif pdu.command in ("deliver_sm", "data_sm"):  # an MO or a receipt; SMPP 3.4 allows either
            status = self._deliver(pdu)
            self._respond(client, f"{pdu.command}_resp", pdu.sequence, status)
        elif pdu.command == "enquire_link":
            self._respond(client, "enquire_link_resp", pdu.sequence, ESME_ROK)
        elif pdu.command == "unbind":
            self._respond(client, "unbind_resp", pdu.sequence, ESME_ROK)
            self.last_error = "the SMSC unbound"
            event(self._log, "smpp.unbound_by_smsc", logging.WARNING, to=self.where)
            return True
        elif pdu.is_request() and pdu.command not in _NO_ANSWER:
            self._nack(client, pdu.sequence, pdu.command)
        else:
            event(self._log, "smpp.unhandled_pdu", logging.WARNING, command=pdu.command)
        return False

    def _nacked(self, pdu: Any, waiter: _Waiter | None) -> None:
        """A generic_nack (SMPP 3.4 §4.3): the refusal of the request whose sequence number it carries, the session
        goes on. Logged, also when no request of ours has that number (then nothing else happens)."""
        if not pdu.status:  # a broken peer's nack with status 0 must not read as ESME_ROK, an acceptance
            pdu.status = ESME_RUNKNOWNERR
        event(self._log, "smpp.generic_nack", logging.WARNING, to=self.where, sequence=pdu.sequence,
              command=waiter.command if waiter else None, status=status_text(pdu.status))  # fmt: skip

    def _answer(self, waiter: _Waiter, pdu: Any) -> None:
        """Hand a response to its waiter, whose sender is woken whatever its handler does; a handler that raises
        (a bug, a full disk) is logged and told to the sender, and the session goes on for every other request."""
        waiter.response = pdu
        try:
            waiter.on_response(pdu)
        except Exception as exc:
            waiter.failed = _reason(exc)
            event(self._log, "smpp.response_failed", logging.ERROR, to=self.where, command=pdu.command,
                  error=repr(exc))  # fmt: skip
        finally:
            waiter.done.set()

    def _unknown(self, client: _Client, pdu: UnknownPdu) -> None:
        if pdu.command_id & _RESPONSE_BIT:  # a response nobody waits for needs no answer
            event(self._log, "smpp.unhandled_pdu", logging.WARNING, command=f"0x{pdu.command_id:08X}")
        else:
            self._nack(client, pdu.sequence, f"0x{pdu.command_id:08X}")

    def _nack(self, client: _Client, sequence: int, command: str) -> None:
        """generic_nack ESME_RINVCMDID (SMPP 3.4 §4.3) for a request this link does not handle; the session goes on."""
        event(self._log, "smpp.unknown_command", logging.WARNING, to=self.where, command=command, sequence=sequence)
        self._respond(client, "generic_nack", sequence, ESME_RINVCMDID)

    def _deliver(self, pdu: Any) -> int:
        """The status answering a deliver_sm or data_sm: its handler's. One the handler cannot read is refused for
        good (ESME_RX_P_APPN): every redelivery would be the same. Any other failure (the store down, a full disk)
        is temporary (ESME_RX_T_APPN): the SMSC redelivers it later. The link stays up either way."""
        try:
            return self._on_deliver(pdu)
        except UnreadableDeliver as exc:
            event(self._log, "smpp.mo_unreadable", logging.WARNING, command=pdu.command, error=str(exc))
            return ESME_RX_P_APPN
        except Exception as exc:
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
            self._late.clear()
        for waiter in waiters:
            waiter.lost = True
            waiter.done.set()


def _reason(exc: BaseException) -> str:
    """An exception as a reason an operator can read: its type when smpplib gave no message."""
    text = str(exc)
    if isinstance(exc, _LinkErrors) and text:
        return text
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
