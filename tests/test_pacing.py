"""The pacers of cartera.contact.pacing: the abandonment budget, the fallback below the team size, the
estimators' convergence, the ADAPT_TAPERED port's rules, and a simulated hour within the limit."""

from __future__ import annotations

import importlib.util
import math
import random
import sys
from dataclasses import replace
from pathlib import Path
from types import ModuleType

import pytest

from cartera.contact.pacing import (
    AbandonBudget,
    AgentCycle,
    DialEnded,
    Estimates,
    Floor,
    LiveCallSettled,
    PredictivePacer,
    PredictiveSettings,
    ProgressivePacer,
    RatioPacer,
    VicidialPacer,
)
from cartera.contact.pacing.estimates import AnswerRate, LogNormal
from cartera.contact.pacing.vicidial import AdaptSettings, DropCounts, adapt_level, hhmm

BENCH = Path(__file__).resolve().parents[1] / "bench" / "bench_pacing.py"
NOON = 12 * 3600.0


def bench() -> ModuleType:
    spec = importlib.util.spec_from_file_location("bench_pacing", BENCH)
    assert spec
    assert spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("bench_pacing", module)
    spec.loader.exec_module(module)
    return module


def test_the_budget_counts_abandons_against_answers_over_its_window() -> None:
    budget = AbandonBudget(limit=0.03, window=3600.0, bucket=60.0)
    for second in range(100):
        budget.record(float(second), abandoned=second < 2)
    assert budget.rate() == pytest.approx(0.02)
    assert budget.remaining(100.0) == pytest.approx(1.0)
    budget.record(200.0, abandoned=True)
    assert budget.remaining(200.0) == pytest.approx(0.03 * 101 - 3)
    assert budget.remaining(3750.0) == pytest.approx(0.03 - 1)  # only the abandon at 200 s is left in the window
    assert budget.remaining(4000.0) == 0.0
    with pytest.raises(ValueError, match="between 0 and 1"):
        AbandonBudget(limit=1.5)


def test_progressive_and_ratio_count_ready_agents_against_calls_in_flight() -> None:
    floor = Floor(now=0.0, time_of_day=NOON, ready=4, talking=(10.0,), ringing=(1.0, 2.0), waiting=1)
    assert ProgressivePacer().calls_to_place(floor) == 1
    assert RatioPacer(dial_ratio=1.5).calls_to_place(floor) == 3
    assert RatioPacer(dial_ratio=1.15).calls_to_place(Floor(now=0.0, time_of_day=NOON, ready=100)) == 115


def test_below_the_team_size_the_predictive_pacer_dials_progressively() -> None:
    pacer = PredictivePacer(PredictiveSettings(min_team=5))
    assert pacer.calls_to_place(Floor(now=0.0, time_of_day=NOON, ready=4)) == 4
    assert pacer.calls_to_place(Floor(now=0.0, time_of_day=NOON, ready=3, talking=(30.0,), ringing=(1.0,))) == 2
    assert pacer.calls_to_place(Floor(now=0.0, time_of_day=NOON, ready=10)) > 10  # a team: more calls than agents


def test_the_predictive_pacer_never_places_fewer_calls_than_progressive() -> None:
    pacer = PredictivePacer()
    for _ in range(100):
        pacer.observe(LiveCallSettled(at=1.0, abandoned=True))  # far over the limit: the budget is owed
    assert pacer.calls_to_place(Floor(now=2.0, time_of_day=NOON, ready=8, talking=(30.0,) * 8, ringing=(1.0,) * 2)) == 6


def test_a_spent_budget_holds_expected_abandons_to_the_limit_of_the_calls_in_flight() -> None:
    fresh = PredictivePacer(PredictiveSettings(start_lam=0.5))
    spent = PredictivePacer(PredictiveSettings(start_lam=0.5))
    for second in range(200):
        spent.budget.record(float(second), abandoned=second % 10 == 0)  # 10% abandoned: far over 3%
    fresh.budget.record(0.0, abandoned=False)
    for _ in range(1000):
        fresh.budget.record(0.0, abandoned=False)
    floor = Floor(now=300.0, time_of_day=NOON, ready=10, wrapping=(25.0,) * 10, talking=(60.0,) * 30)
    generous, careful = fresh.calls_to_place(floor), spent.calls_to_place(floor)
    assert careful < generous
    prediction, live = spent.predict(floor)
    assert prediction.abandons(careful) <= spent.budget.limit * prediction.live_answers(live, careful) + 1e-9


def test_each_abandon_lowers_the_pacers_boldness_and_connections_raise_it() -> None:
    pacer = PredictivePacer()
    start = pacer.lam
    pacer.observe(LiveCallSettled(at=1.0, abandoned=True))
    assert pacer.lam < start
    lowered = pacer.lam
    for _ in range(10):
        pacer.observe(LiveCallSettled(at=2.0, abandoned=False))
    assert pacer.lam > lowered
    assert pacer.budget.answered == 11
    assert pacer.budget.abandoned == 1


def test_the_answer_rate_converges_and_follows_the_hour() -> None:
    rng = random.Random(7)
    rate = AnswerRate(prior=0.5, half_life=2000.0)
    for _ in range(4000):
        rate.observe(10, rng.random() < 0.12)
        rate.observe(15, rng.random() < 0.30)
    assert rate.probability(10) == pytest.approx(0.12, abs=0.025)
    assert rate.probability(15) == pytest.approx(0.30, abs=0.03)
    assert rate.probability(3) == pytest.approx(rate.overall())


def test_talk_times_converge_to_their_log_normal() -> None:
    rng = random.Random(3)
    talk = LogNormal(60.0, half_life=2000.0)
    sigma = 0.6
    for _ in range(5000):
        talk.observe(rng.lognormvariate(math.log(180.0) - sigma * sigma / 2, sigma))
    assert talk.mean() == pytest.approx(180.0, rel=0.08)
    assert talk.sigma == pytest.approx(sigma, abs=0.05)


def test_quick_failures_do_not_count_before_the_calls_dialled_with_them_have_ended() -> None:
    estimates = Estimates()
    before = estimates.answer.overall()
    for call in range(50):
        estimates.observe(DialEnded(at=3.0 + call * 0.01, hour=12, seconds=3.0, live=False))
    assert estimates.answer.overall() == before  # the live answers dialled at the same time are still ringing
    estimates.observe(DialEnded(at=40.0, hour=12, seconds=10.0, live=True))
    assert estimates.answer.overall() < before


def test_a_wrapping_agent_frees_up_sooner_than_a_talking_one() -> None:
    estimates = Estimates()
    for _ in range(200):
        estimates.observe(AgentCycle(talk=180.0, wrap=30.0))
    assert estimates.wrapper_free_within(28.0, 5.0) > 0.5
    assert estimates.talker_free_within(20.0, 10.0) == 0.0
    assert estimates.answers_within(0.0, 20.0, 0.3) > estimates.answers_within(0.0, 5.0, 0.3)


def test_adapt_tapered_moves_the_level_by_idle_agents_and_tapers_on_drops() -> None:
    settings = AdaptSettings(adaptive_latest_server_time=1700)
    quiet = DropCounts()
    raised = adapt_level(1.5, differential=5, agents_average=50, counts=quiet, now_hhmm=1000, settings=settings)
    assert raised == pytest.approx(1.65)
    capped = adapt_level(2.9, differential=25, agents_average=50, counts=quiet, now_hhmm=1000, settings=settings)
    assert capped == 3.0
    dropping = DropCounts(calls_today=1000, answers_today=300, drops_today=30)
    tapered = adapt_level(3.0, differential=0, agents_average=50, counts=dropping, now_hhmm=1200, settings=settings)
    assert tapered == pytest.approx(1.5)  # five "hours" (500) left of 1000
    floored = adapt_level(2.0, differential=0, agents_average=50, counts=dropping, now_hhmm=1600, settings=settings)
    assert floored == 1.0
    assert adapt_level(2.0, differential=0, agents_average=50, counts=dropping, now_hhmm=1000, settings=settings) == (
        pytest.approx(1.4)
    )
    late = adapt_level(2.0, differential=0, agents_average=50, counts=dropping, now_hhmm=1730, settings=settings)
    assert late == 1.0
    burst = DropCounts(calls_one=40, drops_one=25)
    assert adapt_level(2.0, differential=0, agents_average=50, counts=burst, now_hhmm=1000, settings=settings) == 1.0
    assert hhmm(14.5 * 3600) == 1430


def test_the_vicidial_port_keeps_level_times_agents_lines_counting_connected_calls() -> None:
    pacer = VicidialPacer(AdaptSettings(auto_dial_level=2.0))
    floor = Floor(now=0.0, time_of_day=NOON, ready=4, talking=(10.0,) * 4, wrapping=(5.0,) * 2, ringing=(1.0,) * 3)
    assert pacer.calls_to_place(floor) == 2 * 10 - 3 - 4
    assert pacer.calls_to_place(floor) == 0  # its dial loop runs every 2.5 s


def test_a_simulated_hour_of_predictive_dialling_stays_within_the_limit() -> None:
    module = bench()
    result = module.simulate(module.Scenario(agents=20, answer_rate=0.2, hours=1.0, seed=5), "cartera")
    progressive = module.simulate(module.Scenario(agents=20, answer_rate=0.2, hours=1.0, seed=5), "progressive")
    assert result.abandon_rate <= 0.03
    assert result.occupancy > progressive.occupancy + 0.1


def test_a_segment_that_answers_less_gets_a_lower_estimate_and_an_unknown_one_the_hours() -> None:
    rng = random.Random(11)
    rate = AnswerRate(prior=0.3, half_life=4000.0)
    for _ in range(3000):
        rate.observe(10, rng.random() < 0.40, "1-30")
        rate.observe(10, rng.random() < 0.10, "180+")
        rate.observe(11, rng.random() < 0.25)
    assert rate.probability(10, "1-30") == pytest.approx(0.40, abs=0.04)
    assert rate.probability(10, "180+") == pytest.approx(0.10, abs=0.03)
    assert rate.probability(10, None) == rate.probability(10)
    assert rate.probability(10, "61-90") == rate.probability(10)  # a segment never called: its hour's rate
    # at an hour where no call of a segment was placed yet, the segments' difference already shows
    assert rate.probability(11, "180+") < rate.probability(11) < rate.probability(11, "1-30")


def test_a_calls_segment_reaches_the_answer_rate_once_it_settles() -> None:
    estimates = Estimates()
    for call in range(40):
        estimates.observe(DialEnded(at=50.0 + call, hour=12, seconds=20.0, live=False, segment="180+"))
        estimates.observe(DialEnded(at=50.5 + call, hour=12, seconds=10.0, live=True, segment="1-30"))
    settled = estimates.answer
    assert settled.probability(12, "180+") < settled.probability(12) < settled.probability(12, "1-30")


def _learnt_segments() -> PredictivePacer:
    """A predictive pacer that has seen segment 1-30 answer 40% of its calls at noon and 180+ 8%."""
    rng = random.Random(5)
    pacer = PredictivePacer()
    for _ in range(2000):
        pacer.estimates.answer.observe(12, rng.random() < 0.40, "1-30")
        pacer.estimates.answer.observe(12, rng.random() < 0.08, "180+")
    for _ in range(300):
        pacer.observe(AgentCycle(talk=180.0, wrap=30.0))
    for _ in range(1000):
        pacer.budget.record(0.0, abandoned=False)
    return pacer


def test_the_pacer_places_more_calls_for_a_segment_that_answers_less_at_the_same_floor() -> None:
    pacer = _learnt_segments()
    floor = Floor(now=10.0, time_of_day=NOON, ready=4, talking=(100.0,) * 10, wrapping=(20.0,) * 4)
    low = pacer.calls_to_place(replace(floor, next_segments=("180+",) * 50))
    high = pacer.calls_to_place(replace(floor, next_segments=("1-30",) * 50))
    unknown = pacer.calls_to_place(floor)
    mixed = pacer.calls_to_place(replace(floor, next_segments=("180+", "1-30") * 25))
    assert low > mixed > high >= 4
    assert low > unknown > high


def test_each_ringing_call_counts_at_its_own_segments_answer_rate() -> None:
    pacer = _learnt_segments()
    floor = Floor(now=10.0, time_of_day=NOON, ready=4, talking=(100.0,) * 10, ringing=(3.0,) * 6)
    _, live_low = pacer.predict(replace(floor, ringing_segments=("180+",) * 6))
    _, live_high = pacer.predict(replace(floor, ringing_segments=("1-30",) * 6))
    _, live_unknown = pacer.predict(floor)
    assert live_low < live_unknown < live_high
    assert pacer.calls_to_place(replace(floor, ringing_segments=("180+",) * 6)) > pacer.calls_to_place(
        replace(floor, ringing_segments=("1-30",) * 6)
    )
    with pytest.raises(ValueError, match="2 segments for 6 calls ringing"):
        replace(floor, ringing_segments=("180+", "1-30"))
