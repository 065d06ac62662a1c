"""The simulator dialer: the dialer conformance suite plus the simulation's own promises."""

from __future__ import annotations

import json
import logging
import math
import re
import time
import wave
from array import array
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from pydantic import ValidationError

from cartera.core.clock import SimulatedClock
from cartera.core.config import load_site
from cartera.core.errors import ConfigError, UnknownAgent
from cartera.core.hooks import load_plugins
from cartera.core.models import CallOutcome, CallRequest, CallResult, CheckResult, DispositionCode, Recording
from cartera.core.registry import AdapterCatalog
from cartera.core.testing.context import CapturingContext
from cartera.core.testing.dialer import DialerConformance
from cartera.plugins.dialers.simulator.client import CANCELLED_CAUSE, RAW_CAUSES
from cartera.plugins.dialers.simulator.config import DEFAULT_OUTCOME_WEIGHTS, SimulatorConfig
from cartera.plugins.dialers.simulator.plugin import SimulatorDialer, cartera_register_dialers
from tests.conftest import write_sites

START = datetime(2026, 11, 23, 13, 0, tzinfo=UTC)  # a Monday, 08:00 in Bogotá
ANSWERS = "+573001110001"
NUMBERS = {
    CallOutcome.ANSWERED: ANSWERS,
    CallOutcome.BUSY: "+573001110002",
    CallOutcome.NO_ANSWER: "+573001110003",
    CallOutcome.REJECTED: "+573001110004",
    CallOutcome.INVALID_NUMBER: "+573001110005",
    CallOutcome.CONGESTION: "+573001110006",
    CallOutcome.FAILED: "+573001110007",
}


class TestSimulatorConformance(DialerConformance):
    @pytest.fixture
    def context(self, tmp_path: Path) -> CapturingContext:
        return CapturingContext(tmp_path / "dialer", clock=SimulatedClock(START, speed=600))

    @pytest.fixture
    def numbers(self) -> dict[CallOutcome, str]:
        return dict(NUMBERS)

    @pytest.fixture
    def dialer(self, context: CapturingContext, numbers: dict[CallOutcome, str]) -> Iterator[SimulatorDialer]:
        # no answer rings 900 s of the clock (1.5 s real): long enough to be cancelled while it rings; an answered
        # call waits up to 600 s (1 s real) for a free seat: abandoned only with every seat paused
        scripted = {phone: outcome for outcome, phone in numbers.items()}
        config = SimulatorConfig(scripted=scripted, seed=7, ring_seconds=(3, 900), abandon_after=600)
        dialer = SimulatorDialer(config, context)
        dialer.start()
        yield dialer
        dialer.stop()

    @pytest.fixture
    def agents(self) -> list[str]:
        return ["agent-01", "agent-02", "agent-03", "agent-04"]


class OrderedContext(CapturingContext):
    """Also remembers the order in which calls and recordings were reported."""

    def __init__(self, data_dir: Path, *, clock: SimulatedClock) -> None:
        super().__init__(data_dir, clock=clock)
        self.events: list[tuple[str, int | None]] = []

    def report_call(self, result: CallResult) -> None:
        self.events.append(("call", result.attempt_id))
        super().report_call(result)

    def report_recording(self, recording: Recording) -> None:
        self.events.append(("recording", recording.attempt_id))
        super().report_recording(recording)


Build = Callable[..., tuple[SimulatorDialer, OrderedContext]]


@pytest.fixture
def build(tmp_path: Path) -> Iterator[Build]:
    """Starts simulators with the given settings (and clock speed); stops them after the test."""
    started: list[SimulatorDialer] = []

    def make(speed: float = 6000, **settings: Any) -> tuple[SimulatorDialer, OrderedContext]:
        context = OrderedContext(tmp_path / f"site{len(started)}", clock=SimulatedClock(START, speed))
        dialer = SimulatorDialer(SimulatorConfig.model_validate(settings), context)
        dialer.start()
        started.append(dialer)
        return dialer, context

    yield make
    for dialer in started:
        dialer.stop()


def call(attempt_id: int, phone: str = ANSWERS, **variables: str) -> CallRequest:
    return CallRequest(attempt_id=attempt_id, site="test", phone=phone, variables=variables)


def place_all(dialer: SimulatorDialer, requests: Iterable[CallRequest]) -> None:
    """Place each call once the dialer has room for it, as core's campaign does."""
    for request in requests:
        deadline = time.monotonic() + 10
        while dialer.capacity() == 0:
            assert time.monotonic() < deadline, "the dialer never freed capacity"
            time.sleep(0.002)
        dialer.place_call(request)


def read_wav(path: Path) -> tuple[tuple[int, int, int, str], array[int]]:
    """((frame rate, sample width, channels, compression), samples) of a WAV file."""
    with wave.open(str(path), "rb") as wav:
        form = (wav.getframerate(), wav.getsampwidth(), wav.getnchannels(), wav.getcomptype())
        samples = array("h", wav.readframes(wav.getnframes()))
    return form, samples


def rms(samples: array[int]) -> float:
    return math.sqrt(sum(sample * sample for sample in samples) / len(samples)) if samples else 0.0


def recorded_call(build: Build) -> tuple[CallResult, Recording, OrderedContext]:
    dialer, context = build(scripted={ANSWERS: "answered"}, talk_seconds=(20, 40))
    dialer.place_call(call(1))
    result = context.wait_for_calls(1)[0]
    (recording,) = context.recordings
    return result, recording, context


def test_registers_as_simulator() -> None:
    catalog = AdapterCatalog.empty()
    cartera_register_dialers(catalog.dialers)
    assert catalog.dialers.get("simulator") is SimulatorDialer


def test_check_names_agents_and_ratio(build: Build) -> None:
    dialer, _ = build()
    assert dialer.check() == CheckResult(ok=True, detail="simulator ready: 4 agents, dial ratio 1.5")
    dialer.stop()
    assert not dialer.check().ok


def test_recording_is_a_mixmonitor_wav_as_long_as_the_talk(build: Build) -> None:
    result, recording, context = recorded_call(build)
    assert context.events == [("recording", 1), ("call", 1)], "the recording must be reported first"
    monitor = context.data_dir / "monitor"
    assert recording.path == monitor / f"{result.vendor_call_id}.wav"
    assert sorted(monitor.iterdir()) == [recording.path], "temporary files were left behind"
    assert recording.started_at == result.answered_at
    assert recording.agent == result.agent
    assert recording.vendor_call_id == result.vendor_call_id
    form, samples = read_wav(recording.path)
    assert form == (8000, 2, 1, "NONE")
    assert result.talk_seconds >= 20
    assert abs(len(samples) - result.talk_seconds * 8000) <= 1
    assert recording.duration_s == len(samples) / 8000


def test_recording_sounds_like_speech(build: Build) -> None:
    _, recording, _ = recorded_call(build)
    _, samples = read_wav(recording.path)
    assert rms(samples) > 800, "the recording is (nearly) silent"
    assert max(abs(sample) for sample in samples) < 32767, "the recording clips"
    windows = [rms(samples[i : i + 400]) for i in range(0, len(samples) - 400, 400)]
    loud = sum(level > 1000 for level in windows) / len(windows)
    quiet = sum(level < 400 for level in windows) / len(windows)
    assert 0.3 < loud < 0.95, f"speech should come in syllables and turns ({loud:.0%} loud)"
    assert quiet > 0.05, "speech should have pauses"


def test_seed_gives_each_attempt_the_same_call(build: Build) -> None:
    def outcomes(seed: int) -> dict[int, tuple[CallOutcome, DispositionCode | None]]:
        dialer, context = build(seed=seed, record=False)
        place_all(dialer, [call(n, f"+5730012340{n:02d}") for n in range(30)])
        results = context.wait_for_calls(30)
        return {r.attempt_id: (r.outcome, r.disposition.code if r.disposition else None) for r in results}

    first = outcomes(11)
    assert outcomes(11) == first
    assert outcomes(12) != first
    assert len({outcome for outcome, _ in first.values()}) >= 3


@pytest.mark.parametrize(("agents", "ratio", "slots"), [(4, 1.5, 6), (3, 1.7, 5), (1, 1.0, 1), (100, 1.15, 115)])
def test_idle_capacity_is_agents_times_dial_ratio(build: Build, agents: int, ratio: float, slots: int) -> None:
    dialer, _ = build(agents=agents, dial_ratio=ratio)
    assert dialer.capacity() == slots


def test_calls_in_flight_take_capacity(build: Build) -> None:
    dialer, context = build(
        speed=600,
        agents=3,
        dial_ratio=1.7,
        scripted={ANSWERS: "answered"},
        ring_seconds=(1, 1),
        talk_seconds=(200, 240),
    )
    for n in range(2):
        dialer.place_call(call(n))
    assert dialer.capacity() == 3
    for n in range(2, 6):
        dialer.place_call(call(n))
    assert dialer.capacity() == 0
    assert len(context.wait_for_calls(6)) == 6
    deadline = time.monotonic() + 5
    while dialer.capacity() != 5:
        assert time.monotonic() < deadline, "capacity did not come back once the calls ended"
        time.sleep(0.002)


def test_default_outcome_mix_follows_the_weights(build: Build) -> None:
    dialer, context = build(seed=2026, record=False, agents=10, dial_ratio=2.0)
    total = 400
    place_all(dialer, [call(n, f"+57301{n:07d}") for n in range(total)])
    results = context.wait_for_calls(total)
    shares = Counter(result.outcome for result in results)
    for outcome, weight in DEFAULT_OUTCOME_WEIGHTS.items():
        assert abs(shares[outcome] / total - weight) < 0.06, f"{outcome}: {shares[outcome]} of {total}"
    for result in results:
        assert result.raw_cause == RAW_CAUSES[result.outcome]
        answered = result.outcome is CallOutcome.ANSWERED
        assert (result.disposition is not None) == answered
        assert (result.answered_at is not None) == answered
        assert (re.fullmatch(r"agent-(0[1-9]|10)", result.agent or "") is not None) == answered
        assert re.fullmatch(r"\d{10}\.\d+", result.vendor_call_id or "")
    assert len({result.vendor_call_id for result in results}) == total


def test_promise_to_pay_takes_part_of_the_balance(build: Build, caplog: pytest.LogCaptureFixture) -> None:
    dialer, context = build(scripted={ANSWERS: "answered"}, disposition_weights={"promise_to_pay": 1}, record=False)
    balance = Decimal("1500000.00")
    requests = [call(n, balance=str(balance)) for n in range(4)]
    requests += [call(4), call(5, balance="n/a")]
    with caplog.at_level(logging.WARNING):
        place_all(dialer, requests)
        results = {result.attempt_id: result for result in context.wait_for_calls(len(requests))}
    assert "balance 'n/a' is not a decimal" in caplog.text
    for attempt, result in results.items():
        disposition = result.disposition
        assert disposition is not None
        assert disposition.code is DispositionCode.PROMISE_TO_PAY
        assert result.answered_at is not None
        assert disposition.promised_date is not None
        local_day = result.answered_at.astimezone(ZoneInfo("America/Bogota")).date()
        assert 3 <= (disposition.promised_date - local_day).days <= 15
        if attempt >= 4:
            assert disposition.promised_amount is None
            continue
        amount = disposition.promised_amount
        assert amount is not None
        assert Decimal(0) < amount <= balance
        assert amount.as_tuple().exponent == -2
        assert (amount / balance) in {Decimal(f) for f in ("0.1", "0.15", "0.2", "0.25", "0.3", "0.5", "1")}


def test_stop_hangs_up_a_ringing_call(build: Build) -> None:
    dialer, context = build(speed=20, scripted={ANSWERS: "answered"}, ring_seconds=(40, 60))
    dialer.place_call(call(1))
    time.sleep(0.1)
    began = time.monotonic()
    dialer.stop()
    assert time.monotonic() - began < 1
    (result,) = context.calls
    assert (result.outcome, result.raw_cause, result.answered_at) == (CallOutcome.FAILED, "shutdown", None)
    assert not context.recordings
    dialer.place_call(call(2))
    assert context.calls[1].attempt_id == 2
    assert (context.calls[1].outcome, context.calls[1].raw_cause) == (CallOutcome.FAILED, "dialer stopped")


def test_stop_ends_a_talking_call_and_trims_its_recording(build: Build) -> None:
    dialer, context = build(speed=20, scripted={ANSWERS: "answered"}, ring_seconds=(1, 1), talk_seconds=(200, 240))
    dialer.place_call(call(1))
    time.sleep(0.5)
    dialer.stop()
    (result,) = context.calls
    assert (result.outcome, result.raw_cause) == (CallOutcome.ANSWERED, "16 NORMAL_CLEARING")
    assert 0 < result.talk_seconds < 200
    (recording,) = context.recordings
    _, samples = read_wav(recording.path)
    assert abs(len(samples) - result.talk_seconds * 8000) <= 1
    assert recording.duration_s == len(samples) / 8000


def test_cancel_spares_an_answered_call(build: Build) -> None:
    dialer, context = build(speed=600, scripted={ANSWERS: "answered"}, ring_seconds=(0, 0), talk_seconds=(600, 600))
    dialer.place_call(call(1))
    time.sleep(0.3)  # answered at once, talks 1 s real
    assert dialer.cancel(1) is False
    (result,) = context.wait_for_calls(1)
    assert result.outcome is CallOutcome.ANSWERED
    assert result.talk_seconds >= 600
    assert [recording.attempt_id for recording in context.recordings] == [1]


def test_a_cancelled_call_makes_no_recording_and_frees_its_line(build: Build) -> None:
    dialer, context = build(speed=600, agents=1, dial_ratio=1.0, ring_seconds=(600, 600))
    dialer.place_call(call(1, NUMBERS[CallOutcome.NO_ANSWER]))
    assert dialer.capacity() == 0
    assert dialer.cancel(1) is True
    (result,) = context.wait_for_calls(1)
    assert (result.outcome, result.raw_cause, result.answered_at) == (CallOutcome.CANCELLED, CANCELLED_CAUSE, None)
    assert result.ended_at is not None
    assert (result.ended_at - result.started_at).total_seconds() < 600
    assert not context.recordings
    deadline = time.monotonic() + 5
    while dialer.capacity() != 1:
        assert time.monotonic() < deadline, "the cancelled call's line was not freed"
        time.sleep(0.002)


def test_the_same_attempt_is_not_placed_twice(build: Build) -> None:
    dialer, context = build(speed=600, scripted={ANSWERS: "answered"}, talk_seconds=(20, 20), record=False)
    dialer.place_call(call(1))
    dialer.place_call(call(1))
    dialer.stop()
    assert [result.attempt_id for result in context.calls] == [1]


def test_a_failed_recording_still_reports_the_call(build: Build, caplog: pytest.LogCaptureFixture) -> None:
    dialer, context = build(scripted={ANSWERS: "answered"})
    (context.data_dir / "monitor").write_text("not a directory")
    with caplog.at_level(logging.ERROR):
        dialer.place_call(call(1))
        (result,) = context.wait_for_calls(1)
    assert result.outcome is CallOutcome.ANSWERED
    assert not context.recordings
    assert "recording" in caplog.text
    assert "not written" in caplog.text


def test_config_defaults_and_toml_shapes() -> None:
    config = SimulatorConfig.model_validate(
        {"ring_seconds": [2, 20], "scripted": {"+573001234567": "busy"}, "outcome_weights": {"answered": 1}}
    )
    assert config.ring_seconds == (2.0, 20.0)
    assert config.scripted == {"+573001234567": CallOutcome.BUSY}
    assert config.outcome_weights == {CallOutcome.ANSWERED: 1.0}
    defaults = SimulatorConfig()
    assert (defaults.agents, defaults.dial_ratio, defaults.record, defaults.seed) == (4, 1.5, True, None)
    assert defaults.talk_seconds == (20.0, 240.0)
    assert math.isclose(sum(defaults.outcome_weights.values()), 1.0)


@pytest.mark.parametrize(
    "settings",
    [
        {"dial_ratio": 3.5},
        {"dial_ratio": 0.9},
        {"agents": 0},
        {"ring_seconds": [30, 5]},
        {"talk_seconds": [-1, 5]},
        {"scripted": {"3001234567": "answered"}},
        {"scripted": {"+573001234567": "voicemail"}},
        {"outcome_weights": {"answered": 0, "busy": 0}},
        {"outcome_weights": {"answered": -1, "busy": 2}},
        {"outcome_weights": {"answered": 1, "cancelled": 1}},
        {"scripted": {"+573001234567": "cancelled"}},
        {"outcome_weights": {"answered": 1, "unknown": 1}},
        {"scripted": {"+573001234567": "unknown"}},
        {"disposition_weights": {"paid_in_full": 1}},
    ],
)
def test_config_rejects_bad_settings(settings: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        SimulatorConfig.model_validate(settings)


def test_named_seats_are_the_agents_connected_and_paused(build: Build) -> None:
    """Seats given by name are the agents: as many as named, the connections name them, a paused one gets none."""
    dialer, context = build(seats=["sim/1", "sim/2"], scripted={ANSWERS: "answered"}, dial_ratio=1.0)
    assert dialer.check().detail == "simulator ready: 2 agents, dial ratio 1"
    assert dialer.capacity() == 2
    dialer.pause_agent("sim/1", "lunch")
    assert dialer.capacity() == 1
    place_all(dialer, [call(1), call(2), call(3)])
    context.wait_for_calls(3)
    assert [event.agent for event in context.agent_connections] == ["sim/2"] * 3
    assert [result.agent for result in context.calls] == ["sim/2"] * 3
    with pytest.raises(UnknownAgent, match="no seat 'agent-01' \\(seats: sim/1, sim/2\\)"):
        dialer.resume_agent("agent-01")


def test_a_call_for_a_seat_is_connected_to_that_seat(build: Build) -> None:
    """A request naming an agent (a callback for it) reaches that seat, not the longest idle; an unknown seat fails."""
    dialer, context = build(seats=["sim/1", "sim/2", "sim/3"], scripted={ANSWERS: "answered"}, dial_ratio=1.0)
    assert dialer.capabilities.targets_agents
    place_all(dialer, [replace(call(1), agent="sim/3"), replace(call(2), agent="sim/3"), replace(call(3), agent="x")])
    context.wait_for_calls(3)
    assert [event.agent for event in context.agent_connections] == ["sim/3", "sim/3"]
    failed = next(result for result in context.calls if result.attempt_id == 3)
    assert (failed.outcome, failed.raw_cause) == (CallOutcome.FAILED, "no such seat 'x'")


@pytest.mark.parametrize(
    ("settings", "fragment"),
    [
        ({"seats": ["a", "a"]}, "a seat is named twice"),
        ({"seats": ["a", "b"], "agents": 3}, "2 seats for 3 agents"),
        ({"seats": ["bad seat"]}, "String should match pattern"),
    ],
)
def test_bad_seats_are_refused_naming_the_key(tmp_path: Path, settings: dict[str, Any], fragment: str) -> None:
    lines = [f"{key} = {json.dumps(value)}" for key, value in settings.items()]
    config = write_sites(tmp_path)
    config.write_text(config.read_text().replace("seed = 7", "seed = 7\n" + "\n".join(lines)))
    with pytest.raises(ConfigError, match=f"key 'dialer.seats': .*{fragment}"):
        load_site(config, "t", load_plugins(entry_points=False).collect_adapters())


def test_an_answered_call_no_seat_is_free_for_is_abandoned(build: Build) -> None:
    """With ``abandon_after``, a person answering while every seat talks waits that long, hears the identification
    message and is hung up on: abandoned, with no agent, no conversation and no recording; without it the call waits
    for the seat."""
    settings: dict[str, Any] = {
        "agents": 1,
        "dial_ratio": 2.0,
        "scripted": {ANSWERS: "answered"},
        "ring_seconds": (5, 5),
        "talk_seconds": (100, 100),
        "identification_seconds": 4,
    }
    dialer, context = build(speed=600, abandon_after=2, **settings)
    assert dialer.capabilities.abandons_calls
    place_all(dialer, [call(1), call(2)])
    first, second = sorted(context.wait_for_calls(2), key=lambda result: result.attempt_id)
    assert {first.outcome, second.outcome} == {CallOutcome.ANSWERED, CallOutcome.ABANDONED}
    abandoned = first if first.outcome is CallOutcome.ABANDONED else second
    assert (abandoned.agent, abandoned.answered_at, abandoned.disposition) == (None, None, None)
    assert abandoned.ended_at is not None
    # ring, wait, identification; well before the seat is free (talk 100 s): simulated time only runs late under load
    assert 5 + 2 + 4 <= (abandoned.ended_at - abandoned.started_at).total_seconds() < 5 + 100
    assert {recording.attempt_id for recording in context.recordings} == {1, 2} - {abandoned.attempt_id}
    dialer, context = build(speed=600, **settings)
    place_all(dialer, [call(1), call(2)])
    assert [result.outcome for result in context.wait_for_calls(2)] == [CallOutcome.ANSWERED] * 2


#: One seat dialled for two: each answered call talks 30 s, 5 s after it was placed.
ONE_SEAT_TWO_CALLS: dict[str, Any] = {
    "agents": 1,
    "dial_ratio": 2.0,
    "record": False,
    "scripted": {ANSWERS: "answered"},
    "ring_seconds": (5, 5),
    "talk_seconds": (30, 30),
}


def test_a_seat_freed_within_the_wait_takes_the_call(build: Build) -> None:
    """A seat hanging up within ``abandon_after`` of the answer takes the waiting call: nothing is abandoned."""
    dialer, context = build(speed=60, abandon_after=30, **ONE_SEAT_TWO_CALLS)
    dialer.place_call(call(1))
    deadline = time.monotonic() + 5
    while not context.agent_connections:  # the seat talks from 5 s to 35 s
        assert time.monotonic() < deadline, "the first call was never connected"
        time.sleep(0.002)
    dialer.place_call(call(2))  # answered about 10 s in: it waits for the seat
    results = context.wait_for_calls(2)
    assert [result.outcome for result in results] == [CallOutcome.ANSWERED] * 2
    assert [result.agent for result in results] == ["agent-01"] * 2
    second = results[1]
    assert second.answered_at is not None
    assert results[0].ended_at is not None
    assert second.answered_at < results[0].ended_at


@pytest.mark.abuse
def test_without_abandon_after_a_call_waits_for_a_free_seat_never_a_busy_or_paused_one(build: Build) -> None:
    """As a real ACD: a seat on a call, or paused (in wrap-up, on a break), is given no other call; an answered
    call waits until one is free (#14 red team round 11: a second call replaced a workspace agent's first)."""
    dialer, context = build(speed=600, **ONE_SEAT_TWO_CALLS)
    place_all(dialer, [call(1), call(2)])
    results = sorted(context.wait_for_calls(2), key=lambda result: result.answered_at or START)
    assert [(result.outcome, result.agent) for result in results] == [(CallOutcome.ANSWERED, "agent-01")] * 2
    connected = {event.attempt_id: event.at for event in context.agent_connections}
    assert results[0].ended_at is not None
    assert connected[results[1].attempt_id] >= results[0].ended_at  # not while the seat talked

    dialer, context = build(speed=600, agents=1, record=False, scripted={ANSWERS: "answered"}, ring_seconds=(5, 5))
    dialer.pause_agent("agent-01", "wrap_up")
    dialer.place_call(call(3))
    clock = context.clock
    waited = clock.now() + timedelta(seconds=60)
    while clock.now() < waited:  # answered at 5 s: it waits, the only seat paused
        time.sleep(0.01)
    assert context.agent_connections == []
    resumed = clock.now()
    dialer.resume_agent("agent-01")
    (result,) = context.wait_for_calls(1)
    assert (result.outcome, result.agent) == (CallOutcome.ANSWERED, "agent-01")
    assert context.agent_connections[0].at >= resumed


def test_abandoned_is_not_an_outcome_to_script() -> None:
    with pytest.raises(ValidationError, match="abandon_after"):
        SimulatorConfig.model_validate({"scripted": {ANSWERS: "abandoned"}})
