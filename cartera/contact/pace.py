"""The campaign's pacing at the node: the pacer of ``[campaign] mode`` (:mod:`cartera.contact.pacing`) decides each
tick how many of the dialer's free lines to use, from a snapshot of the floor, and learns from the node's calls.

The floor's agents are the workspace's (the roster, by their extensions) and, when the dialer declares
``reports_seats``, its other agents (the simulator's seats no workspace user is bound to): each agent is counted
once, from one of the two. Its calls ringing are the calls the node handed the dialer and saw neither connected
to an agent nor ended; a call answered and waiting for an agent is not seen apart (the dialer abandons it within
2 s). The pacer hears each call's end of ringing (:class:`DialEnded`: at its connection, or at its end when it
had none), each call answered by a person connected or abandoned (:class:`LiveCallSettled`) and each agent's
talk and wrap-up (:class:`AgentCycle`: from the workspace's states, or a dialer's agent's call with no wrap-up).
Times are the site's clock's seconds (the workspace's wall-clock ages scaled to it).

Each call carries its account's list segment (days past due, from the account's ``due_on`` when placed), so the
pacer learns the live-answer rate per hour and segment and counts each ringing call at its own; its new calls
count at the mix of the segments the list ordered next at the campaign's last tick (:meth:`Pace.upcoming`).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any
from zoneinfo import ZoneInfo

from cartera.contact.abandonment import ANSWERED_BY_A_PERSON
from cartera.contact.pacing import (
    AbandonBudget,
    AgentCycle,
    DialEnded,
    Floor,
    LiveCallSettled,
    Pacer,
    PacingEvent,
    PredictivePacer,
    PredictiveSettings,
    ProgressivePacer,
)
from cartera.contact.pacing.budget import DAY
from cartera.contact.segments import Segment, days_past_due, segment_of
from cartera.core.adapters import Dialer
from cartera.core.clock import Clock
from cartera.core.config import CampaignConfig
from cartera.core.logs import event
from cartera.core.models import AgentConnected, CallOutcome, CallResult, SeatState
from cartera.workspace.agents import AgentState, AgentStatus
from cartera.workspace.hub import AGENT_STATE, WorkspaceEvent

log = logging.getLogger("cartera.pace")
#: Ends that say nothing of the debtor's line: the node cut the call short, or it was lost with a killed node.
_NOT_LEARNT = frozenset({CallOutcome.CANCELLED, CallOutcome.UNKNOWN})
#: The site's latest calls the predictive pacer's answer rate starts from (it forgets at a half-life of 500 calls).
SEED_CALLS = 2000
#: The target abandon rate of the predictive pacer, as a share of the limit (the rest absorbs the noise).
TARGET_SHARE = 2 / 3


def pacer_for(config: CampaignConfig) -> Pacer | None:
    """The pacer of the campaign's mode; ``None`` for ``ratio`` (the dialer's capacity, as it counts it) and
    ``preview`` (the campaign places nothing)."""
    if config.mode == "progressive":
        return ProgressivePacer()
    if config.mode == "predictive":
        limit = config.abandonment.limit
        settings = PredictiveSettings(target=limit * TARGET_SHARE, min_team=config.min_team)
        return PredictivePacer(settings, budget=AbandonBudget(limit=limit, window=config.abandonment.window_days * DAY))
    return None


@dataclass(slots=True)
class _Line:
    dialled: float
    segment: Segment | None = None
    connected: bool = False


@dataclass(slots=True)
class _Cycle:
    on_call: datetime | None = None
    wrap_up: datetime | None = None


class Pace:
    """How many calls the campaign places now, and what its pacer learns; thread-safe (the dialer reports on its
    own threads). ``workspace`` gives the workspace's agents, ``dialer`` the started dialer (``None``: none),
    ``answered`` the calls answered by a person over the abandonment window before an instant, each with its time
    and whether it was abandoned (the predictive pacer's budget starts from them), ``latest`` the site's latest
    calls before an instant, at most so many, each with its time and outcome (its answer rate starts from them:
    a node started again, or a campaign's next day, does not learn the list's answer rate afresh; default: none)."""

    def __init__(
        self,
        *,
        config: CampaignConfig,
        clock: Clock,
        zone: ZoneInfo,
        workspace: Callable[[], Iterable[AgentStatus]],
        dialer: Callable[[], Dialer[Any] | None],
        answered: Callable[[datetime], Iterable[tuple[datetime, bool]]],
        latest: Callable[[datetime, int], Iterable[tuple[datetime, CallOutcome]]] = lambda _before, _count: (),
    ) -> None:
        self.pacer = pacer_for(config)
        self.clock, self.zone = clock, zone
        self._workspace, self._dialer, self._answered, self._latest = workspace, dialer, answered, latest
        self._lock = threading.Lock()
        self._lines: dict[int, _Line] = {}
        self._cycles: dict[str, _Cycle] = {}
        self._upcoming: tuple[Segment | None, ...] = ()
        self._seeded = False
        #: Runs the campaign's next tick now: called on each pacing event (the run's scheduler sets it).
        self.wake: Callable[[], None] = _no_tick

    def calls_to_place(self, capacity: int) -> int:
        """New calls to place now: the pacer's number within ``capacity`` (the dialer's free lines); all of them
        when no pacer paces the mode. A decision to place calls is logged (``campaign.paced``) with the floor's
        ready agents and calls ringing it was made on: dialling ahead shows as ringing + placing > ready."""
        if self.pacer is None:
            return capacity
        floor = self.floor()
        with self._lock:
            self._seed(floor.now)
            placing = min(capacity, self.pacer.calls_to_place(floor))
        if placing > 0:
            event(log, "campaign.paced", ready=floor.ready, ringing=len(floor.ringing), placing=placing)
        return placing

    def floor(self) -> Floor:
        """The floor now: the workspace's agents, the dialer's others, the node's calls ringing."""
        now = self.clock.now()
        local = now.astimezone(self.zone)
        wall_now, speed = datetime.now(UTC), self._speed()
        workspace = list(self._workspace())
        agents = [(str(agent.state), (wall_now - agent.since).total_seconds() * speed) for agent in workspace]
        dialer = self._dialer()
        if dialer is not None and dialer.capabilities.reports_seats:
            known = {agent.extension for agent in workspace}
            agents += [(str(s.state), (now - s.since).total_seconds()) for s in dialer.seats() if s.agent not in known]
        at = now.timestamp()
        with self._lock:
            lines = [line for line in self._lines.values() if not line.connected]
            upcoming = self._upcoming
        return Floor(
            now=at,
            time_of_day=(local - local.replace(hour=0, minute=0, second=0, microsecond=0)).total_seconds(),
            ready=sum(state == SeatState.READY for state, _ in agents),
            talking=tuple(age for state, age in agents if state == SeatState.ON_CALL),
            wrapping=tuple(age for state, age in agents if state == SeatState.WRAP_UP),
            ringing=tuple(at - line.dialled for line in lines),
            ringing_segments=tuple(line.segment for line in lines),
            next_segments=upcoming,
        )

    def upcoming(self, segments: Iterable[Segment | None]) -> None:
        """The segments of the accounts the list would call next, in its order (the picks a tick did not place):
        the pacer's next new calls count at their mix."""
        with self._lock:
            self._upcoming = tuple(segments)

    # --- what the node learns of its calls and agents ----------------------------------------------------

    def dialled(self, attempt_id: int, at: datetime, due_on: date | None = None) -> None:
        """The node hands the call of ``attempt_id``, requested at ``at``, to the dialer; ``due_on``: the day its
        account's debt fell due (its segment), when known."""
        segment = segment_of(days_past_due(due_on, at.astimezone(self.zone).date()))
        with self._lock:
            self._lines[attempt_id] = _Line(at.timestamp(), segment)

    def dropped(self, attempt_id: int) -> None:
        """The dialer refused the call of ``attempt_id`` (it raised): it rings nowhere."""
        with self._lock:
            self._lines.pop(attempt_id, None)

    def connected(self, event: AgentConnected) -> None:
        """The call was answered and reached an agent in time."""
        with self._lock:
            line = self._lines.get(event.attempt_id)
            if line is None or line.connected:
                return
            line.connected = True
            self.wake()
            at = event.at.timestamp()
            self._observe(
                DialEnded(at, self._hour(line.dialled), at - line.dialled, live=True, segment=line.segment),
                LiveCallSettled(at, abandoned=False),
            )

    def finished(self, result: CallResult) -> None:
        """The call ended: what its end teaches, unless its connection taught it already; the talk of a dialer's
        agent the workspace does not know (its wrap-up unseen: none)."""
        with self._lock:
            line = self._lines.pop(result.attempt_id, None)
        if line is None:
            return
        self.wake()
        if result.outcome in _NOT_LEARNT:
            return
        end = (result.ended_at or self.clock.now()).timestamp()
        hour, segment = self._hour(line.dialled), line.segment
        if line.connected:
            if result.answered_at is not None and not self._in_workspace(result.agent):
                with self._lock:
                    self._observe(AgentCycle(talk=end - result.answered_at.timestamp(), wrap=0.0))
            return
        events: list[PacingEvent]
        if result.outcome is CallOutcome.ABANDONED:
            events = [DialEnded(end, hour, end - line.dialled, True, segment), LiveCallSettled(end, abandoned=True)]
        elif result.outcome is CallOutcome.ANSWERED:
            answered = result.answered_at.timestamp() if result.answered_at else end
            events = [
                DialEnded(answered, hour, answered - line.dialled, True, segment),
                LiveCallSettled(answered, False),
            ]
        else:
            events = [DialEnded(end, hour, end - line.dialled, live=False, segment=segment)]
        with self._lock:
            self._observe(*events)

    def workspace_event(self, event: WorkspaceEvent) -> None:
        """An event of the workspace's hub: a workspace agent leaving its wrap-up (its disposition saved, or the
        wrap-up timed out) ends a cycle of talk and wrap-up."""
        if event.kind == AGENT_STATE and event.agent is not None:
            self.agent_state(
                event.agent, AgentState(str(event.data["state"])), datetime.fromisoformat(str(event.data["since"]))
            )

    def agent_state(self, agent: str, state: AgentState, since: datetime) -> None:
        """A workspace agent's new state, since ``since`` (wall clock); ready, it wakes the campaign's tick."""
        if state is AgentState.READY:
            self.wake()
        with self._lock:
            cycle = self._cycles.setdefault(agent, _Cycle())
            if state is AgentState.ON_CALL:
                cycle.on_call, cycle.wrap_up = since, None
            elif state is AgentState.WRAP_UP:
                cycle.wrap_up = since if cycle.on_call is not None else None
            else:
                if cycle.on_call is not None and cycle.wrap_up is not None:
                    speed = self._speed()
                    talk = (cycle.wrap_up - cycle.on_call).total_seconds() * speed
                    self._observe(AgentCycle(talk=talk, wrap=(since - cycle.wrap_up).total_seconds() * speed))
                self._cycles[agent] = _Cycle()

    # --- internals ---------------------------------------------------------------------------------------

    def _observe(self, *events: PacingEvent) -> None:
        """Under the lock."""
        if self.pacer is not None:
            for event in events:
                self.pacer.observe(event)

    def _seed(self, now: float) -> None:
        """Under the lock, once: the predictive pacer's budget starts from the store's window of answered calls,
        its answer rate from the site's latest calls."""
        if self._seeded:
            return
        self._seeded = True
        if isinstance(self.pacer, PredictivePacer):
            instant = datetime.fromtimestamp(now, UTC)
            for at, abandoned in self._answered(instant):
                self.pacer.budget.record(at.timestamp(), abandoned=abandoned)
            for at, outcome in self._latest(instant, SEED_CALLS):
                if outcome not in _NOT_LEARNT:
                    self.pacer.estimates.answer.observe(self._hour(at.timestamp()), outcome in ANSWERED_BY_A_PERSON)

    def _in_workspace(self, extension: str | None) -> bool:
        return extension is not None and any(agent.extension == extension for agent in self._workspace())

    def _hour(self, at: float) -> int:
        return datetime.fromtimestamp(at, self.zone).hour

    def _speed(self) -> float:
        """Seconds of the site's clock per real second."""
        real = self.clock.real_seconds(1.0)
        return 1.0 / real if real > 0 else 1.0


def _no_tick() -> None:
    """No run to wake (the campaign is not running)."""
