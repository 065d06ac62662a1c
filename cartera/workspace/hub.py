"""The workspace's events, pushed to agents' pages, the wallboard and integrations as they happen.

:class:`WorkspaceHub` is an in-process publish/subscribe: events are published from any thread (the dialer's
reports, the pages' posts, the node's jobs) and read by subscribers on an asyncio loop (the web server's event
streams), with no polling. Each event has an increasing id; the latest ones are kept, so a page that reconnects
with ``Last-Event-ID`` misses nothing that happened meanwhile; one that asks for events older than those kept is
sent a ``reset`` event instead (it reloads its state) and goes on with the live ones.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from cartera.core.adapters import Dialer
from cartera.core.audit import AuditLog
from cartera.core.errors import CarteraError
from cartera.core.hookspecs import hookimpl
from cartera.core.logs import event as log_event
from cartera.core.models import AgentConnected, CallRequest, CallResult
from cartera.portfolio.identity import PortfolioKey
from cartera.workspace.agents import AgentRoster, AgentState, AgentStatus
from cartera.workspace.dispositions import BROWSER_CLOSED
from cartera.workspace.errors import PageNotOpen
from cartera.workspace.screen import NotOnScreen, ScreenBuilder

log = logging.getLogger("cartera.workspace")

KEPT_EVENTS = 1024  #: events kept for pages reconnecting with ``Last-Event-ID``
QUEUED_EVENTS = 256  #: events a subscriber may leave unread; past that its stream ends and the page reconnects
WRAP_UP_LIMIT = timedelta(minutes=3)  #: longest wrap-up before the call is dispositioned ``wrap_up_timeout``
GONE_LIMIT = timedelta(seconds=60)  #: longest absence of an agent's page with a call on screen

#: Kinds of events; ``screen_pop`` carries a debtor's name and number, so only its agent's page receives it.
SCREEN_POP, CALL_NOT_VISIBLE = "screen_pop", "call_not_visible"
AGENT_STATE, CALL_CONNECTED, CALL_ENDED = "agent_state", "call_connected", "call_ended"
#: What the wallboard (its board only) and the integrations (the events) hear of: states and calls, no pop.
PUBLIC_KINDS = frozenset({AGENT_STATE, CALL_CONNECTED, CALL_ENDED})
#: A call connected to an agent with another on screen: it waits behind that one (its id, and the one on screen).
CALL_PENDING = "call_pending"
#: Preview mode's offer of the next account to an agent (whom to ask for, like a pop), and its withdrawal.
PREVIEW_OFFER, PREVIEW_CLEARED = "preview_offer", "preview_cleared"
#: What an agent's page hears of: never ``call_connected``, which names any call's account and phone whatever the
#: agent's grants; the pop (or ``call_not_visible``, its id only) tells the agent of its call.
AGENT_KINDS = frozenset(
    {AGENT_STATE, SCREEN_POP, CALL_NOT_VISIBLE, CALL_PENDING, CALL_ENDED, PREVIEW_OFFER, PREVIEW_CLEARED}
)
#: Sent to a reconnecting reader whose ``Last-Event-ID`` is older than the kept events: it missed some for good,
#: so it reloads its state; numbered as the latest event, so its next reconnect resumes from there.
RESET = "reset"


@dataclass(frozen=True)
class WorkspaceEvent:
    id: int
    kind: str
    agent: str | None  #: the agent it concerns (its page receives it); ``None``: no one agent's
    data: Mapping[str, object]
    names_debtor: bool = False  #: it names a debtor (a pop, an offer): only readers granted :attr:`portfolio` get it
    portfolio: PortfolioKey | None = None  #: the portfolio of the debtor it names (``None``: a call of no account)

    def visible(self, within: frozenset[PortfolioKey] | None) -> bool:
        """Whether a reader granted ``within`` (``None``: the whole site) may have it: the grant filter of a pop,
        applied again to every event replayed or shown again, with the reader's grants as they are now."""
        if not self.names_debtor or within is None:
            return True
        return self.portfolio is not None and self.portfolio in within


class Subscription:
    """One reader's events, on the asyncio loop that subscribed: first those replayed to it (read from their own
    list, never the bounded queue of live events), then the live ones. :attr:`overflowed` once it fell too far
    behind the live ones."""

    def __init__(
        self,
        hub: WorkspaceHub,
        agent: str | None,
        kinds: frozenset[str] | None,
        within: frozenset[PortfolioKey] | None = None,
    ) -> None:
        self.hub, self.agent, self.kinds, self.within = hub, agent, kinds, within
        self.overflowed = self.ended = False
        self._loop = asyncio.get_running_loop()
        self._replay: deque[WorkspaceEvent] = deque()
        self._queue: asyncio.Queue[WorkspaceEvent | None] = asyncio.Queue(QUEUED_EVENTS + 1)  # + end's wake-up

    def wants(self, event: WorkspaceEvent) -> bool:
        if self.kinds is not None and event.kind not in self.kinds:
            return False
        return (self.agent is None or event.agent == self.agent) and event.visible(self.within)

    def offer(self, event: WorkspaceEvent) -> bool:
        """Hand ``event`` to the subscriber's loop (from any thread); ``False`` when that loop is gone."""
        try:
            self._loop.call_soon_threadsafe(self._put, event)
        except RuntimeError:  # the loop is closed: the server stopped
            return False
        return True

    def replay(self, events: Iterable[WorkspaceEvent]) -> None:
        """Events the reader missed, read before the live ones (however many: they are already kept)."""
        self._replay.extend(events)

    def _put(self, event: WorkspaceEvent) -> None:
        if self._queue.qsize() >= QUEUED_EVENTS:
            self.overflowed = True
        else:
            self._queue.put_nowait(event)

    def end(self) -> None:
        """The reader is gone (its client disconnected): :meth:`next` returns at once, :attr:`ended` is set."""
        self.ended = True
        self._queue.put_nowait(None)

    async def next(self, timeout: float) -> WorkspaceEvent | None:
        """The next event (a replayed one first), or ``None`` after ``timeout`` seconds without one (or once ended)."""
        if self._replay and not self.ended:
            return self._replay.popleft()
        try:
            return await asyncio.wait_for(self._queue.get(), timeout)
        except TimeoutError:
            return None

    def close(self) -> None:
        self.hub.unsubscribe(self)


class WorkspaceHub:
    """One site's workspace events and agents (:attr:`roster`). ``dispose`` dispositions a call its agent
    left (agent, attempt id, code ``wrap_up_timeout`` or ``browser_closed``); ``audit`` hears of a call that had to
    wait behind another on its agent's screen."""

    def __init__(
        self,
        screens: ScreenBuilder,
        *,
        now: Callable[[], datetime],
        dialer: Callable[[], Dialer[Any] | None],
        dispose: Callable[[str, int, str], object] | None,
        wrap_up_limit: timedelta = WRAP_UP_LIMIT,
        gone_limit: timedelta = GONE_LIMIT,
        audit: AuditLog | None = None,
    ) -> None:
        self.screens, self._dispose, self._audit = screens, dispose, audit
        self.roster = AgentRoster(
            now, dialer, wrap_up_limit=wrap_up_limit, gone_limit=gone_limit, on_change=self._state_changed
        )
        self._lock = threading.Lock()
        #: held by a publish from its event's number to its last offer, so each reader has the events in their order;
        #: never taken under :attr:`_lock`, and nothing taking :attr:`_lock` waits for it (re-entrant: whatever a
        #: collection runs on a publishing thread may publish too)
        self._publishing = threading.RLock()
        self._ids = itertools.count(time.time_ns() // 1000)  # a restarted node's ids stay above the last run's
        self._kept: deque[WorkspaceEvent] = deque(maxlen=KEPT_EVENTS)
        self._forgotten = -1  #: id of the newest event no longer kept (``-1``: none yet)
        self._subscribers: list[Subscription] = []
        self._grants: dict[str, frozenset[PortfolioKey] | None] = {}
        self._pops: dict[str, WorkspaceEvent] = {}  #: each agent's pop on screen now
        self._waiting: dict[int, AgentConnected] = {}  #: pending calls' connections, by attempt: popped in turn
        self._listeners: list[Callable[[WorkspaceEvent], None]] = []

    # --- agents and calls ------------------------------------------------------------------------

    def open_page(self, agent: str, extension: str, within: frozenset[PortfolioKey] | None) -> AgentStatus:
        """An agent's page opened (``within``: the portfolios the agent may see)."""
        self._grants[agent] = within
        return self.roster.sign_in(agent, extension)

    def grants(self, agent: str) -> frozenset[PortfolioKey] | None:
        """The portfolios ``agent`` may see, as its page last opened (``None``: the whole site; none before)."""
        return self._grants.get(agent, frozenset())

    def agent_connected(self, event: AgentConnected) -> None:
        """The dialer connected the answered call of ``event.attempt_id`` to the agent at ``event.agent`` (its
        identity at the dialer): the agent goes on the call and its page gets the screen pop."""
        status = self.roster.by_extension(event.agent)
        try:
            account, phone = self.screens.called(event.attempt_id)
        except NotOnScreen as exc:
            log_event(log, "workspace.unknown_call", logging.WARNING, reason=str(exc))
            return
        data = {
            "attempt_id": event.attempt_id,
            "extension": event.agent,
            "agent": status.agent if status else None,
            "account": account,
            "phone": phone,
            "at": event.at.isoformat(),
        }
        self.publish(CALL_CONNECTED, data, agent=status.agent if status else None)
        if status is None:
            # a seat no page watches (the simulator's own agents, a desktop on the API): nothing to pop
            log_event(log, "workspace.agent_not_signed_in", logging.DEBUG, extension=event.agent)
            return
        now = self.roster.connected(status.agent, event.attempt_id)
        if now.attempt_id != event.attempt_id:  # another call is on the agent's screen: it stays, this one waits
            self._waiting[event.attempt_id] = event
            pending = {"attempt_id": event.attempt_id, "on_screen": now.attempt_id}
            log_event(log, "workspace.call_pending", logging.WARNING, agent=status.agent, **pending)
            if self._audit is not None:
                subject = f"attempt:{event.attempt_id}"
                self._audit.write(
                    actor="workspace", action="workspace.call_pending", subject=subject, agent=status.agent
                )
            self.publish(CALL_PENDING, pending, agent=status.agent)
            self._next_on_screen(self.roster.get(status.agent))  # it came on screen before it waited: its pop
            return
        self._pop(status.agent, event)

    def _pop(self, agent: str, event: AgentConnected) -> None:
        """Put the call connected by ``event`` on the agent's screen (its pop, or only its id when not visible)."""
        try:
            pop = self.screens.pop(event.attempt_id, agent, self.grants(agent), event.at)
        except NotOnScreen as exc:
            log_event(log, "workspace.call_not_visible", logging.WARNING, agent=agent, reason=str(exc))
            shown = self.publish(CALL_NOT_VISIBLE, {"attempt_id": event.attempt_id}, agent=agent)
        else:
            shown = self.publish(SCREEN_POP, pop.as_event(), agent=agent, portfolio=pop.portfolio)
        with self._lock:
            self._pops[agent] = shown

    def _clear_pop(self, agent: str, attempt_id: int) -> None:
        """The call of ``attempt_id`` left the agent's screen: its pop goes (a later call's pop stays)."""
        with self._lock:
            shown = self._pops.get(agent)
            if shown is not None and shown.data.get("attempt_id") == attempt_id:
                del self._pops[agent]

    def _next_on_screen(self, status: AgentStatus | None) -> None:
        """After a call left the agent's screen: the pending call that came on it gets its pop."""
        if status is None or status.attempt_id is None:
            return
        waiting = self._waiting.pop(status.attempt_id, None)
        if waiting is not None:
            self._pop(status.agent, waiting)

    def call_ended(self, attempt_id: int) -> None:
        """The call of ``attempt_id`` ended: its agent, if one has it on screen, goes into wrap-up."""
        statuses = self.roster.everyone()
        agent = next((s.agent for s in statuses if attempt_id == s.attempt_id or attempt_id in s.pending), None)
        self.publish(CALL_ENDED, {"attempt_id": attempt_id}, agent=agent)
        if agent is not None:
            self.roster.ended(agent, attempt_id)

    def dispositioned(self, agent: str, attempt_id: int) -> AgentStatus | None:
        """The agent saved the call's disposition: its screen is free again; a call still waiting behind the one
        on screen leaves the queue instead (the screen stays as it is)."""
        waiting = self.roster.drop_pending(agent, attempt_id)
        if waiting is not None:
            self._waiting.pop(attempt_id, None)  # its connection is never popped now
            return waiting
        status = self.roster.dispositioned(agent, attempt_id)
        if status is not None:
            self._clear_pop(agent, attempt_id)
            self._next_on_screen(status)
        return status

    def sweep(self) -> int:
        """Disposition the calls whose agent left them (page gone, or wrap-up too long) and pause those agents;
        returns how many. A ready agent whose pages are gone for good is paused too. Run by the node's scheduler."""
        swept = 0
        for status, reason in self.roster.overdue():
            attempt_id = status.attempt_id
            if attempt_id is None:
                continue
            if self._dispose is not None:
                self._dispose(status.agent, attempt_id, reason)
            self._clear_pop(status.agent, attempt_id)
            self._next_on_screen(self.roster.timed_out(status.agent, attempt_id, reason))
            log_event(log, "workspace.call_left", agent=status.agent, attempt=attempt_id, reason=reason)
            swept += 1
        for status in self.roster.left():  # ready, page closed for good: no call the agent will not see
            try:
                self.roster.pause(status.agent, BROWSER_CLOSED)
            except CarteraError as exc:  # the dialer refused: the next sweep asks again
                log_event(log, "workspace.dialer_refused_pause", logging.WARNING, agent=status.agent, error=str(exc))
                continue
            log_event(log, "workspace.agent_left", agent=status.agent, reason=BROWSER_CLOSED)
        return swept

    def state_now(self, agent: str) -> WorkspaceEvent:
        """The agent's state as it is now, for a page that opens to start from; not published (the agent's other
        pages heard every change already), and numbered as the latest event, so a reconnect misses nothing."""
        with self._lock:
            latest = self._kept[-1].id if self._kept else next(self._ids)
        return WorkspaceEvent(latest, AGENT_STATE, agent, self.roster.get(agent).as_event())

    def on_screen(self, agent: str, within: frozenset[PortfolioKey] | None = None) -> WorkspaceEvent | None:
        """The pop the agent has on screen now (a page opened mid-call shows it again); none before its page opened.
        ``within``: the agent's grants now; a pop of a portfolio no longer granted shows only the call's id."""
        try:
            status = self.roster.get(agent)
        except PageNotOpen:
            return None
        with self._lock:
            pop = self._pops.get(agent)
        if pop is None or status.state not in (AgentState.ON_CALL, AgentState.WRAP_UP):
            return None
        if pop.data.get("attempt_id") != status.attempt_id:
            return None
        if not pop.visible(within):
            return WorkspaceEvent(pop.id, CALL_NOT_VISIBLE, agent, {"attempt_id": status.attempt_id})
        return pop

    # --- publish and subscribe -------------------------------------------------------------------

    def publish(
        self,
        kind: str,
        data: Mapping[str, object],
        agent: str | None = None,
        *,
        portfolio: PortfolioKey | bool | None = False,
    ) -> WorkspaceEvent:
        """Publish an event (from any thread); its subscribers have it at once. ``portfolio``: that of the debtor
        it names (``None``: a call of no account; ``False``: it names none), read against each reader's grants.

        The event is offered outside the hub's lock: an offer allocates (its loop's callback), so the garbage
        collector may run there, and with it any stream's cleanup; one that waited for that lock (not re-entrant)
        stopped the publishing thread for good, and the server's loop at its next subscribe."""
        names_debtor = portfolio is not False
        key = portfolio if isinstance(portfolio, PortfolioKey) else None
        with self._publishing:
            with self._lock:
                event = WorkspaceEvent(next(self._ids), kind, agent, data, names_debtor, key)
                if len(self._kept) == KEPT_EVENTS:
                    self._forgotten = self._kept[0].id
                self._kept.append(event)
                subscribers = list(self._subscribers)  # a reader subscribing after this starts after it
            gone = [sub for sub in subscribers if sub.wants(event) and not sub.offer(event)]
        if gone:
            with self._lock:
                for subscription in gone:
                    with contextlib.suppress(ValueError):  # closed meanwhile
                        self._subscribers.remove(subscription)
        for listener in self._listeners:
            listener(event)
        return event

    def listen(self, listener: Callable[[WorkspaceEvent], None]) -> None:
        """Have ``listener`` hear every event once published, on the publishing thread (outside the hub's lock)."""
        self._listeners.append(listener)

    def subscribe(
        self,
        agent: str | None,
        kinds: frozenset[str] | None = None,
        last_event_id: int | None = None,
        within: frozenset[PortfolioKey] | None = None,
    ) -> Subscription:
        """Events for ``agent`` (``None``: every agent's) of ``kinds`` (``None``: all), from now on, after the
        kept ones newer than ``last_event_id`` (a :data:`RESET` event instead when some it missed are no longer
        kept). ``within``: the reader's grants as the stream opens (``None``: the whole site); an event naming a
        debtor of another portfolio is neither replayed nor sent live. Call it on the loop that reads them."""
        subscription = Subscription(self, agent, kinds, within)
        with self._lock:
            if last_event_id is not None and last_event_id < self._forgotten:
                subscription.replay([WorkspaceEvent(self._kept[-1].id, RESET, agent, {"last_event_id": last_event_id})])
            elif last_event_id is not None:
                subscription.replay(e for e in self._kept if e.id > last_event_id and subscription.wants(e))
            self._subscribers.append(subscription)
        return subscription

    def unsubscribe(self, subscription: Subscription) -> None:
        with self._lock, contextlib.suppress(ValueError):
            self._subscribers.remove(subscription)

    def _state_changed(self, status: AgentStatus) -> None:
        self.publish(AGENT_STATE, status.as_event(), agent=status.agent)


class CallEnds:
    """The observer (a plugin of the node's own) that tells the hub of each call's end at ``site``."""

    def __init__(self, site: str, hub: WorkspaceHub) -> None:
        self.site, self.hub = site, hub

    @hookimpl
    def cartera_call_finished(self, site: str, request: CallRequest, result: CallResult) -> None:
        if site == self.site:
            self.hub.call_ended(result.attempt_id)
