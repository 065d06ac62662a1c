"""Agents' states at one node: ready, on a call, in wrap-up or paused (with a reason), kept in memory.

Pause and resume drive the dialer when it declares ``pauses_agents``, so its pacing counts only ready agents.
A call connected to an agent that already has one on screen waits behind it (``pending``), never replacing it:
it comes on screen once the first is dispositioned. While an agent's own call rings, the agent is paused at the
dialer (``own_call``), its state here unchanged, so the dialer offers it no other call meanwhile.

Times are wall-clock (agents are people, whatever the site's simulated clock says). An agent whose wrap-up
outlasts ``wrap_up_limit``, or whose page has been gone for ``gone_limit`` with a call on screen, is
:meth:`AgentRoster.overdue`: the node dispositions that call as such and pauses the agent.

The changes an agent (or the node on its behalf) asks for are made one at a time per agent, the dialer told
before the state is written; a call the dialer connects meanwhile wins over them: it comes on screen, and the pause
reason asked for is kept for after it.

A dialer that cannot be reached (:class:`~cartera.core.errors.DialerUnavailable`) marks the agent's status
``dialer_down`` until a pause or resume of that agent goes through again: a change the agent asked for is refused
(its state stays as it was), one that follows a saved disposition leaves the agent paused ``dialer_unreachable``.
"""

from __future__ import annotations

import enum
import logging
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any

from cartera.core.adapters import Dialer
from cartera.core.errors import CarteraError, DialerUnavailable, UnknownAgent, Unsupported, UsageError
from cartera.core.logs import event
from cartera.workspace.dispositions import BROWSER_CLOSED, WRAP_UP_TIMEOUT
from cartera.workspace.errors import PageNotOpen

SIGNED_IN = "signed_in"  #: the pause reason of an agent who opened the page and is not ready yet
SIGNED_OUT = "signed_out"  #: the dialer's pause reason of an agent whose page has not opened since the node started
WRAP_UP = "wrap_up"  #: the dialer's pause reason while the agent owes a call's disposition
DIALER_UNREACHABLE = "dialer_unreachable"  #: the pause reason of an agent the dialer could not be told to resume
OWN_CALL = "own_call"  #: the dialer's pause reason while the agent's own (preview) call rings
MAX_REASON = 64
log = logging.getLogger("cartera.workspace")


class AgentState(enum.StrEnum):
    READY = "ready"
    ON_CALL = "on_call"
    WRAP_UP = "wrap_up"
    PAUSED = "paused"


@dataclass(frozen=True)
class AgentStatus:
    agent: str  #: the web user's name
    extension: str  #: the agent's identity at the dialer
    state: AgentState
    since: datetime
    pause_reason: str | None = None
    attempt_id: int | None = None  #: the call on screen (on a call or in wrap-up)
    pages: int = 0  #: the agent's pages open now (event streams connected)
    gone_since: datetime | None = None  #: when the last page closed
    dialer_down: bool = False  #: the dialer could not be reached the last time this agent's state was sent to it
    pending: tuple[int, ...] = ()  #: calls connected to the agent while one was on screen, waiting their turn

    def as_event(self) -> dict[str, object]:
        return {
            "agent": self.agent,
            "state": self.state.value,
            "since": self.since.isoformat(),
            "pause_reason": self.pause_reason,
            "attempt_id": self.attempt_id,
            "dialer_down": self.dialer_down,
            "pending": list(self.pending),
        }


class AgentRoster:
    """Every agent's state; thread-safe. ``on_change`` hears each new status (outside the roster's lock)."""

    def __init__(
        self,
        now: Callable[[], datetime],
        dialer: Callable[[], Dialer[Any] | None],
        *,
        wrap_up_limit: timedelta,
        gone_limit: timedelta,
        on_change: Callable[[AgentStatus], None],
    ) -> None:
        self._now, self._dialer, self._on_change = now, dialer, on_change
        self.wrap_up_limit, self.gone_limit = wrap_up_limit, gone_limit
        self._agents: dict[str, AgentStatus] = {}
        self._ended_pending: set[int] = set()  #: pending calls that ended before coming on screen
        self._lock = threading.Lock()
        self._changes: dict[str, threading.RLock] = {}  #: per agent: its asked-for changes, one at a time

    def sign_in(self, agent: str, extension: str) -> AgentStatus:
        """The agent's page opened: a new agent starts paused (``signed_in``) until it says it is ready."""
        with self._lock:
            known = self._agents.get(agent)
            if known is not None and known.extension == extension:
                return known
            status = AgentStatus(agent, extension, AgentState.PAUSED, self._now(), pause_reason=SIGNED_IN)
            self._agents[agent] = status
        try:
            self._drive(agent, status.extension, status.pause_reason)
        except CarteraError as exc:  # the page opens anyway; becoming ready asks the dialer again
            event(log, "workspace.dialer_refused_pause", logging.WARNING, agent=agent, error=str(exc))
        status = self.get(agent)
        self._on_change(status)
        return status

    def pause_signed_out(self, agents: Iterable[tuple[str, str]]) -> None:
        """At the node's start, pause at the dialer each (user, extension) of ``agents``: a queue member is offered
        calls until paused, and no page says it is ready yet. An extension the dialer does not serve is a warning."""
        for agent, extension in agents:
            try:
                self._drive(agent, extension, SIGNED_OUT)
            except UnknownAgent as exc:
                event(log, "workspace.agent_unknown", logging.WARNING, agent=agent, extension=extension, error=str(exc))

    def ready(self, agent: str) -> AgentStatus:
        """Offer the agent calls; refused while a call is on screen (a disposition must be saved first)."""
        with self._changing(agent):
            current = self.get(agent)
            if current.state in (AgentState.ON_CALL, AgentState.WRAP_UP):
                raise UsageError(f"agent {agent}: save the disposition of call {current.attempt_id} first")
            return self._set(agent, AgentState.READY, drive=True)

    def pause(self, agent: str, reason: str) -> AgentStatus:
        """No new call for the agent; a call on screen stays there (its disposition is still owed)."""
        reason = reason.strip()
        if not reason or len(reason) > MAX_REASON or not reason.isprintable():
            raise UsageError(f"pause reason: 1 to {MAX_REASON} printable characters")
        with self._changing(agent):
            return self._set(agent, AgentState.PAUSED, reason=reason, drive=True)

    def connected(self, agent: str, attempt_id: int) -> AgentStatus:
        """A call was connected to the agent: on that call, whatever the state before (the dialer decided); with
        another call on screen, that one stays and this one is pending behind it (its ``attempt_id`` is then not
        the status's)."""
        with self._lock:
            current = self._agents[agent]
            if _busy(current) and current.attempt_id != attempt_id:
                if attempt_id in current.pending:
                    return current
                status = replace(current, pending=(*current.pending, attempt_id))
            else:
                status = replace(current, state=AgentState.ON_CALL, since=self._now(), attempt_id=attempt_id)
            self._agents[agent] = status
        self._on_change(status)
        return status

    def hold_for_own_call(self, agent: str) -> None:
        """The agent places its own call: a ready agent is paused at the dialer (``own_call``) while it rings, its
        state here unchanged, so no other call reaches it meanwhile."""
        with self._changing(agent):
            status = self.get(agent)
            if status.state is AgentState.READY:
                self._drive(agent, status.extension, OWN_CALL)

    def release_own_call(self, agent: str) -> None:
        """The agent's own call ended without reaching it (or was not placed): a ready agent is offered calls
        again at the dialer."""
        with self._changing(agent):
            status = self.get(agent)
            if status.state is AgentState.READY:
                self._drive(agent, status.extension, None)

    def ended(self, agent: str, attempt_id: int) -> AgentStatus | None:
        """The call on the agent's screen ended: wrap-up until its disposition is saved. ``None``: not that call
        (a pending one is noted as ended: it comes on screen in wrap-up)."""
        with self._lock:
            current = self._agents.get(agent)
            if current is not None and attempt_id in current.pending:
                self._ended_pending.add(attempt_id)
                return None
            if current is None or current.attempt_id != attempt_id or current.state is not AgentState.ON_CALL:
                return None
            status = self._agents[agent] = replace(current, state=AgentState.WRAP_UP, since=self._now())
        try:
            self._drive(agent, status.extension, status.pause_reason or WRAP_UP)  # no call until it is saved
        except DialerUnavailable as exc:  # the dialer that reported the end is gone since: wrap-up all the same
            event(log, "workspace.dialer_unreachable", logging.WARNING, agent=agent, error=str(exc))
        status = self.get(agent)
        self._on_change(status)
        return status

    def dispositioned(self, agent: str, attempt_id: int) -> AgentStatus | None:
        """The call's disposition is saved: ready again, unless the agent paused meanwhile (then paused, with
        that reason). ``None``: not the agent's call on screen."""
        return self._leave(agent, attempt_id, None)

    def drop_pending(self, agent: str, attempt_id: int) -> AgentStatus | None:
        """The disposition of a call waiting behind the one on screen is saved: it leaves the queue (it never comes
        up, owed no more). ``None``: not one of the agent's waiting calls."""
        with self._lock:
            current = self._agents.get(agent)
            if current is None or attempt_id not in current.pending:
                return None
            self._ended_pending.discard(attempt_id)
            rest = tuple(waiting for waiting in current.pending if waiting != attempt_id)
            status = self._agents[agent] = replace(current, pending=rest)
        self._on_change(status)
        return status

    def timed_out(self, agent: str, attempt_id: int, reason: str) -> AgentStatus | None:
        """The call was dispositioned for the agent (``reason``): the agent is paused with that reason."""
        return self._leave(agent, attempt_id, reason)

    def _leave(self, agent: str, attempt_id: int, pause_reason: str | None) -> AgentStatus | None:
        """The call on screen is dispositioned: a pending call comes on screen; else the agent is paused with
        ``pause_reason``, or (``None``) ready again unless it paused meanwhile. A dialer that cannot be reached
        leaves the agent paused here (``pause_reason`` or ``dialer_unreachable``), the dialer told next time.
        ``None``: not the agent's call on screen."""
        with self._changing(agent):
            with self._lock:
                current = self._agents.get(agent)
                if current is None or current.attempt_id != attempt_id:
                    return None
            if current.pending:
                return self._next_pending(agent)
            if pause_reason is None and current.pause_reason is not None:
                return self._set(agent, AgentState.PAUSED, reason=current.pause_reason, drive=False, leaving=attempt_id)
            state = AgentState.READY if pause_reason is None else AgentState.PAUSED
            try:
                return self._set(agent, state, reason=pause_reason, drive=True, leaving=attempt_id)
            except DialerUnavailable as exc:  # the disposition is saved: the agent waits, paused, for the dialer
                event(log, "workspace.dialer_unreachable", logging.WARNING, agent=agent, error=str(exc))
                reason = pause_reason or DIALER_UNREACHABLE
                return self._set(agent, AgentState.PAUSED, reason=reason, drive=False, leaving=attempt_id)

    def page_seen(self, agent: str) -> None:
        with self._lock:
            current = self._agents[agent]
            self._agents[agent] = replace(current, pages=current.pages + 1, gone_since=None)

    def page_gone(self, agent: str) -> None:
        with self._lock:
            current = self._agents.get(agent)
            if current is None:
                return
            pages = max(current.pages - 1, 0)
            self._agents[agent] = replace(current, pages=pages, gone_since=self._now() if pages == 0 else None)

    def overdue(self) -> list[tuple[AgentStatus, str]]:
        """Calls whose disposition is overdue, with why: the page gone too long, or the wrap-up too long."""
        now, found = self._now(), []
        with self._lock:
            for status in self._agents.values():
                if status.attempt_id is None or status.state not in (AgentState.ON_CALL, AgentState.WRAP_UP):
                    continue
                if status.gone_since is not None and now - status.gone_since >= self.gone_limit:
                    found.append((status, BROWSER_CLOSED))
                elif status.state is AgentState.WRAP_UP and now - status.since >= self.wrap_up_limit:
                    found.append((status, WRAP_UP_TIMEOUT))
        return found

    def left(self) -> list[AgentStatus]:
        """Ready agents whose every page has been gone for ``gone_limit``: to be paused (``browser_closed``)."""
        now = self._now()
        with self._lock:
            return [
                s
                for s in self._agents.values()
                if s.state is AgentState.READY and s.gone_since is not None and now - s.gone_since >= self.gone_limit
            ]

    def get(self, agent: str) -> AgentStatus:
        with self._lock:
            status = self._agents.get(agent)
        if status is None:
            raise PageNotOpen(agent)
        return status

    def by_extension(self, extension: str) -> AgentStatus | None:
        with self._lock:
            return next((s for s in self._agents.values() if s.extension == extension), None)

    def ready_agents(self) -> list[str]:
        """The agents offered calls now: pacing counts only these."""
        with self._lock:
            return sorted(s.agent for s in self._agents.values() if s.state is AgentState.READY)

    def everyone(self) -> list[AgentStatus]:
        with self._lock:
            return sorted(self._agents.values(), key=lambda status: status.agent)

    def _changing(self, agent: str) -> threading.RLock:
        """The lock that makes ``agent``'s asked-for changes one at a time, so the dialer hears them in the order
        their states are written (re-entrant: a change may lead to another on the same thread)."""
        with self._lock:
            return self._changes.setdefault(agent, threading.RLock())

    def _set(
        self, agent: str, state: AgentState, *, reason: str | None = None, drive: bool, leaving: int | None = None
    ) -> AgentStatus:
        """The agent's new state (``READY`` or ``PAUSED``), leaving the call ``leaving`` (its disposition saved;
        ``None``: none on screen); when ``drive``, the dialer is told first, and a dialer that refuses (or is down)
        leaves the state as it was and raises. A call the dialer connected meanwhile stays on screen, the reason
        kept for after it; one connected behind ``leaving`` comes on screen."""
        if drive:
            self._drive(agent, self.get(agent).extension, reason)
        with self._lock:
            current = self._agents[agent]
            if _busy(current) and current.attempt_id != leaving:
                status = replace(current, pause_reason=reason)
            elif current.pending and current.attempt_id == leaving:
                status = self._pending_on_screen(current)
            else:
                status = replace(current, state=state, since=self._now(), pause_reason=reason, attempt_id=None)
            self._agents[agent] = status
        self._on_change(status)
        return status

    def _next_pending(self, agent: str) -> AgentStatus:
        """The agent's first pending call comes on screen: on that call, or in wrap-up when it ended already."""
        with self._lock:
            status = self._agents[agent] = self._pending_on_screen(self._agents[agent])
        self._on_change(status)
        return status

    def _pending_on_screen(self, current: AgentStatus) -> AgentStatus:
        """Under the lock: ``current`` with its first pending call on screen."""
        attempt_id, *rest = current.pending
        ended = attempt_id in self._ended_pending
        self._ended_pending.discard(attempt_id)
        state = AgentState.WRAP_UP if ended else AgentState.ON_CALL
        return replace(current, state=state, since=self._now(), attempt_id=attempt_id, pending=tuple(rest))

    def _drive(self, agent: str, extension: str, pause_reason: str | None) -> None:
        """Tell the dialer, when it pauses agents, to pause (with the reason) or resume the agent at ``extension``.
        A dialer that cannot be reached raises :class:`DialerUnavailable` and marks the agent ``dialer_down`` (its
        pages hear of it); one that answers clears the mark."""
        dialer = self._dialer()
        if dialer is None or not dialer.capabilities.pauses_agents:
            return
        try:
            if pause_reason is not None:
                dialer.pause_agent(extension, pause_reason)
            else:
                dialer.resume_agent(extension)
        except (UnknownAgent, Unsupported):
            raise
        except (CarteraError, OSError) as exc:
            self._dialer_down(agent, down=True)
            what = f"pause agent {agent} ({pause_reason})" if pause_reason is not None else f"resume agent {agent}"
            raise DialerUnavailable(f"the dialer could not be reached to {what}: {exc}") from exc
        self._dialer_down(agent, down=False)

    def _dialer_down(self, agent: str, *, down: bool) -> None:
        """Mark (or clear) ``agent``'s status ``dialer_down``; a change is heard at once."""
        with self._lock:
            current = self._agents.get(agent)
            if current is None or current.dialer_down is down:
                return
            status = self._agents[agent] = replace(current, dialer_down=down)
        self._on_change(status)


def _busy(status: AgentStatus) -> bool:
    """A call is on the agent's screen (on it, or its disposition owed)."""
    return status.attempt_id is not None and status.state in (AgentState.ON_CALL, AgentState.WRAP_UP)
