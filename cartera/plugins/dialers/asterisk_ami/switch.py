"""The dialer's engine: one AMI connection kept alive, calls originated and followed, capacity paced.

Threads: callers of :meth:`AsteriskSwitch.place_call`; the AMI reader (events → :class:`CallTracker` and the
:class:`AgentPool`); the supervisor (connects, reconnects with backoff, resynchronises live calls, Pings,
refreshes the queue, gives up calls Asterisk never reported); a small pool that reports each ended call, and
another that then waits for its recording and reports it (a PBX slow to write recordings, or writing none, never
holds back the calls' ends); one that reports each call's connection to an agent (the node's screen pop may take
its time, never the reader's); the spool's watcher, which reports the finished recordings no call reports
(:mod:`.spool`). Stopping is bounded by ``stop_timeout_s``: the calls' ends and recordings get that long to be
reported, then the waits for recordings still missing are cut short.

An Originate is sent once, from :meth:`place_call`, and never again: after a reconnection the calls are
found among Asterisk's channels (CoreShowChannels) by the UNIQUEID we gave them, or reported ended.
"""

from __future__ import annotations

import logging
import random
import re
import secrets
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import wait as wait_for_all
from dataclasses import dataclass
from datetime import datetime
from functools import partial

from asterisk.ami import Response, SimpleAction

from cartera.plugin import (
    AgentConnected,
    CallRequest,
    CheckResult,
    PluginContext,
    UnfinishedCall,
    UnknownAgent,
    dial_slots,
    dial_string,
    event,
)
from cartera.plugins.dialers.asterisk_ami.agents import MEMBER_EVENTS, MEMBER_REMOVED, AgentPool
from cartera.plugins.dialers.asterisk_ami.calls import CALL_EVENTS, Call, CallTracker
from cartera.plugins.dialers.asterisk_ami.client import (
    AmiConnection,
    AmiError,
    AmiPermissionDenied,
    AmiTimeout,
    EventHandler,
    Message,
    ami_int,
)
from cartera.plugins.dialers.asterisk_ami.config import AsteriskAmiConfig
from cartera.plugins.dialers.asterisk_ami.recordings import recording_of, wait_until_finished
from cartera.plugins.dialers.asterisk_ami.spool import TOKEN_BYTES, SpoolWatcher

log = logging.getLogger("cartera.plugin.asterisk_ami")

#: Actions the dialer runs, with the manager.conf ``write`` privilege that grants each.
REQUIRED_ACTIONS: dict[str, str] = {
    "Originate": "originate",
    "Hangup": "call",
    "CoreShowChannels": "reporting",
    "CoreSettings": "reporting",
    "CoreStatus": "reporting",
}
#: Actions any AMI user may run, with the module that provides each: missing, the module is not loaded.
MODULE_ACTIONS: dict[str, str] = {"QueueStatus": "app_queue"}
#: Server-side filter (the Filter action, needs ``write = system``): only the events the dialer reads.
EVENT_FILTER = (
    "^Event: (Newchannel|Newstate|DialEnd|Hangup|OriginateResponse|AgentConnect|UserEvent"
    "|QueueMember(Status|Pause|Added|Removed)|Shutdown)[[:space:]]"
)
#: After a failed OriginateResponse, how long to wait for the channel's own events (they travel separately).
ORIGINATE_FAILURE_GRACE_S = 2.0
#: The raw cause of a call a killed node left in flight whose channel Asterisk no longer carries.
CHANNEL_GONE = "channel gone when the node restarted; AMI cannot tell its end"
#: Beyond its ring timeout, how long a call may go without Asterisk reporting its channel.
UNSEEN_GRACE_S = 15.0
QUEUE_REFRESH_S = 60.0
_FIRST_RETRY_S = 0.5
_TICK_S = 0.25
_CHANNEL_ID_CHARS = re.compile(r"[^A-Za-z0-9_-]")
_E164 = re.compile(r"^\+?[0-9]{3,20}$")
_VARIABLE_NAME = re.compile(r"^CARTERA_[A-Z0-9_]+$")


def channel_prefix(site: str) -> str:
    """How the UNIQUEIDs of a site's calls begin: ``cartera-<site>``."""
    return f"cartera-{_CHANNEL_ID_CHARS.sub('_', site)}"


def event_needles(prefix: str, queue: str) -> dict[str, str]:
    """Only events naming one of our channels (or our queue) are parsed and handed over."""
    return {
        **dict.fromkeys(CALL_EVENTS, f"Uniqueid: {prefix}-"),
        "OriginateResponse": f"ActionID: {prefix}-",  # a failed one may name no channel ("Uniqueid: <unknown>")
        **dict.fromkeys((*MEMBER_EVENTS, MEMBER_REMOVED), f"Queue: {queue}"),
    }


@dataclass(frozen=True)
class Session:
    """What one login learnt."""

    connection: AmiConnection
    version: str
    startup: str
    filtered: bool


class AsteriskSwitch:
    """Calls through one Asterisk over one AMI connection; thread-safe."""

    def __init__(self, config: AsteriskAmiConfig, context: PluginContext) -> None:
        self._config = config
        self._context = context
        self._lock = threading.Lock()
        self._agents = AgentPool(config.queue)
        self._calls = CallTracker(
            context.clock, on_end=self._ended, hang_up=self._send_hangup, on_connect=self._connected
        )
        self._handlers: dict[str, EventHandler] = {
            **self._calls.handlers,
            **dict.fromkeys(MEMBER_EVENTS, self._member_event),
            MEMBER_REMOVED: self._member_removed,
            "Shutdown": self._shutdown_event,
        }
        self._prefix = channel_prefix(context.site)
        self._spool = SpoolWatcher(config, context, self._prefix)
        self._uniqueid = re.compile(rf"{re.escape(self._prefix)}-([0-9]+)-[0-9a-f]+")  # group 1: the attempt
        self._needles = event_needles(self._prefix, config.queue)
        self._session: Session | None = None
        self._startup: str | None = None
        self._problem = "not started"
        self._stopping = False
        self._stopped = False
        self._halt = threading.Event()
        self._wake = threading.Event()
        self._finisher = ThreadPoolExecutor(max_workers=4, thread_name_prefix="asterisk-call-end")
        self._recorder = ThreadPoolExecutor(max_workers=4, thread_name_prefix="asterisk-recording")
        self._finisher_open = True  #: both pools take work (else it runs on the caller's thread)
        self._finishing: set[Future[None]] = set()  #: the pools' reports not done yet
        self._cut_short = threading.Event()  #: set once stop's time is up: the recording waits end at once
        self._connector = ThreadPoolExecutor(max_workers=1, thread_name_prefix="asterisk-agent-connect")
        self._supervisor = threading.Thread(target=self._supervise, name="asterisk-supervisor", daemon=True)
        self._token = secrets.token_hex(TOKEN_BYTES)  # keeps UNIQUEIDs (and recording names) unique across runs
        self._next_ping = 0.0
        self._next_refresh = 0.0

    @property
    def where(self) -> str:
        return f"{self._config.host}:{self._config.port}"

    # --- lifecycle ------------------------------------------------------------------------------------

    def start(self) -> None:
        """Log in (raising a clear :class:`AmiError` when that fails), then keep the connection alive."""
        self._open()
        self._spool.start()
        self._supervisor.start()

    def stop(self) -> None:
        """Refuse new calls, hang up those in progress and return once every one was reported: within about
        ``stop_timeout_s`` (the recordings still missing then are not waited for)."""
        with self._lock:
            if self._stopping:
                return
            self._stopping = True
        deadline = time.monotonic() + self._config.stop_timeout_s
        for call in self._calls.live():
            call.hang_up = True
            call.note("hung up by the dialer at stop")
            self._send_hangup(call)
        if not self._calls.wait_until_idle(self._config.stop_timeout_s):
            for call in self._calls.live():
                self._calls.end(call, note="Asterisk did not report the end before the dialer stopped")
        self._halt.set()
        self._wake.set()
        if self._supervisor.is_alive():
            self._supervisor.join()
        with self._lock:
            self._finisher_open = False
            session, self._session = self._session, None
            self._problem = "stopped"
            finishing = set(self._finishing)
        wait_for_all(finishing, timeout=max(0.0, deadline - time.monotonic()))
        self._cut_short.set()
        self._finisher.shutdown(wait=True)
        self._recorder.shutdown(wait=True)
        self._connector.shutdown(wait=True)
        self._spool.stop()
        if session is not None:
            session.connection.logoff()
            session.connection.close()
        self._stopped = True

    @property
    def stopped(self) -> bool:
        return self._stopped

    # --- the dialer's contract ----------------------------------------------------------------------------

    def capacity(self) -> int:
        """Available agents times the dial ratio, minus calls in flight; 0 while AMI is down or stopping."""
        with self._lock:
            if self._session is None or self._stopping:
                return 0
            slots = dial_slots(self._agents.available, self._config.dial_ratio)
        return max(0, slots - self._calls.in_flight)

    def place_call(self, request: CallRequest) -> None:
        call = self._calls.admit(request, f"{self._prefix}-{request.attempt_id}-{self._token}")
        if call is None:
            self._context.log.warning("attempt %s was already placed: not placed twice", request.attempt_id)
            return
        self._spool.call_started(self._spool.recording_path(call.uniqueid))
        with self._lock:
            session, stopping, problem = self._session, self._stopping, self._problem
        if stopping:
            self._calls.end(call, note="not placed: the dialer is stopping")
        elif session is None:
            self._calls.end(call, note=f"not placed: no AMI connection to {self.where} ({problem})")
        elif not _E164.match(request.phone):
            self._calls.end(call, note=f"not placed: {request.phone!r} is not an E.164 number")
        elif request.agent is not None and not self._serves(request.agent):
            self._calls.end(call, note=f"not placed: queue {self._config.queue!r} has no member {request.agent!r}")
        else:
            try:
                session.connection.send_action(self._originate(call), callback=partial(self._originate_answer, call))
            except AmiError as exc:
                # It may have reached Asterisk: never sent again; the resynchronisation settles the call.
                self._context.log.warning("attempt %s: Originate send failed: %s", request.attempt_id, exc)

    def _serves(self, agent: str) -> bool:
        with self._lock:
            return agent in self._agents

    def cancel(self, attempt_id: int) -> bool:
        """Hang up the attempt's channel while it is not answered: at once when Asterisk has reported it, else
        as soon as it does (Newchannel); it then ends as cancelled."""
        call = self._calls.cancel(attempt_id)
        if call is None:
            return False
        self._send_hangup(call)
        return True

    def set_paused(self, agent: str, paused: bool, reason: str = "") -> None:
        """QueuePause the member whose interface is ``agent`` in our queue (AMI ``write = agent``); capacity counts
        the change at once, the QueueMemberPause event confirms it."""
        with self._lock:
            session, problem, known = self._session, self._problem, agent in self._agents
        if not known:
            raise UnknownAgent(f"queue {self._config.queue!r} at {self.where} has no member {agent!r}")
        if session is None:
            raise AmiError(f"no AMI connection to {self.where} to pause or resume {agent!r}: {problem}")
        session.connection.action(
            "QueuePause",
            Queue=self._config.queue,
            Interface=agent,
            Paused="true" if paused else "false",
            Reason=_one_line(reason),
        )
        with self._lock:
            if agent in self._agents:
                self._agents.pause(agent, paused=paused)
        event(log, "asterisk.agent_paused" if paused else "asterisk.agent_resumed", agent=agent, reason=reason)

    def reconcile(self, calls: Sequence[UnfinishedCall]) -> None:
        """Follow to their end the calls of a killed run whose channel Asterisk still carries (found by the
        UNIQUEID prefix of their attempt, whatever that run's token). The others ended while no node watched, and
        AMI cannot say how (CDR and CEL go to Asterisk's backends, not to AMI queries): they end UNKNOWN."""
        with self._lock:
            session, problem = self._session, self._problem
        if session is None:
            raise AmiError(f"no AMI connection to {self.where} to reconcile the calls of a killed run: {problem}")
        alive = self._channels_by_attempt(session)
        adopted: list[tuple[Call, UnfinishedCall]] = []
        for unfinished in calls:
            channel = alive.get(unfinished.request.attempt_id)
            if channel is None:
                self._spool.left_by_a_killed_run(unfinished.request.attempt_id, unfinished.requested_at)
                self._context.report_call(unfinished.unknown(CHANNEL_GONE))
            elif call := self._calls.adopt(unfinished.request, channel, unfinished.requested_at):
                self._spool.call_started(self._spool.recording_path(call.uniqueid))
                adopted.append((call, unfinished))
        still = self._channels_by_attempt(session) if adopted else {}
        missed = [  # hung up between the listing and the adoption: that Hangup went unseen
            (call, unfinished)
            for call, unfinished in adopted
            if unfinished.request.attempt_id not in still and self._calls.forget(call)
        ]
        for call, unfinished in missed:
            self._spool.call_ended(self._spool.recording_path(call.uniqueid), call.request.attempt_id, reported=False)
            self._context.report_call(unfinished.unknown(CHANNEL_GONE))
        followed = len(adopted) - len(missed)
        event(log, "asterisk.reconciled", followed=followed, unknown=len(calls) - followed)

    def _channels_by_attempt(self, session: Session) -> dict[int, Message]:
        """The channels of this site's calls Asterisk carries now, by attempt (a UNIQUEID whose attempt is no
        number we could have given is not ours)."""
        channels = session.connection.list_action("CoreShowChannels", "CoreShowChannelsComplete")
        found: dict[int, Message] = {}
        for channel in channels:
            match = self._uniqueid.fullmatch(channel.get("Uniqueid", ""))
            attempt = ami_int(match[1]) if match else None
            if attempt is not None:
                found[attempt] = channel
        return found

    def check(self) -> CheckResult:
        with self._lock:
            session, problem = self._session, self._problem
            available, members = self._agents.available, self._agents.members
        if session is None:
            return CheckResult(False, f"no AMI connection to {self.where}: {problem}")
        try:
            session.connection.action("Ping", timeout=self._config.ping_timeout_s)
        except AmiError as exc:
            return CheckResult(False, str(exc))
        config = self._config
        return CheckResult(
            True,
            f"Asterisk {session.version} (AMI {session.connection.ami_version}) at {self.where} as "
            f"{config.username!r}; queue {config.queue!r}: {available} of {members} agents available, "
            f"dial ratio {config.dial_ratio:g}"
            + ("" if session.filtered else "; events filtered here only (no 'system' write for Filter)"),
        )

    # --- connecting -------------------------------------------------------------------------------------

    def _open(self) -> None:
        config = self._config

        def lost(reason: str) -> None:
            self._lose(connection, reason)

        connection = AmiConnection(
            config.host,
            config.port,
            handlers=self._handlers,
            on_lost=lost,
            needles=self._needles,
            connect_timeout=config.connect_timeout_s,
            action_timeout=config.action_timeout_s,
            max_message_bytes=config.max_message_bytes,
        )
        try:
            connection.connect()
            connection.login(config.username, config.secret.get_secret_value())
            session, members, channels = self._prepare(connection)
        except BaseException:
            connection.close()
            raise
        restarted = self._startup is not None and session.startup != self._startup
        with self._lock:
            self._agents.reset(members)
            self._session, self._startup, self._problem = session, session.startup, ""
            available = self._agents.available
        self._next_ping = time.monotonic() + config.ping_interval_s
        self._next_refresh = time.monotonic() + QUEUE_REFRESH_S
        self._resync(channels, restarted)
        event(
            log,
            "asterisk.connected",
            at=self.where,
            version=session.version,
            agents=available,
            restarted=restarted,
            in_flight=self._calls.in_flight,
        )

    def _prepare(self, connection: AmiConnection) -> tuple[Session, list[Message], list[Message]]:
        config = self._config
        allowed = connection.allowed_actions()
        unloaded = sorted(set(MODULE_ACTIONS) - allowed)
        if unloaded:
            modules = ", ".join(sorted({MODULE_ACTIONS[name] for name in unloaded}))
            raise AmiError(
                f"Asterisk at {self.where} has no {', '.join(unloaded)} action: {modules} is not loaded "
                "(load it in modules.conf)"
            )
        missing = sorted(set(REQUIRED_ACTIONS) - allowed)
        if missing:
            grants = sorted({REQUIRED_ACTIONS[name] for name in missing})
            raise AmiPermissionDenied(
                f"AMI user {config.username!r} at {self.where} may not run {', '.join(missing)}: "
                f"add {','.join(grants)} to its write = ... in manager.conf (and read = call,agent)"
            )
        version = connection.action("CoreSettings").get("AsteriskVersion", "unknown")
        status = connection.action("CoreStatus")
        startup = f"{status.get('CoreStartupDate', '')} {status.get('CoreStartupTime', '')}"
        filtered = "Filter" in allowed
        if filtered:
            connection.action("Filter", Operation="Add", Filter=EVENT_FILTER)
        members = connection.list_action("QueueStatus", "QueueStatusComplete", Queue=config.queue)
        if not any(item.get("Event") == "QueueParams" and item.get("Queue") == config.queue for item in members):
            raise AmiError(f"Asterisk at {self.where} has no queue {config.queue!r} (queues.conf)")
        channels = connection.list_action("CoreShowChannels", "CoreShowChannelsComplete")
        return Session(connection, version, startup, filtered), members, channels

    def _resync(self, channels: list[Message], restarted: bool) -> None:
        """After a (re)connection: follow the calls whose channel is alive, end those whose channel is gone."""
        alive = {channel.get("Uniqueid", ""): channel for channel in channels}
        for call in self._calls.live():
            channel = alive.get(call.uniqueid)
            if channel is not None:
                self._calls.resume(call, channel)
                if call.hang_up:  # asked while the connection was down: the Hangup was not sent
                    self._send_hangup(call)
            elif restarted:
                self._calls.end(call, note="Asterisk restarted during the call")
            elif call.seen:
                self._calls.end(call, note="ended while the AMI connection was down")
            # else: its channel may not exist yet; the supervisor gives it until its deadline

    def _lose(self, connection: AmiConnection, reason: str) -> None:
        with self._lock:
            session = self._session
            if session is None or session.connection is not connection:
                return
            self._session = None
            self._problem = f"connection lost: {reason}"
        connection.close()
        event(
            log, "asterisk.disconnected", logging.WARNING, at=self.where, reason=reason, in_flight=self._calls.in_flight
        )
        self._wake.set()

    # --- supervisor ---------------------------------------------------------------------------------------

    def _supervise(self) -> None:
        retry = _FIRST_RETRY_S
        while not self._halt.is_set():
            with self._lock:
                session = self._session
            if session is None:
                try:
                    self._open()
                except AmiError as exc:
                    with self._lock:
                        self._problem = str(exc)
                    wait = retry * random.uniform(0.8, 1.2)
                    event(log, "asterisk.reconnect_failed", logging.WARNING, error=str(exc), retry_in_s=round(wait, 2))
                    self._halt.wait(wait)
                    retry = min(retry * 2, self._config.reconnect_max_s)
                    continue
                retry = _FIRST_RETRY_S
                continue
            self._watch(session)
            self._wake.wait(_TICK_S)
            self._wake.clear()

    def _watch(self, session: Session) -> None:
        now = time.monotonic()
        for call in self._calls.live():
            if call.seen:
                continue
            if call.originate_failed_at is not None and now - call.originate_failed_at >= ORIGINATE_FAILURE_GRACE_S:
                self._calls.end(call)
            elif now - call.placed_at >= self._config.ring_timeout_s + UNSEEN_GRACE_S:
                self._calls.end(call, note="Asterisk never reported the call's channel (AMI read = call missing?)")
        try:
            if now >= self._next_ping:
                self._next_ping = now + self._config.ping_interval_s
                session.connection.action("Ping", timeout=self._config.ping_timeout_s)
            if now >= self._next_refresh:
                self._next_refresh = now + QUEUE_REFRESH_S
                members = session.connection.list_action("QueueStatus", "QueueStatusComplete", Queue=self._agents.queue)
                with self._lock:
                    self._agents.reset(members)
        except AmiTimeout as exc:
            self._lose(session.connection, f"{exc} (half-open connection)")
        except AmiError as exc:
            self._lose(session.connection, str(exc))

    # --- events --------------------------------------------------------------------------------------------

    def _member_event(self, message: Message) -> None:
        with self._lock:
            self._agents.update(message)

    def _member_removed(self, message: Message) -> None:
        with self._lock:
            self._agents.remove(message)

    def _shutdown_event(self, message: Message) -> None:
        event(log, "asterisk.shutdown", logging.WARNING, at=self.where, mode=message.get("Shutdown", ""))

    # --- calls --------------------------------------------------------------------------------------------

    def _originate(self, call: Call) -> SimpleAction:
        config, request = self._config, call.request
        keys = {
            "Channel": dial_string(config.channel, request.phone),
            "Context": config.context if request.agent is None else config.agent_context,
            "Exten": config.exten,
            "Priority": str(config.priority),
            "Timeout": str(round(config.ring_timeout_s * 1000)),
            "Async": "true",
            "ActionID": call.uniqueid,
            "ChannelId": call.uniqueid,
        }
        caller_id = request.caller_id or config.caller_id
        if caller_id:
            keys["CallerID"] = _one_line(caller_id)
        variables = {
            "CARTERA_ATTEMPT": str(request.attempt_id),
            "CARTERA_SITE": self._context.site,
            "CARTERA_ABANDON_AFTER": str(config.abandon_after_s),
            "CARTERA_MESSAGE": self._identification_message(request),
            "CARTERA_AMD": "1" if config.amd else "0",
        }
        if request.account_ref:
            variables["CARTERA_ACCOUNT"] = request.account_ref
        if request.agent is not None:
            variables["CARTERA_AGENT"] = request.agent
        for name, value in request.variables.items():
            if _VARIABLE_NAME.match(name):
                variables.setdefault(name, value)
        if config.attempt_header and keys["Channel"].upper().startswith("PJSIP/"):
            variables[f"PJSIP_HEADER(add,{config.attempt_header})"] = str(request.attempt_id)
        action = SimpleAction("Originate", **keys)
        action.variables = {name: _one_line(value) for name, value in variables.items()}
        return action

    def _identification_message(self, request: CallRequest) -> str:
        """The sound an abandoned call hears: its portfolio's (``CARTERA_PORTFOLIO``, set by core), else the site's."""
        portfolio = request.variables.get("CARTERA_PORTFOLIO", "")
        return self._config.portfolio_messages.get(portfolio, self._config.identification_message)

    def _originate_answer(self, call: Call, response: Response) -> None:
        if response.is_error():
            message = response.keys.get("Message", "error")
            self._calls.end(call, note=f"not placed: Asterisk refused the Originate ({message})")

    def _send_hangup(self, call: Call) -> None:
        with self._lock:
            session = self._session
        if session is None:
            return
        try:
            session.connection.send_action(SimpleAction("Hangup", Channel=call.channel or call.uniqueid, Cause="16"))
        except AmiError as exc:
            self._context.log.warning("attempt %s: Hangup not sent: %s", call.request.attempt_id, exc)

    def _connected(self, call: Call, at: datetime) -> None:
        """The queue connected the call to an agent (AgentConnect, on the AMI reader): reported at once on a thread
        of its own, so that a slow report never holds up the reader (and the Pongs it reads); the end waits for it."""
        if call.agent is None:
            return
        connected = AgentConnected(call.request.attempt_id, call.agent, at)
        with self._lock:
            if self._finisher_open:
                call.connection = self._connector.submit(self._report_connection, connected)
                return
        self._report_connection(connected)

    def _report_connection(self, connected: AgentConnected) -> None:
        try:
            self._context.report_agent_connected(connected)
        except Exception:
            self._context.log.exception("attempt %s: reporting the agent's connection failed", connected.attempt_id)

    def _ended(self, call: Call) -> None:
        self._pooled(self._finisher, self._report, call)

    def _pooled(self, pool: ThreadPoolExecutor, work: Callable[[Call], None], call: Call) -> None:
        """Run ``work(call)`` on ``pool``, followed until done (stop waits for it); on this thread once stopping."""
        with self._lock:
            future = pool.submit(work, call) if self._finisher_open else None
            if future is not None:
                self._finishing.add(future)
        if future is None:
            work(call)
        else:
            future.add_done_callback(self._finished)  # outside the lock: a done future calls back at once

    def _finished(self, future: Future[None]) -> None:
        with self._lock:
            self._finishing.discard(future)

    def _report(self, call: Call) -> None:
        """Report the call, after its connection; then its recording, on the recorder's pool when answered (the
        wait for the file never holds back the ends of other calls)."""
        attempt = call.request.attempt_id
        if call.connection is not None:
            call.connection.result()
        result = call.result()
        try:
            self._context.report_call(result)
        except Exception:
            self._context.log.exception("attempt %s: reporting the call failed", attempt)
        event(
            log,
            "asterisk.call_ended",
            attempt=attempt,
            outcome=result.outcome.value,
            cause=result.raw_cause,
            agent=result.agent,
            uniqueid=call.uniqueid,
        )
        if call.answered_at is None:
            self._report_recording(call)
        else:
            self._pooled(self._recorder, self._report_recording, call)

    def _report_recording(self, call: Call) -> None:
        """Report the answered call's recording once Asterisk finished writing it; else the spool's scans may."""
        path = self._spool.recording_path(call.uniqueid)
        reported = False
        try:
            if call.answered_at is None:
                return
            if not wait_until_finished(path, self._config.recording_wait_s, self._cut_short):
                self._context.log.warning("attempt %s: no recording at %s", call.request.attempt_id, path)
                return
            self._context.report_recording(recording_of(call, path))
            reported = True
        except Exception:
            self._context.log.exception("attempt %s: reporting the recording failed", call.request.attempt_id)
        finally:
            self._spool.call_ended(path, call.request.attempt_id, reported=reported)


def _one_line(value: str) -> str:
    """An AMI header value: line breaks would start new headers."""
    return value.replace("\r", " ").replace("\n", " ")
