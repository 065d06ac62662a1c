"""One SIP worker's share of the trunk: its transport and account in the process's engine, and its calls.

Every attempt goes: ``place_call`` (any thread) → INVITE (engine thread) → ring timeout or final answer; once
answered, a REFER to the queue URI, then a hangup when the queue took the call (the REFER's final NOTIFY), refused
it, or did not say within ``transfer_timeout_s``. The end (DISCONNECTED) is reported exactly once, from a
reporting thread so that a slow store never holds up SIP.
"""

from __future__ import annotations

import itertools
import logging
import re
import secrets
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from functools import partial

import pjsua2 as pj

from cartera.plugin import CallRequest, CarteraError, CheckResult, PluginContext, dial_string, event
from cartera.plugins.dialers.sip_trunk.calls import Attempt, CallEvent, StateChange, TransferNews, TrunkCall
from cartera.plugins.dialers.sip_trunk.config import CALLS_PER_ENGINE, SipTrunkConfig
from cartera.plugins.dialers.sip_trunk.engine import SipEngine
from cartera.plugins.dialers.sip_trunk.options import OptionsFailed, send_options

log = logging.getLogger("cartera.plugin.sip_trunk")

_E164 = re.compile(r"^\+?[0-9]{3,20}$")
_SOURCE_LOCATION = re.compile(r"[^\]]*\.cpp:\d+")  #: inside pjsua2's ``[file.cpp:line]``
_URI_PARTS = re.compile(r"^(sips?):(?:[^@]*@)?(.+)$")
#: How often the engine thread reads the registration state (a lost registration is logged).
REGISTRATION_POLL_S = 2.0
_POLL_S = 0.05
#: How long a call waits for a pjsua call slot (freed just after the previous call's end was reported) and for
#: sockets (see engine.MEDIA_CALL_BUDGET).
SLOT_WAIT_S = 5.0


class SipTrunkError(CarteraError):
    """The trunk cannot be used as configured; the message says why (never with the password)."""


class SipTrunk:
    """One Endpoint's share of a trunk (at most CALLS_PER_ENGINE calls): start, place calls, check, stop.
    Thread-safe; ``on_answer(request)`` is told of each answer (on the engine thread)."""

    def __init__(
        self,
        config: SipTrunkConfig,
        context: PluginContext,
        on_answer: Callable[[CallRequest], None] | None = None,
    ) -> None:
        self._config = config
        self._context = context
        self._on_answer = on_answer
        self._changed = threading.Condition()
        self._live: dict[str, Attempt] = {}
        self._placed: set[int] = set()
        self._tokens = itertools.count(1)
        self._prefix = secrets.token_hex(3)
        self._engine: SipEngine | None = None
        self._account: pj.Account | None = None
        self._transport: int | None = None
        self._local_port: int | None = None
        self._stopping = False
        self._reporter = ThreadPoolExecutor(1, thread_name_prefix="cartera-sip-report")

    @property
    def trunk(self) -> str:
        """Where requests go first: the outbound proxy, else the registrar, else the dial URI's host."""
        config = self._config
        if config.outbound_proxy or config.registrar:
            return config.outbound_proxy or config.registrar or ""
        scheme, host = _split(config.dial_uri)
        return f"{scheme}:{host}"

    # --- lifecycle ------------------------------------------------------------------------------------

    def start(self) -> None:
        engine = SipEngine.acquire()
        try:
            engine.run(partial(self._open, engine))
            if self._config.registrar is not None:
                registered, how = self._registration(engine, self._config.register_timeout_s)
                if not registered:
                    raise SipTrunkError(f"SIP account {self._config.account_uri}: {how}")
        except BaseException:
            engine.run(partial(self._close, engine))
            engine.release()
            raise
        self._engine = engine
        if self._config.registrar is not None:
            engine.post(partial(self._watch_registration, engine))
        event(log, "sip.trunk_started", trunk=self.trunk, account=self._config.account_uri, port=self.local_port)

    def stop(self) -> None:
        """Refuse new calls, hang up those in progress and return once every one was reported."""
        with self._changed:
            if self._stopping:
                return
            self._stopping = True
        engine = self._engine
        if engine is not None:
            engine.run(self._hang_up_all)
            with self._changed:
                self._changed.wait_for(lambda: not self._live, self._config.stop_timeout_s)
        for attempt in self._live_attempts():
            self._end(attempt, "the trunk did not confirm the end before the dialer stopped")
        if engine is not None:
            engine.run(partial(self._close, engine))
            self._engine = None
            engine.release()
        self._reporter.shutdown(wait=True)

    @property
    def local_port(self) -> int | None:
        """The UDP port SIP is bound to (known once started)."""
        return self._local_port

    # --- the dialer's contract ----------------------------------------------------------------------------

    def place_call(self, request: CallRequest) -> None:
        with self._changed:
            if request.attempt_id in self._placed:
                self._context.log.warning("attempt %s was already placed: not placed twice", request.attempt_id)
                return
            self._placed.add(request.attempt_id)
            token = f"{self._prefix}-{next(self._tokens)}"
            attempt = Attempt(request, token, started_at=self._context.clock.now())
            self._live[token] = attempt
            engine, stopping = self._engine, self._stopping
        if stopping or engine is None:
            self._end(attempt, "not placed: the dialer is stopping" if stopping else "not placed: not started")
        elif not _E164.match(request.phone):
            self._end(attempt, f"not placed: {request.phone!r} is not an E.164 number")
        else:
            engine.post(partial(self._dial, engine, attempt))

    def cancel(self, attempt_id: int) -> bool:
        """CANCEL the attempt's INVITE (or drop it before it is sent) unless it was answered: it then ends as
        cancelled. Decided on the engine thread, where answers arrive; ``False`` when not started or stopping."""
        engine = self._engine
        if engine is None or self._stopping:
            return False
        return engine.run(partial(self._cancel, engine, attempt_id))

    def check(self) -> CheckResult:
        config = self._config
        try:
            answer = send_options(self.trunk, local_address=config.local_address, timeout=config.check_timeout_s)
        except OptionsFailed as exc:
            return CheckResult(False, str(exc))
        reached = f"{self.trunk} answers OPTIONS: {answer.status} {answer.reason} in {answer.took_ms:.0f} ms"
        if answer.status >= 500:
            return CheckResult(False, reached)
        if config.registrar is None:
            return CheckResult(True, f"IP-authenticated trunk; {reached}")
        engine = self._engine
        if engine is None:
            return CheckResult(False, f"{reached}; the dialer is not started")
        registered, how = self._registration(engine, config.check_timeout_s)
        return CheckResult(registered, f"{reached}; {how}")

    # --- engine thread ------------------------------------------------------------------------------------

    def _open(self, engine: SipEngine) -> None:
        config = self._config
        assert engine.endpoint is not None
        engine.set_codecs(config.codecs)
        transport = pj.TransportConfig()
        transport.boundAddress = config.local_address
        transport.port = config.local_port
        try:
            self._transport = engine.endpoint.transportCreate(pj.TransportType.UDP, transport)
        except Exception as exc:
            where = f"{config.local_address}:{config.local_port}"
            raise SipTrunkError(f"cannot open SIP (UDP) on {where}: {_pj_reason(exc)}") from None
        self._local_port = int(engine.endpoint.transportGetInfo(self._transport).localName.rsplit(":", 1)[-1])
        account = pj.Account()  # the plain C++ class: its callbacks (under pjsua's lock) never need the GIL
        try:
            account.create(self._account_config())
        except Exception as exc:
            raise SipTrunkError(f"SIP account {config.account_uri} refused by pjsua: {_pj_reason(exc)}") from None
        self._account = account

    def _account_config(self) -> pj.AccountConfig:
        config = self._config
        account = pj.AccountConfig()
        account.idUri = config.account_uri
        account.sipConfig.transportId = -1 if self._transport is None else self._transport
        if config.outbound_proxy:
            proxy = config.outbound_proxy if ";lr" in config.outbound_proxy else f"{config.outbound_proxy};lr"
            account.sipConfig.proxies.append(proxy)
        if config.username is not None and config.password is not None:
            secret = config.password.get_secret_value()
            account.sipConfig.authCreds.append(pj.AuthCredInfo("digest", config.realm, config.username, 0, secret))
        if config.registrar is not None:
            account.regConfig.registrarUri = config.registrar
            account.regConfig.timeoutSec = config.register_expires_s
            account.regConfig.registerOnAdd = True
        return account

    def _close(self, engine: SipEngine) -> None:
        account, self._account = self._account, None
        if account is not None:
            account.shutdown()
        transport, self._transport = self._transport, None
        if transport is not None and engine.endpoint is not None:
            engine.endpoint.transportClose(transport)

    def _registration_state(self) -> tuple[bool | None, str]:
        """(registered, how), ``registered`` being ``None`` while a REGISTER is pending (engine thread)."""
        account, registrar = self._account, self._config.registrar
        if account is None:
            return False, "no SIP account"
        info = account.info
        status = int(info.regStatus)
        registered: bool | None = None
        if status < 200:
            text = f"registration at {registrar} pending"
        elif info.regIsActive and status < 300:
            registered = True
            text = f"registered at {registrar} ({status} {info.regStatusText}, {info.regExpiresSec}s left)"
        else:
            registered, text = False, f"registration at {registrar} refused: {status} {info.regStatusText}"
        return registered, text

    def _registration(self, engine: SipEngine, timeout: float) -> tuple[bool, str]:
        """The registration's state, waiting up to ``timeout`` seconds while a REGISTER is pending."""
        registered, text = engine.run(self._registration_state)
        deadline = time.monotonic() + timeout
        while registered is None and time.monotonic() < deadline:
            time.sleep(_POLL_S)
            registered, text = engine.run(self._registration_state)
        if registered is None:
            return False, f"{text}: no answer within {timeout:g}s"
        return registered, text

    def _watch_registration(self, engine: SipEngine, was_registered: bool = True) -> None:
        """Log when the registration is lost or back (engine thread, every REGISTRATION_POLL_S)."""
        if self._account is None:
            return
        registered, text = self._registration_state()
        if registered is not None and registered != was_registered:
            level = logging.INFO if registered else logging.WARNING
            event(log, "sip.registration", level, account=self._config.account_uri, state=text)
            was_registered = registered
        engine.call_later(REGISTRATION_POLL_S, partial(self._watch_registration, engine, was_registered))

    def _dial(self, engine: SipEngine, attempt: Attempt) -> None:
        if self._stopping or self._account is None:
            self._end(attempt, "not placed: the dialer is stopping")
            return
        if attempt.cancelled:
            self._end(attempt, "not dialled")
            return
        config, request = self._config, attempt.request
        call = TrunkCall(self._account, attempt.token, partial(self._deliver, engine), engine.forget)
        options = pj.CallOpParam(True)
        if config.attempt_header:
            header = pj.SipHeader()
            header.hName, header.hValue = config.attempt_header, str(request.attempt_id)
            options.txOption.headers.append(header)
        caller_id = request.caller_id or config.caller_id
        if caller_id and re.fullmatch(r"\+?[0-9A-Za-z._-]+", caller_id):
            scheme, host = _split(config.account_uri)
            options.txOption.localUri = f"<{scheme}:{caller_id}@{host}>"
        uri = dial_string(config.dial_uri, request.phone)
        busy = engine.call_count() >= CALLS_PER_ENGINE or not engine.media_room()
        if busy and time.monotonic() - attempt.placed_at < SLOT_WAIT_S:
            # the last call's slot is freed just after its DISCONNECTED callback (which reported it); its
            # sockets, half a second later
            engine.call_later(_POLL_S / 50, partial(self._dial, engine, attempt))
            return
        engine.adopt(call)
        try:
            call.makeCall(uri, options)
        except Exception as exc:
            engine.forget(call)
            self._end(attempt, f"not placed: pjsua refused the call to {uri}: {_pj_reason(exc)}")
            return
        attempt.call_id = call.id
        engine.call_later(config.ring_timeout_s, partial(self._ring_timeout, engine, attempt))

    def _deliver(self, engine: SipEngine, news: CallEvent) -> None:
        """On pjsip's worker thread: hand the snapshot to the engine thread."""
        engine.post(partial(self._on_event, engine, news))

    def _on_event(self, engine: SipEngine, news: CallEvent) -> None:
        attempt = self._live.get(news.token)
        if attempt is None:
            return
        if isinstance(news, StateChange):
            attempt.sip_call_id = news.sip_call_id or attempt.sip_call_id
            if news.state == "CONFIRMED" and attempt.cancelled:
                attempt.notes.append("the debtor answered as it was cancelled: hung up")
                engine.hangup(attempt.call_id)
            elif news.state == "CONFIRMED" and not attempt.answered:
                attempt.answered_at = self._context.clock.now()
                attempt.status, attempt.reason = news.status, news.reason
                if self._on_answer is not None:
                    self._on_answer(attempt.request)
                self._transfer(engine, attempt)
            elif news.state == "DISCONNECTED":
                if not attempt.answered:
                    attempt.status, attempt.reason = news.status, news.reason
                self._end(attempt)
        elif isinstance(news, TransferNews):
            self._on_transfer(engine, attempt, news)

    def _transfer(self, engine: SipEngine, attempt: Attempt) -> None:
        if self._stopping:
            return
        queue = self._config.queue_uri
        status = engine.refer(attempt.call_id, queue)
        if status != 0:
            attempt.notes.append(f"REFER to {queue} not sent (pjsua status {status})")
            engine.hangup(attempt.call_id)
            return
        engine.call_later(self._config.transfer_timeout_s, partial(self._transfer_timeout, engine, attempt))

    def _on_transfer(self, engine: SipEngine, attempt: Attempt, news: TransferNews) -> None:
        queue = self._config.queue_uri
        if not news.notify:
            if attempt.referred:
                return
            attempt.referred = True
            attempt.notes.append(f"REFER {queue}: {news.status} {news.reason}".rstrip())
            if news.status >= 300:
                engine.hangup(attempt.call_id)
        elif news.status >= 200:
            attempt.transferred = news.status < 300
            verdict = "taken by the queue" if attempt.transferred else "the queue did not take it"
            attempt.notes.append(f"transfer {news.status} {news.reason}: {verdict}".replace("  ", " "))
            engine.hangup(attempt.call_id)

    def _cancel(self, engine: SipEngine, attempt_id: int) -> bool:
        """Cancel the live, unanswered attempt (engine thread); a call not dialled yet is dropped by ``_dial``."""
        found = [attempt for attempt in self._live_attempts() if attempt.request.attempt_id == attempt_id]
        if not found or found[0].answered or found[0].ring_timed_out or self._stopping:
            return False
        attempt = found[0]
        if not attempt.cancelled:
            attempt.cancelled = True
            attempt.notes.append("cancelled by the dialer before the answer")
            if attempt.call_id >= 0:
                engine.hangup(attempt.call_id)
        return True

    def _ring_timeout(self, engine: SipEngine, attempt: Attempt) -> None:
        if self._live.get(attempt.token) is attempt and not attempt.answered and not attempt.cancelled:
            attempt.ring_timed_out = True
            attempt.notes.append(f"cancelled after ringing {self._config.ring_timeout_s:g}s")
            engine.hangup(attempt.call_id)

    def _transfer_timeout(self, engine: SipEngine, attempt: Attempt) -> None:
        if self._live.get(attempt.token) is attempt and not attempt.transferred:
            attempt.notes.append(f"no transfer result within {self._config.transfer_timeout_s:g}s: hung up")
            engine.hangup(attempt.call_id)

    def _hang_up_all(self) -> None:
        engine = self._engine
        for attempt in self._live_attempts():
            if attempt.call_id >= 0 and engine is not None:
                attempt.notes.append("hung up by the dialer at stop")
                engine.hangup(attempt.call_id)

    # --- ending and reporting ------------------------------------------------------------------------------

    def _live_attempts(self) -> list[Attempt]:
        with self._changed:
            return list(self._live.values())

    def _end(self, attempt: Attempt, note: str = "") -> None:
        """The attempt is over: report it, once."""
        with self._changed:
            if self._live.get(attempt.token) is not attempt:
                return
            del self._live[attempt.token]
            attempt.ended_at = self._context.clock.now()
            if note:
                attempt.notes.append(note)
            self._changed.notify_all()
            try:
                self._reporter.submit(self._report, attempt)
                return
            except RuntimeError:  # the reporter is shut down: report here
                pass
        self._report(attempt)

    def _report(self, attempt: Attempt) -> None:
        result = attempt.result()
        try:
            self._context.report_call(result)
        except Exception:
            self._context.log.exception("attempt %s: reporting the call failed", attempt.request.attempt_id)
        event(
            log,
            "sip.call_ended",
            attempt=result.attempt_id,
            outcome=result.outcome.value,
            cause=result.raw_cause,
            call_id=result.vendor_call_id,
        )


def _split(uri: str) -> tuple[str, str]:
    """A SIP URI's scheme and host part (after any user@)."""
    match = _URI_PARTS.match(uri)
    if match is None:
        raise ValueError(f"not a SIP URI: {uri!r}")
    return match.group(1), match.group(2)


def _pj_reason(exc: Exception) -> str:
    """pjsua2's error text without the source location it appends (`` [file.cpp:line]`` at its end). Read from
    the last ``[`` with no ``]`` after it but the closing one, not by a search trying every blank and every
    ``[`` (quadratic over a long text)."""
    text = str(exc)
    trimmed = text.rstrip()
    if not trimmed.endswith("]"):
        return text
    start = trimmed.find("[", trimmed.rfind("]", 0, -1) + 1)
    if start < 0 or not _SOURCE_LOCATION.fullmatch(trimmed, start + 1, len(trimmed) - 1):
        return text
    return trimmed[:start].rstrip()
