"""One AMI connection: the ``asterisk-ami`` package's client, extended with what a dialer needs.

``asterisk.ami`` gives the action model: :class:`Action` serialisation, a :class:`FutureResponse` per
ActionID and :class:`Response` parsing. Its :class:`AMIClient` is extended here where it falls short:

- timeouts: its socket timeout also bounds every read, so an idle connection dies after it; here connecting
  and the banner are timed, reads block, and the dialer proves the connection alive with timed Pings;
- sends are whole and serialised (``sendall`` under a lock: its ``send`` may write part of an action, and
  actions sent from several threads could interleave); a response callback that raises cannot kill the
  reader thread;
- a faster, bounded reader (:mod:`.framing`): messages are cut in linear time, up to a maximum size past which
  the connection is dropped, and an event is parsed only when a handler wants its name (its regex framing of a
  growing buffer tops out near 125k events/s and re-scans an unterminated message on every read);
- a broken connection fails the actions waiting for an answer at once, with its reason;
- handlers by event name, event lists (CoreShowChannels, QueueStatus) collected by ActionID, the
  server-side event filter (the Filter action), the actions the user may run (ListCommands);
- errors that say what is wrong: unreachable, not an AMI port, bad credentials, missing permissions.
"""

from __future__ import annotations

import itertools
import logging
import socket
import threading
import time
from collections.abc import Callable, Mapping
from contextlib import suppress
from itertools import repeat
from operator import methodcaller
from typing import Any

from asterisk.ami import AMIClient, FutureResponse, LoginAction, Response, SimpleAction

from cartera.plugin import CarteraError
from cartera.plugins.dialers.asterisk_ami.framing import MessageFramer, MessageTooLarge

log = logging.getLogger("cartera.plugin.asterisk_ami")

#: An AMI message: its ``Key: value`` lines (the first one included, e.g. ``Event``).
Message = dict[str, str]
EventHandler = Callable[[Message], None]

_CHUNK = 1 << 16
#: The most a list action's events may weigh (their text), complete or not: a CoreShowChannel is ~1 KB, so tens
#: of thousands of channels fit; a PBX sending more before the list's timeout cannot grow the node's memory further.
MAX_LIST_BYTES = 32 << 20
_SPLIT_FIELD = methodcaller("partition", ": ")


class AmiError(CarteraError):
    """Asterisk's manager interface cannot be used as configured; the message says why."""


class AmiUnreachable(AmiError):
    """Nothing answers at the configured host and port, or the connection broke."""


class AmiNotManager(AmiError):
    """Something answered that is not Asterisk's manager interface."""


class AmiLoginFailed(AmiError):
    """Asterisk refused the user or its secret."""


class AmiPermissionDenied(AmiError):
    """The AMI user may not run an action the dialer needs."""


class AmiTimeout(AmiError):
    """Asterisk did not answer in time."""


class AmiActionFailed(AmiError):
    """Asterisk answered an action with an error."""


def parse_fields(block: str) -> Message:
    """The ``Key: value`` lines of one message (without its terminating blank line)."""
    lines = block.split("\r\n")
    try:
        return dict(map(str.split, lines, repeat(": "), repeat(1)))
    except ValueError:  # a line without ": " (a value-less key, command output)
        fields: Message = {}
        for key, _, value in map(_SPLIT_FIELD, lines):
            fields[key] = value
        return fields


#: The most digits an AMI number the dialer reads may have (an attempt id fits in 19, a cause in 3).
AMI_INT_DIGITS = 20


def ami_int(value: str) -> int | None:
    """An AMI value read as a number: ``None`` unless it is 1 to :data:`AMI_INT_DIGITS` ASCII digits (a hostile
    PBX's ``²``, which :meth:`str.isdigit` accepts, or 5,000 digits, past ``int``'s limit, never raise)."""
    if 0 < len(value) <= AMI_INT_DIGITS and value.isascii() and value.isdigit():
        return int(value)
    return None


def _reason(exc: OSError) -> str:
    return exc.strerror or str(exc) or type(exc).__name__


class _EventList:
    """Events answering one list action (``CoreShowChannels``...), until its ``...Complete`` event; past
    ``max_bytes`` of them, none is kept and the list is given up (:attr:`overflowed`)."""

    def __init__(self, complete: str, max_bytes: int) -> None:
        self.complete = complete
        self.max_bytes = max_bytes
        self.events: list[Message] = []
        self.size = 0
        self.completed = False
        self.overflowed = False
        self.done = threading.Event()  # completed, overflowed, or the connection broke

    def add(self, name: str, event: Message, size: int) -> None:
        if name == self.complete:
            self.completed = True
            self.done.set()
        elif not self.overflowed:
            self.size += size
            if self.size > self.max_bytes:
                self.overflowed = True
                self.events = []
                self.done.set()
            else:
                self.events.append(event)


class _Future(FutureResponse):  # type: ignore[misc]
    """asterisk-ami's future for one response, its callback guarded (the original's error path crashes the
    reader thread), without the deprecated ``notifyAll``, and abandoned when the connection breaks."""

    _abandoned = False

    def get_response(self) -> Response | None:
        with self._lock:
            if self._response is None and not self._abandoned:
                self._lock.wait(self._timeout)
            return self._response

    def set_response(self, response: Response) -> None:
        if self._callback is not None:
            try:
                self._callback(response)
            except Exception:
                log.exception("AMI response callback failed")
        with self._lock:
            self._response = response
            self._lock.notify_all()

    response = property(get_response, set_response)

    def abandon(self) -> None:
        """No response will come (the connection broke): stop waiting for one."""
        with self._lock:
            self._abandoned = True
            self._lock.notify_all()


class AmiConnection(AMIClient):  # type: ignore[misc]  # asterisk-ami ships no type information
    """One TCP session with Asterisk's manager: ``connect``, ``login``, actions, events to ``handlers``.

    ``handlers`` maps event names to callables run on the reader thread (keep them short; they must not
    block); an event whose name has a ``needles`` entry reaches its handler only when its text contains it
    (events about other channels are then not even parsed). ``on_lost(reason)`` is called once when the
    connection breaks without :meth:`close`; :attr:`lost` then holds the reason. A message longer than
    ``max_message_bytes`` breaks it; a list action whose events pass ``max_list_bytes`` fails.
    """

    def __init__(
        self,
        host: str,
        port: int,
        *,
        handlers: Mapping[str, EventHandler],
        on_lost: Callable[[str], None],
        needles: Mapping[str, str] | None = None,
        connect_timeout: float = 5.0,
        action_timeout: float = 5.0,
        max_message_bytes: int = 1 << 20,
        max_list_bytes: int = MAX_LIST_BYTES,
    ) -> None:
        super().__init__(address=host, port=port, timeout=action_timeout)
        self.host, self.port = host, port
        self.banner = ""
        self.ami_version = ""
        self._connect_timeout = connect_timeout
        self._handlers = dict(handlers)
        self._needles = dict(needles or {})
        self._on_lost = on_lost
        self._lists: dict[str, _EventList] = {}
        self._max_list_bytes = max_list_bytes
        self._send_lock = threading.Lock()
        self._ids = itertools.count(1)
        self._closing = False
        self._framer = MessageFramer(self._dispatch, max_message_bytes, self.encoding, self.encoding_errors)
        self.lost: str | None = None

    @property
    def where(self) -> str:
        return f"{self.host}:{self.port}"

    def next_action_id(self) -> str:
        return f"cartera-{next(self._ids)}"

    # --- connecting ---------------------------------------------------------------------------------

    def connect(self) -> None:
        """Open the TCP session and read Asterisk's banner (``Asterisk Call Manager/<AMI version>``)."""
        try:
            sock = socket.create_connection((self.host, self.port), timeout=self._connect_timeout)
        except OSError as exc:
            raise AmiUnreachable(f"cannot reach Asterisk's AMI at {self.where}: {_reason(exc)}") from None
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
            pending = self._read_banner(sock)
            sock.settimeout(None)
        except BaseException:
            sock.close()
            raise
        self._socket = sock
        self.finished = threading.Event()
        self._thread = threading.Thread(target=self._read, args=(pending,), name="ami-reader", daemon=True)
        self._thread.start()

    def _read_banner(self, sock: socket.socket) -> bytes:
        data = b""
        deadline = time.monotonic() + self._connect_timeout
        while b"\r\n" not in data and len(data) < 1024:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AmiTimeout(f"{self.where} sent no AMI banner within {self._connect_timeout:g}s")
            sock.settimeout(remaining)
            try:
                chunk = sock.recv(1024)
            except TimeoutError:
                continue
            except OSError as exc:
                raise AmiUnreachable(f"AMI at {self.where}: {_reason(exc)}") from None
            if not chunk:
                raise AmiUnreachable(f"{self.where} closed the connection before its AMI banner")
            data += chunk
        line, _, rest = data.partition(b"\r\n")
        banner = line.decode("utf-8", "replace")
        match = AMIClient.asterisk_start_regex.match(banner)
        if match is None:
            raise AmiNotManager(f"{self.where} is not Asterisk's manager interface (it said {banner[:60]!r})")
        self.banner, self.ami_version = banner, match["version"]
        self._ami_version = self.ami_version
        return rest

    def login(self, username: str, secret: str) -> None:
        """Log in; :class:`AmiLoginFailed` names the user, never the secret."""
        response = self.send_action(LoginAction(username, secret)).response
        if response is None:
            self._raise_if_lost("Login")
            raise AmiTimeout(f"{self.where}: no answer to Login within {self._timeout:g}s")
        if response.is_error():
            message = response.keys.get("Message", "refused")
            raise AmiLoginFailed(
                f"Asterisk at {self.where} refused AMI user {username!r}: {message} "
                "(check its secret, and permit/deny for this host, in manager.conf)"
            )

    # --- actions ------------------------------------------------------------------------------------

    def send_action(
        self, action: Any, callback: Callable[[Response], None] | None = None, timeout: float | None = None
    ) -> FutureResponse:
        """Send ``action`` (its ActionID kept, or a new one); its response arrives on the future."""
        action_id = action.keys.setdefault("ActionID", self.next_action_id())
        future = _Future(callback, self._timeout if timeout is None else timeout)
        self._futures[action_id] = future
        if self.lost is not None:  # the reader has ended: nothing will answer
            future.abandon()
        try:
            self.send(action)
        except AmiError:
            self._futures.pop(action_id, None)
            raise
        return future

    def send(self, pack: Any) -> None:
        data = (str(pack) + "\r\n").encode(self.encoding)
        sock = self._socket
        if sock is None:
            raise AmiUnreachable(f"AMI at {self.where}: not connected")
        try:
            with self._send_lock:
                sock.sendall(data)
        except OSError as exc:
            raise AmiUnreachable(f"AMI at {self.where}: {_reason(exc)}") from None

    def action(self, name: str, *, timeout: float | None = None, **keys: str) -> Message:
        """Run one action and return its response's fields; raise when it fails or times out."""
        return self._answer(name, self.send_action(SimpleAction(name, **keys), timeout=timeout), timeout)

    def _answer(self, name: str, future: FutureResponse, timeout: float | None) -> Message:
        response = future.response
        if response is None:
            self._raise_if_lost(name)
            waited = self._timeout if timeout is None else timeout
            raise AmiTimeout(f"{name}: no response from Asterisk at {self.where} within {waited:g}s")
        if response.is_error():
            message = response.keys.get("Message", "")
            if message == "Permission denied":
                raise AmiPermissionDenied(f"{name}: permission denied to this AMI user at {self.where}")
            raise AmiActionFailed(f"{name} failed at {self.where}: {message or 'error'}")
        return dict(response.keys)

    def list_action(self, name: str, complete: str, **keys: str) -> list[Message]:
        """Run a list action and return the events it produced, up to its ``complete`` event."""
        action_id = self.next_action_id()
        collected = _EventList(complete, self._max_list_bytes)
        self._lists[action_id] = collected
        try:
            self._answer(name, self.send_action(SimpleAction(name, ActionID=action_id, **keys)), None)
            collected.done.wait(self._timeout)
            if collected.overflowed:
                raise AmiError(
                    f"{name}: the list from {self.where} passed {self._max_list_bytes} bytes before it completed: "
                    "given up"
                )
            if not collected.completed:
                self._raise_if_lost(name)
                raise AmiTimeout(f"{name}: the list from {self.where} did not complete within {self._timeout:g}s")
            return collected.events
        finally:
            self._lists.pop(action_id, None)

    def _raise_if_lost(self, name: str) -> None:
        if self.lost is not None:
            raise AmiUnreachable(f"{name}: the connection to Asterisk at {self.where} broke: {self.lost}")

    def allowed_actions(self) -> set[str]:
        """Actions this user may run (ListCommands lists only those)."""
        return {key for key in self.action("ListCommands") if key not in {"ActionID", "Response"}}

    def logoff(self) -> None:
        with suppress(AmiError):
            self.send_action(SimpleAction("Logoff"), timeout=1.0).response  # noqa: B018 - waits for Goodbye

    def close(self) -> None:
        """Close the session; ``on_lost`` is not called for it."""
        self._closing = True
        sock = self._socket
        if sock is not None:
            with suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(5)

    # --- reading ------------------------------------------------------------------------------------

    def _read(self, pending: bytes) -> None:
        reason = "Asterisk closed the connection"
        sock = self._socket
        try:
            self.feed(pending)
            while chunk := sock.recv(_CHUNK):
                self.feed(chunk)
        except OSError as exc:
            reason = _reason(exc)
        except MessageTooLarge as exc:
            reason = f"Asterisk sent {exc}; connection dropped"
            with suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
        finally:
            self.lost = reason
            self.finished.set()
            for future in list(self._futures.values()):
                future.abandon()
            for collected in list(self._lists.values()):
                collected.done.set()
        if not self._closing:
            self._on_lost(reason)

    def feed(self, data: bytes) -> None:
        """Dispatch every message ``data`` completes (the rest waits for the next read); raise
        :class:`MessageTooLarge` at a message longer than the limit."""
        self._framer.feed(data)

    def _dispatch(self, block: str) -> None:
        if block.startswith("Event: "):
            end = block.find("\r", 7)
            name = block[7:end] if end > 0 else block[7:]
            handler = self._handlers.get(name)
            if not self._lists:
                if handler is None:
                    return
                needle = self._needles.get(name)
                if needle is not None and needle not in block:
                    return
            event = parse_fields(block)
            collected = self._lists.get(event.get("ActionID", "")) if self._lists else None
            if collected is not None:
                collected.add(name, event, len(block))
            elif handler is not None:
                try:
                    handler(event)
                except Exception:
                    log.exception("handling AMI event %s failed", name)
        elif block.startswith("Response: "):
            self.fire_recv_reponse(Response.read(block))
        elif block.strip():
            log.debug("AMI at %s sent an unknown message: %.80r", self.where, block)
