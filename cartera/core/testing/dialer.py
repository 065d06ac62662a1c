"""Conformance suite for :class:`cartera.core.adapters.Dialer` adapters.

Subclass :class:`DialerConformance` in a test module (name it ``TestMyDialer``) and override the fixtures
``context``, ``dialer`` and ``numbers`` (and ``ringing_number`` when ``numbers`` has no ``NO_ANSWER``, ``agents``
when the dialer declares ``pauses_agents`` or ``targets_agents``). Every test places real calls through the adapter
and asserts on what it reported to the :class:`CapturingContext`.
"""

from __future__ import annotations

import itertools
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any, ClassVar

import pytest
from pydantic import ValidationError

from cartera.core.adapters import Dialer
from cartera.core.errors import UnknownAgent, Unsupported
from cartera.core.models import (
    AgentConnected,
    CallOutcome,
    CallRequest,
    CallResult,
    CheckResult,
    SeatState,
    UnfinishedCall,
)
from cartera.core.testing.capabilities import assert_serves_http_as_declared
from cartera.core.testing.context import CapturingContext

_attempt_ids = itertools.count(910_000)


def _aware(moment: datetime | None) -> bool:
    return moment is not None and moment.tzinfo is not None and moment.utcoffset() is not None


class DialerConformance:
    """The contract of a dialer, checked generically. Override the three fixtures below."""

    #: Real seconds to wait for a call's report or for free capacity; raise it for slow peers.
    timeout: ClassVar[float] = 20.0
    #: Real seconds a call to ``ringing_number`` rings before the cancel test cancels it (it must ring longer).
    ring_before_cancel_s: ClassVar[float] = 0.5

    @pytest.fixture
    def context(self) -> CapturingContext:
        """A :class:`CapturingContext` the dialer under test reports to."""
        raise NotImplementedError("override the 'context' fixture: return a cartera.core.testing.CapturingContext")

    @pytest.fixture
    def dialer(self, context: CapturingContext) -> Iterator[Dialer[Any]]:
        """The adapter built with ``context`` and started; stopped at teardown (tests may stop it first)."""
        raise NotImplementedError(
            "override the 'dialer' fixture: yield your adapter built with `context` and started, "
            "then stop it (stop must tolerate having been called by the test already)"
        )

    @pytest.fixture
    def numbers(self) -> dict[CallOutcome, str]:
        """E.164 numbers the peer under test answers with each outcome; must contain ANSWERED."""
        raise NotImplementedError(
            "override the 'numbers' fixture: return {CallOutcome: E.164 number}, with at least ANSWERED"
        )

    @pytest.fixture
    def ringing_number(self, numbers: dict[CallOutcome, str]) -> str:
        """A number the peer lets ring unanswered for a few seconds: ``numbers[NO_ANSWER]`` by default."""
        if CallOutcome.NO_ANSWER not in numbers:
            pytest.fail("give 'numbers' a CallOutcome.NO_ANSWER, or override 'ringing_number'")
        return numbers[CallOutcome.NO_ANSWER]

    @pytest.fixture
    def agents(self) -> list[str]:
        """Every agent the peer under test serves (identities as the dialer reports them, at least two), when the
        dialer declares ``pauses_agents``; the pause test pauses them all."""
        return []

    # --- helpers --------------------------------------------------------------------------------------

    def _request(self, context: CapturingContext, phone: str) -> CallRequest:
        return CallRequest(
            attempt_id=next(_attempt_ids),
            site=context.site,
            phone=phone,
            account_ref="CONF-0001",
            variables={"balance": "1250000.00", "debtor_name": "Ana Conformidad"},
        )

    def _answered_number(self, numbers: dict[CallOutcome, str]) -> str:
        assert CallOutcome.ANSWERED in numbers, "the 'numbers' fixture must contain CallOutcome.ANSWERED"
        return numbers[CallOutcome.ANSWERED]

    def _place_within_capacity(self, dialer: Dialer[Any], requests: Iterable[CallRequest]) -> None:
        """Place each request as soon as the dialer reports free capacity."""
        for request in requests:
            deadline = time.monotonic() + self.timeout
            while dialer.capacity() <= 0:
                assert time.monotonic() < deadline, f"no free capacity within {self.timeout}s"
                time.sleep(0.005)
            dialer.place_call(request)

    def _results_for(self, context: CapturingContext, attempt_id: int) -> list[CallResult]:
        return [result for result in context.calls if result.attempt_id == attempt_id]

    def _wait_for_end(self, context: CapturingContext, attempt_id: int) -> None:
        context.wait_until(lambda: bool(self._results_for(context, attempt_id)), self.timeout, "the call's result")

    def _wait_for_capacity(self, dialer: Dialer[Any], wanted: Callable[[int], bool], what: str) -> int:
        deadline = time.monotonic() + self.timeout
        while not wanted(capacity := dialer.capacity()):
            assert time.monotonic() < deadline, f"capacity {capacity} after {self.timeout}s: expected {what}"
            time.sleep(0.02)
        return capacity

    def _answered_call(
        self, dialer: Dialer[Any], context: CapturingContext, phone: str
    ) -> tuple[CallResult, list[AgentConnected]]:
        """Place an answered call and wait for its end: its result and its agent connections."""
        request = self._request(context, phone)
        self._place_within_capacity(dialer, [request])
        context.wait_until(
            lambda: bool(self._results_for(context, request.attempt_id)), self.timeout, "the call's result"
        )
        (result,) = self._results_for(context, request.attempt_id)
        assert result.outcome is CallOutcome.ANSWERED, (result.outcome, result.raw_cause)
        return result, [event for event in context.agent_connections if event.attempt_id == request.attempt_id]

    def _assert_each_reported_once(self, context: CapturingContext, requests: list[CallRequest]) -> None:
        counts = Counter(result.attempt_id for result in context.calls)
        placed = {request.attempt_id for request in requests}
        assert set(counts) == placed, f"reported {sorted(counts)} but placed {sorted(placed)}"
        twice = sorted(attempt for attempt, count in counts.items() if count > 1)
        assert not twice, f"attempts reported more than once: {twice}"

    # --- the contract ---------------------------------------------------------------------------------

    def test_check_ok(self, dialer: Dialer[Any]) -> None:
        """check() on a started dialer is ok and gives an operator a non-empty line."""
        result = dialer.check()
        assert isinstance(result, CheckResult)
        assert result.ok, result.detail
        assert isinstance(result.detail, str)
        assert result.detail.strip()

    def test_capacity_idle(self, dialer: Dialer[Any]) -> None:
        """capacity() is a non-negative int, and positive on an idle dialer."""
        capacity = dialer.capacity()
        assert isinstance(capacity, int)
        assert not isinstance(capacity, bool)
        assert capacity > 0

    def test_answered_call_reported_once(
        self, dialer: Dialer[Any], context: CapturingContext, numbers: dict[CallOutcome, str]
    ) -> None:
        """An answered call is reported exactly once, with its attempt_id, a raw cause and ordered times."""
        request = self._request(context, self._answered_number(numbers))
        dialer.place_call(request)
        context.wait_until(
            lambda: bool(self._results_for(context, request.attempt_id)), self.timeout, "the call's result"
        )
        dialer.stop()
        results = self._results_for(context, request.attempt_id)
        assert len(results) == 1, f"attempt reported {len(results)} times"
        assert len(context.calls) == 1, "a call nobody placed was reported"
        result = results[0]
        assert result.outcome is CallOutcome.ANSWERED, (result.outcome, result.raw_cause)
        assert isinstance(result.raw_cause, str)
        assert result.raw_cause.strip()
        assert _aware(result.started_at)
        assert _aware(result.answered_at)
        assert _aware(result.ended_at)
        assert result.answered_at is not None
        assert result.ended_at is not None
        assert result.started_at <= result.answered_at <= result.ended_at
        if type(dialer).capabilities.reports_agents:
            assert (result.agent or "").strip(), "declares reports_agents but names no agent"
        else:
            assert result.agent is None, f"names agent {result.agent!r} but reports_agents is not declared"

    def test_outcomes_mapped(
        self, dialer: Dialer[Any], context: CapturingContext, numbers: dict[CallOutcome, str]
    ) -> None:
        """Each outcome the peer produces is mapped onto the right CallOutcome, keeping the raw cause."""
        self._answered_number(numbers)
        expected = [(self._request(context, phone), outcome) for outcome, phone in numbers.items()]
        self._place_within_capacity(dialer, (request for request, _ in expected))
        context.wait_for_calls(len(expected), self.timeout)
        dialer.stop()
        self._assert_each_reported_once(context, [request for request, _ in expected])
        by_attempt = {result.attempt_id: result for result in context.calls}
        for request, outcome in expected:
            result = by_attempt[request.attempt_id]
            assert result.outcome is outcome, f"{request.phone}: expected {outcome}, got {result.outcome}"
            assert result.raw_cause.strip(), f"{request.phone}: empty raw_cause"
            assert _aware(result.started_at)
            if outcome is not CallOutcome.ANSWERED:
                assert result.answered_at is None, f"{request.phone}: {outcome} call has answered_at"
            if result.ended_at is not None:
                assert _aware(result.ended_at)
                assert result.started_at <= result.ended_at

    def test_place_call_returns_promptly(
        self, dialer: Dialer[Any], context: CapturingContext, numbers: dict[CallOutcome, str]
    ) -> None:
        """place_call returns without waiting for the call: before its result is reported."""
        request = self._request(context, self._answered_number(numbers))
        began = time.monotonic()
        dialer.place_call(request)
        took = time.monotonic() - began
        assert not self._results_for(context, request.attempt_id), "place_call waited for the call to end"
        assert took < 2.0, f"place_call took {took:.2f}s"
        context.wait_until(
            lambda: bool(self._results_for(context, request.attempt_id)), self.timeout, "the call's result"
        )
        assert self._results_for(context, request.attempt_id)[0].outcome is CallOutcome.ANSWERED

    def test_concurrent_calls(
        self, dialer: Dialer[Any], context: CapturingContext, numbers: dict[CallOutcome, str]
    ) -> None:
        """Several calls placed at once (up to capacity, at most 5) are each answered and reported once."""
        phone = self._answered_number(numbers)
        count = min(dialer.capacity(), 5)
        requests = [self._request(context, phone) for _ in range(count)]
        for request in requests:
            dialer.place_call(request)
        capacity = dialer.capacity()
        assert isinstance(capacity, int)
        assert capacity >= 0
        context.wait_for_calls(count, self.timeout)
        dialer.stop()
        self._assert_each_reported_once(context, requests)
        assert all(result.outcome is CallOutcome.ANSWERED for result in context.calls), [
            (result.outcome, result.raw_cause) for result in context.calls
        ]

    def test_stop_reports_calls_in_progress(
        self, dialer: Dialer[Any], context: CapturingContext, numbers: dict[CallOutcome, str]
    ) -> None:
        """stop() with calls in progress returns once every placed call was reported exactly once."""
        phone = self._answered_number(numbers)
        requests = [self._request(context, phone) for _ in range(min(dialer.capacity(), 5))]
        for request in requests:
            dialer.place_call(request)
        assert not context.calls, "calls ended before stop(): nothing was in progress"
        dialer.stop()
        self._assert_each_reported_once(context, requests)
        reported = len(context.calls)
        time.sleep(0.3)
        assert len(context.calls) == reported, "calls were reported after stop() returned"

    def test_recordings_as_declared(
        self, dialer: Dialer[Any], context: CapturingContext, numbers: dict[CallOutcome, str]
    ) -> None:
        """A dialer declaring records_calls reports a recording of an answered call: a non-empty file on disk,
        referring to the placed attempt. Any other dialer reports none."""
        request = self._request(context, self._answered_number(numbers))
        dialer.place_call(request)
        if type(dialer).capabilities.records_calls:
            context.wait_for_recordings(1, self.timeout)
        context.wait_until(
            lambda: bool(self._results_for(context, request.attempt_id)), self.timeout, "the call's result"
        )
        dialer.stop()
        if not type(dialer).capabilities.records_calls:
            assert not context.recordings, "reported a recording but records_calls is not declared"
            return
        for recording in context.recordings:
            assert recording.attempt_id == request.attempt_id
            assert recording.path.is_file(), f"{recording.path} does not exist"
            assert recording.path.stat().st_size > 0, f"{recording.path} is empty"
            assert recording.duration_s >= 0
            assert _aware(recording.started_at)

    @pytest.mark.parametrize("when", ["being_set_up", "ringing"])
    def test_cancel_before_answer(
        self, dialer: Dialer[Any], context: CapturingContext, ringing_number: str, when: str
    ) -> None:
        """A call cancelled before it is answered (at once, or while it rings) by a dialer declaring cancels ends
        exactly once, as CANCELLED and unanswered; once it has ended, cancel() is False. Any other dialer refuses
        (False) and the call goes on to another end."""
        request = self._request(context, ringing_number)
        dialer.place_call(request)
        if when == "ringing":
            time.sleep(self.ring_before_cancel_s)
        assert not self._results_for(context, request.attempt_id), "the call ended before it could be cancelled"
        if not type(dialer).capabilities.cancels:
            assert dialer.cancel(request.attempt_id) is False, "cancel() accepted but cancels is not declared"
            dialer.stop()
            self._assert_each_reported_once(context, [request])
            assert context.calls[0].outcome is not CallOutcome.CANCELLED
            return
        assert dialer.cancel(request.attempt_id) is True
        context.wait_until(
            lambda: bool(self._results_for(context, request.attempt_id)), self.timeout, "the cancelled call's result"
        )
        assert dialer.cancel(request.attempt_id) is False, "cancel() of a finished call"
        dialer.stop()
        results = self._results_for(context, request.attempt_id)
        assert len(results) == 1, f"attempt reported {len(results)} times"
        assert len(context.calls) == 1, "a call nobody placed was reported"
        result = results[0]
        assert result.outcome is CallOutcome.CANCELLED, (result.outcome, result.raw_cause)
        assert result.raw_cause.strip()
        assert result.answered_at is None
        assert _aware(result.started_at)
        assert _aware(result.ended_at)
        assert result.ended_at is not None
        assert result.started_at <= result.ended_at

    def test_cancel_unknown_or_finished_call_is_false(
        self, dialer: Dialer[Any], context: CapturingContext, numbers: dict[CallOutcome, str]
    ) -> None:
        """cancel() is False for an attempt this dialer never placed and for an answered call that ended, whose
        one report stays ANSWERED."""
        assert dialer.cancel(next(_attempt_ids)) is False
        request = self._request(context, self._answered_number(numbers))
        dialer.place_call(request)
        context.wait_until(
            lambda: bool(self._results_for(context, request.attempt_id)), self.timeout, "the call's result"
        )
        assert dialer.cancel(request.attempt_id) is False
        dialer.stop()
        results = self._results_for(context, request.attempt_id)
        assert [result.outcome for result in results] == [CallOutcome.ANSWERED], [r.raw_cause for r in results]

    def test_reconcile_reports_each_lost_call_once_and_dials_none(
        self, dialer: Dialer[Any], context: CapturingContext, numbers: dict[CallOutcome, str]
    ) -> None:
        """reconcile() of calls a killed run left in flight, of which the peer knows nothing, reports each exactly
        once as UNKNOWN (never a guessed outcome, never dialled again), with a raw cause; calls placed afterwards
        are placed as usual."""
        phone = self._answered_number(numbers)
        requested = context.clock.now() - timedelta(minutes=5)
        lost = [UnfinishedCall(self._request(context, phone), requested) for _ in range(3)]
        dialer.reconcile(lost)
        context.wait_for_calls(len(lost), self.timeout)
        request = self._request(context, phone)
        self._place_within_capacity(dialer, [request])
        context.wait_until(
            lambda: bool(self._results_for(context, request.attempt_id)), self.timeout, "the new call's result"
        )
        dialer.stop()
        self._assert_each_reported_once(context, [*(call.request for call in lost), request])
        for call in lost:
            (result,) = self._results_for(context, call.request.attempt_id)
            assert result.outcome is CallOutcome.UNKNOWN, (result.outcome, result.raw_cause)
            assert result.raw_cause.strip()
            assert result.answered_at is None
            assert _aware(result.started_at)
        assert self._results_for(context, request.attempt_id)[0].outcome is CallOutcome.ANSWERED
        assert {recording.attempt_id for recording in context.recordings} <= {request.attempt_id}

    def test_agent_connections_as_declared(
        self, dialer: Dialer[Any], context: CapturingContext, numbers: dict[CallOutcome, str]
    ) -> None:
        """A dialer declaring reports_agent_connections reports an answered call's connection to an agent once,
        naming the attempt and a non-empty agent (the one the end names, when it names agents), at a time between
        the answer and the end, before the call's end. Any other dialer reports none."""
        result, connections = self._answered_call(dialer, context, self._answered_number(numbers))
        dialer.stop()
        if not type(dialer).capabilities.reports_agent_connections:
            assert not context.agent_connections, (
                "reported an agent connection but reports_agent_connections is not declared"
            )
            return
        assert len(connections) == 1, f"the answered call's connection was reported {len(connections)} times"
        assert len(context.agent_connections) == 1, "a connection of a call nobody placed was reported"
        (connection,) = connections
        assert isinstance(connection.agent, str)
        assert connection.agent.strip(), "the connection names no agent"
        assert _aware(connection.at)
        assert result.answered_at is not None
        assert result.ended_at is not None
        assert result.answered_at <= connection.at <= result.ended_at, (result.answered_at, connection.at)
        assert context.reports.index(connection) < context.reports.index(result), "connection reported after the end"
        if type(dialer).capabilities.reports_agents:
            assert result.agent == connection.agent, "the call's end names another agent than its connection"

    def test_pausing_agents_as_declared(
        self, dialer: Dialer[Any], context: CapturingContext, numbers: dict[CallOutcome, str], agents: list[str]
    ) -> None:
        """A dialer declaring pauses_agents has no capacity while every agent is paused (twice: idempotent), offers
        calls again once one is resumed (and, reporting connections, connects them to that one alone), is back
        to its idle capacity once all are resumed, and refuses an agent it does not serve (UnknownAgent). Any
        other dialer refuses to pause or resume (Unsupported)."""
        if not type(dialer).capabilities.pauses_agents:
            with pytest.raises(Unsupported):
                dialer.pause_agent("agent-conformance", "break")
            with pytest.raises(Unsupported):
                dialer.resume_agent("agent-conformance")
            return
        assert len(agents) >= 2, "declares pauses_agents: override the 'agents' fixture with every agent (2 or more)"
        idle = self._wait_for_capacity(dialer, lambda capacity: capacity > 0, "some on an idle dialer")
        with pytest.raises(UnknownAgent):
            dialer.pause_agent("no-such-agent-conformance", "break")
        with pytest.raises(UnknownAgent):
            dialer.resume_agent("no-such-agent-conformance")
        for agent in [*agents, *agents]:
            dialer.pause_agent(agent, "break")
        self._wait_for_capacity(dialer, lambda capacity: capacity == 0, "0 with every agent paused")
        dialer.resume_agent(agents[0])
        self._wait_for_capacity(dialer, lambda capacity: capacity > 0, "some with one agent resumed")
        phone = self._answered_number(numbers)
        for _ in range(2):
            _, connections = self._answered_call(dialer, context, phone)
            if type(dialer).capabilities.reports_agent_connections:
                assert [event.agent for event in connections] == [agents[0]], "a paused agent was offered a call"
        for agent in agents:
            dialer.resume_agent(agent)
        self._wait_for_capacity(dialer, lambda capacity: capacity == idle, f"{idle} with every agent resumed")
        dialer.stop()

    def test_targeting_agents_as_declared(
        self, dialer: Dialer[Any], context: CapturingContext, numbers: dict[CallOutcome, str], agents: list[str]
    ) -> None:
        """A dialer declaring targets_agents (with reports_agent_connections and the 'agents' fixture) connects an
        answered call placed for one agent (``CallRequest.agent``) to that agent, the longest idle or not, and
        reports a call for an agent it does not serve failed, once. Core never sends another dialer such a call."""
        capabilities = type(dialer).capabilities
        if not capabilities.targets_agents:
            return
        assert capabilities.reports_agent_connections, "declares targets_agents: report the connections too"
        assert len(agents) >= 2, "declares targets_agents: override the 'agents' fixture with every agent (2 or more)"
        phone = self._answered_number(numbers)
        for _ in range(2):
            request = replace(self._request(context, phone), agent=agents[-1])
            self._place_within_capacity(dialer, [request])
            self._wait_for_end(context, request.attempt_id)
            connected = [e.agent for e in context.agent_connections if e.attempt_id == request.attempt_id]
            assert connected == [agents[-1]], f"a call placed for {agents[-1]} was connected to {connected}"
        stranger = replace(self._request(context, phone), agent="no-such-agent-conformance")
        self._place_within_capacity(dialer, [stranger])
        self._wait_for_end(context, stranger.attempt_id)
        (result,) = self._results_for(context, stranger.attempt_id)
        assert result.outcome is CallOutcome.FAILED, (result.outcome, result.raw_cause)
        dialer.stop()

    def test_abandoning_as_declared(
        self, dialer: Dialer[Any], context: CapturingContext, numbers: dict[CallOutcome, str], agents: list[str]
    ) -> None:
        """A dialer declaring abandons_calls (with pauses_agents and the 'agents' fixture) ends a call a person answers
        while every agent is paused (no agent free in time) as ABANDONED, once: unanswered, no agent, no connection,
        no disposition, a raw cause; with an agent resumed, the next answered call is ANSWERED. Any other dialer is
        not asked: core sees no abandoned calls from it."""
        capabilities = type(dialer).capabilities
        if not capabilities.abandons_calls:
            return
        assert capabilities.pauses_agents, "declares abandons_calls: the kit abandons a call by pausing every agent"
        assert agents, "declares abandons_calls: override the 'agents' fixture with every agent"
        phone = self._answered_number(numbers)
        for agent in agents:
            dialer.pause_agent(agent, "break")
        self._wait_for_capacity(dialer, lambda capacity: capacity == 0, "0 with every agent paused")
        request = self._request(context, phone)
        dialer.place_call(request)  # as a predictive dialer's call answered when no agent is free
        self._wait_for_end(context, request.attempt_id)
        (result,) = self._results_for(context, request.attempt_id)
        assert result.outcome is CallOutcome.ABANDONED, (result.outcome, result.raw_cause)
        assert (result.answered_at, result.agent, result.disposition) == (None, None, None)
        assert result.raw_cause.strip()
        assert not [event for event in context.agent_connections if event.attempt_id == request.attempt_id]
        dialer.resume_agent(agents[0])
        self._wait_for_capacity(dialer, lambda capacity: capacity > 0, "some with one agent resumed")
        self._answered_call(dialer, context, phone)
        for agent in agents:
            dialer.resume_agent(agent)
        dialer.stop()

    def test_serves_http_as_declared(self, dialer: Dialer[Any]) -> None:
        """http_router() gives routes exactly when the dialer declares serves_http."""
        assert_serves_http_as_declared(dialer)

    def test_seats_as_declared(self, dialer: Dialer[Any], context: CapturingContext, agents: list[str]) -> None:
        """A dialer declaring reports_seats lists each of its agents once, with a state and an aware time not after
        the clock's now: every agent of the 'agents' fixture ready on the idle dialer and, when it declares
        pauses_agents, paused once paused and ready again once resumed. Any other dialer raises Unsupported."""
        if not type(dialer).capabilities.reports_seats:
            with pytest.raises(Unsupported):
                dialer.seats()
            return
        assert agents, "declares reports_seats: override the 'agents' fixture with every agent"

        def states() -> dict[str, SeatState]:
            seats = dialer.seats()
            names = [seat.agent for seat in seats]
            assert len(set(names)) == len(names), f"an agent is listed twice: {names}"
            for seat in seats:
                assert seat.agent.strip(), "a seat names no agent"
                assert isinstance(seat.state, SeatState), seat
                assert _aware(seat.since), seat
                assert seat.since <= context.clock.now(), seat
            return {seat.agent: seat.state for seat in seats}

        assert {agent: states().get(agent) for agent in agents} == dict.fromkeys(agents, SeatState.READY)
        if type(dialer).capabilities.pauses_agents:
            dialer.pause_agent(agents[0], "break")
            assert states()[agents[0]] is SeatState.PAUSED
            dialer.resume_agent(agents[0])
            assert states()[agents[0]] is SeatState.READY
        dialer.stop()

    def test_config_rejects_unknown_key(self, dialer: Dialer[Any]) -> None:
        """The adapter's config_model refuses a key it does not know."""
        model = type(dialer).config_model
        assert isinstance(dialer.config, model)
        settings = {**dialer.config.model_dump(), "no_such_setting": 1}
        with pytest.raises(ValidationError) as caught:
            model.model_validate(settings)
        kinds = {error["type"] for error in caught.value.errors()}
        assert "extra_forbidden" in kinds, caught.value
