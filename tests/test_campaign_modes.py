"""The campaign's modes (``[campaign] mode``): how many calls each tick places, within the dialer's capacity."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
import sqlalchemy as sa

from cartera.contact.abandonment import abandonment_rate
from cartera.contact.pace import Pace
from cartera.contact.pacing import AgentCycle, Estimates, PredictivePacer
from cartera.core.clock import SimulatedClock
from cartera.core.config import AbandonmentConfig, CampaignConfig, load_site
from cartera.core.errors import ConfigError
from cartera.core.hooks import Hooks
from cartera.core.models import CallOutcome, CallResult
from cartera.core.store.schema import Account, ContactAttempt
from cartera.node import Node
from cartera.workspace.agents import AgentState
from tests.conftest import store_site_calls, write_portfolio, write_sites

ROWS = [f"BCO-{n};Deudor {n};+5730012345{n:02d};;1.000.000,00;COP" for n in range(1, 7)]


def predictive_pace(start: datetime, speed: float = 1) -> Pace:
    """A predictive site's pacing alone, in Bogotá on a simulated clock from ``start``: no agents, dialer or calls."""
    return Pace(
        config=CampaignConfig(mode="predictive"),
        clock=SimulatedClock(start, speed=speed),
        zone=ZoneInfo("America/Bogota"),
        workspace=list,
        dialer=lambda: None,
        answered=lambda _now: [],
    )


def _with_mode(tmp_path: Path, mode: str) -> Path:
    path = write_sites(tmp_path)
    path.write_text(path.read_text().replace("[sites.t.campaign]\n", f'[sites.t.campaign]\nmode = "{mode}"\n'))
    write_portfolio(tmp_path / "inbox", ROWS)
    return path


def test_a_mode_typo_is_a_config_error_naming_file_line_and_key(tmp_path: Path, hooks: Hooks) -> None:
    path = _with_mode(tmp_path, "predictve")
    line = next(i for i, row in enumerate(path.read_text().splitlines(), 1) if "predictve" in row)
    with pytest.raises(ConfigError) as raised:
        load_site(path, "t", hooks.collect_adapters())
    message = str(raised.value)
    assert message.startswith(f"{path}:{line}: site 't', key 'campaign.mode'")
    assert "'ratio', 'progressive', 'predictive' or 'preview'" in message


def test_preview_places_no_call_by_itself(tmp_path: Path, open_node: Callable[..., Node]) -> None:
    node = open_node(_with_mode(tmp_path, "preview"))
    node.creditor_sync().run_once()
    campaign = node._campaign()
    assert campaign is not None
    assert campaign.dialer.capacity() > 0
    assert [campaign.tick() for _ in range(3)] == [0, 0, 0]
    with node.db.reading() as session:
        assert session.scalar(sa.select(sa.func.count()).select_from(ContactAttempt)) == 0


def _floor_site(tmp_path: Path, mode: str, dialer: str, *, speed: int = 1, rows: list[str] = ROWS) -> Path:
    """Site ``t`` in ``mode`` on a simulator with these ``dialer`` settings, its clock at ``speed``."""
    path = _with_mode(tmp_path, mode)
    text = path.read_text().replace("speed = 600", f"speed = {speed}")
    path.write_text(text.replace("seed = 7\nring_seconds = [1, 10]\ntalk_seconds = [5, 30]", f"seed = 7\n{dialer}"))
    write_portfolio(tmp_path / "inbox", rows)
    return path


RINGING = "agents = 3\ndial_ratio = 3.0\nring_seconds = [60, 60]\noutcome_weights = { answered = 1 }"


def test_ratio_places_what_the_dialer_counts_free(tmp_path: Path, open_node: Callable[..., Node]) -> None:
    node = open_node(_floor_site(tmp_path, "ratio", RINGING))
    node.creditor_sync().run_once()
    campaign = node._campaign()
    assert campaign is not None
    assert campaign.dialer.capacity() == 9  # 3 seats x 3.0
    assert campaign.tick() == 6  # every due account
    assert campaign.dialer.capacity() == 3


def test_progressive_keeps_no_more_calls_ringing_than_ready_agents(
    tmp_path: Path, open_node: Callable[..., Node]
) -> None:
    node = open_node(_floor_site(tmp_path, "progressive", RINGING))
    node.creditor_sync().run_once()
    campaign = node._campaign()
    assert campaign is not None
    placed = [campaign.tick(), campaign.tick()]
    floor = node.pace.floor()
    assert placed == [3, 0]
    assert (floor.ready, len(floor.ringing)) == (3, 3)
    campaign.dialer.pause_agent("agent-01", "break")
    floor = node.pace.floor()
    assert (floor.ready, len(floor.ringing)) == (2, 3)
    assert campaign.tick() == 0


def test_an_agent_is_counted_once_from_the_workspace_or_the_dialer(
    tmp_path: Path, open_node: Callable[..., Node]
) -> None:
    """The dialer's seat a workspace user is bound to counts as the workspace says, the other seats as the
    dialer says."""
    node = open_node(_floor_site(tmp_path, "progressive", RINGING))
    assert node.pace.floor().ready == 3
    node.workspace.open_page("ana", "agent-01", None)  # signs in paused, and pauses the seat
    assert node.pace.floor().ready == 2
    node.workspace.roster.ready("ana")
    assert node.pace.floor().ready == 3
    node.workspace.roster.pause("ana", "break")
    assert node.pace.floor().ready == 2


PREDICTIVE = (
    "agents = 10\ndial_ratio = 3.0\nabandon_after = 2\nidentification_seconds = 3\nrecord = false\n"
    "ring_seconds = [4, 16]\ntalk_seconds = [20, 60]\n"
    "outcome_weights = { answered = 0.15, no_answer = 0.6, busy = 0.25 }"
)


def test_predictive_learns_from_the_nodes_calls_and_keeps_within_the_abandon_limit(
    tmp_path: Path, open_node: Callable[..., Node]
) -> None:
    """Ten seats, 15% of calls answered by a person, 20-60 s talks, no wrap-up, abandoned after 2 s without a free
    seat, and yesterday's calls in the store (400 answered by a person, 4 of them abandoned, one in six dialled:
    the others unanswered): five minutes of the campaign ticking every second of the simulated clock."""
    rows = [f"BCO-{n};Deudor {n};+57300{n:07d};;1.000.000,00;COP" for n in range(1, 1201)]
    node = open_node(_floor_site(tmp_path, "predictive", PREDICTIVE, speed=20, rows=rows))
    node.creditor_sync().run_once()
    yesterday = node.clock.now() - timedelta(days=1)
    with node.db.session() as session:
        account = session.scalars(sa.select(Account.id)).first()
        session.add_all(
            ContactAttempt(
                site="t",
                account_id=account,
                phone="+573000000001",
                state="finished",
                requested_at=yesterday - timedelta(seconds=10 * n),
                outcome=(CallOutcome.NO_ANSWER, CallOutcome.ANSWERED)[n % 6 == 0] if n % 600 else CallOutcome.ABANDONED,
            )
            for n in range(2400)
        )
    campaign = node._campaign()
    assert campaign is not None
    pacer = node.pace.pacer
    assert isinstance(pacer, PredictivePacer)
    ahead = 0  # ticks that placed more calls than the ready agents not yet given one
    end = node.clock.now() + timedelta(minutes=5)
    while node.clock.now() < end:
        floor = node.pace.floor()
        ahead += campaign.tick() > max(0, floor.ready - len(floor.ringing))
        node.clock.sleep(1.0)
    campaign.dialer.stop()
    with node.db.reading() as session:
        rate = abandonment_rate(session, "t", node.clock.now(), AbandonmentConfig())
    assert rate.answered >= 420
    assert rate.rate <= rate.limit, rate.describe()
    assert pacer.budget.answered == rate.answered  # the store's window, then each call answered since
    assert ahead > 0
    assert pacer.estimates.answer.overall() < 0.25  # from its prior 35% towards the calls' 15% and yesterday's 17%
    assert pacer.estimates.talk.mean() < 90  # from its prior 180 s towards 20-60 s


def test_a_workspace_agent_leaving_its_wrap_up_teaches_the_predictive_pacer(
    tmp_path: Path, open_node: Callable[..., Node]
) -> None:
    node = open_node(_floor_site(tmp_path, "predictive", RINGING))
    pacer = node.pace.pacer
    assert isinstance(pacer, PredictivePacer)
    node.workspace.open_page("ana", "agent-01", None)
    node.workspace.roster.ready("ana")
    node.workspace.roster.connected("ana", 1)
    node.workspace.roster.ended("ana", 1)
    assert pacer.estimates.talk.mu == Estimates().talk.mu  # no cycle until the wrap-up ends
    node.workspace.dispositioned("ana", 1)
    assert pacer.estimates.talk.mu != Estimates().talk.mu


def test_a_cycles_talk_and_wrap_up_are_the_workspaces_times_on_the_sites_clock() -> None:
    """Talk from the call's connection to its end, wrap-up from there until the disposition is saved (or timed
    out), in seconds of the site's clock: a clock running 10 times faster than the workspace's wall clock."""
    start = datetime(2026, 11, 23, 14, tzinfo=UTC)
    pace = predictive_pace(start, speed=10)
    pacer = pace.pacer
    assert isinstance(pacer, PredictivePacer)
    expected = Estimates()
    for left in (AgentState.READY, AgentState.PAUSED) * 10:
        pace.agent_state("ana", AgentState.ON_CALL, start)
        pace.agent_state("ana", AgentState.WRAP_UP, start + timedelta(seconds=10))
        pace.agent_state("ana", left, start + timedelta(seconds=13))
        expected.observe(AgentCycle(talk=100.0, wrap=30.0))
    assert pacer.estimates.talk.mean() == pytest.approx(expected.talk.mean())
    assert pacer.estimates.wrap.mean() == pytest.approx(expected.wrap.mean())
    assert pacer.estimates.talk.mean() < Estimates().talk.mean()


@pytest.mark.parametrize(("answered", "ahead"), [(None, False), (10, True)])
def test_predictive_starts_from_the_answer_rate_of_the_sites_latest_calls(
    answered: int | None, ahead: bool, tmp_path: Path, open_node: Callable[..., Node]
) -> None:
    """Four ready seats, nothing ringing: from its prior answer rate (35%) the pacer dials one call per agent;
    once the store holds yesterday's 60 calls, 10 of them answered by a person, it dials ahead of its agents at
    its first decision (the learnt rate, about 21%, keeps the expected abandons within its aim)."""
    rows = [f"BCO-{n};Deudor {n};+5730012345{n:02d};;1.000.000,00;COP" for n in range(1, 13)]
    ringing = "agents = 4\ndial_ratio = 3.0\nring_seconds = [60, 60]\noutcome_weights = { answered = 1 }"
    path = _floor_site(tmp_path, "predictive", ringing, rows=rows)
    path.write_text(path.read_text().replace('mode = "predictive"', 'mode = "predictive"\nmin_team = 4'))
    node = open_node(path)
    node.creditor_sync().run_once()
    if answered is not None:
        yesterday = node.clock.now() - timedelta(days=1)
        outcomes = [CallOutcome.ANSWERED] * answered + [CallOutcome.BUSY] * (60 - answered)
        store_site_calls(node, ((yesterday + timedelta(minutes=n), outcome) for n, outcome in enumerate(outcomes)))
    campaign = node._campaign()
    assert campaign is not None
    assert node.pace.floor().ready == 4
    placed = campaign.tick()
    assert placed > 4 if ahead else placed == 4


def test_each_call_carries_its_accounts_segment_and_the_floor_the_lists_next(
    tmp_path: Path, open_node: Callable[..., Node]
) -> None:
    """Three seats, six due accounts (three 200 days past due, three 10): a tick places three calls, each ringing
    with its account's segment, and the three picks it left are the segments the pacer's next calls count at."""
    node = open_node(_floor_site(tmp_path, "progressive", RINGING))
    node.creditor_sync().run_once()
    today = node.clock.now().astimezone(node.site.zone).date()
    with node.db.session() as session:
        for account in session.scalars(sa.select(Account)):
            days = 200 if account.ref in ("BCO-1", "BCO-3", "BCO-5") else 10
            account.due_on = today - timedelta(days=days)
    campaign = node._campaign()
    assert campaign is not None
    assert campaign.tick() == 3
    floor = node.pace.floor()
    assert len(floor.ringing_segments) == len(floor.ringing) == 3
    assert len(floor.next_segments) == 3
    assert Counter(floor.ringing_segments + floor.next_segments) == {"180+": 3, "1-30": 3}


def test_the_pacer_learns_the_answer_rate_of_each_segment_from_the_nodes_calls() -> None:
    start = datetime(2026, 11, 23, 14, tzinfo=UTC)
    pace = predictive_pace(start)
    zone = pace.zone
    pacer = pace.pacer
    assert isinstance(pacer, PredictivePacer)
    today = start.astimezone(zone).date()
    for n in range(60):
        at = start + timedelta(seconds=n)
        pace.dialled(2 * n, at, today - timedelta(days=200))
        pace.dialled(2 * n + 1, at, today - timedelta(days=10))
    pace.dialled(500, start, today)  # not past due yet: no segment
    pace.dialled(501, start)
    assert Counter(pace.floor().ringing_segments) == {"180+": 60, "1-30": 60, None: 2}
    for n in range(60):
        at = start + timedelta(seconds=n)
        unanswered = CallResult(2 * n, CallOutcome.NO_ANSWER, "", at, ended_at=at + timedelta(seconds=25))
        answered = at + timedelta(seconds=8)
        live = CallResult(2 * n + 1, CallOutcome.ANSWERED, "", at, answered, answered + timedelta(seconds=60))
        pace.finished(unanswered)
        pace.finished(live)
    hour = pace.floor().hour
    rate = pacer.estimates.answer
    assert rate.probability(hour, "180+") < rate.probability(hour) < rate.probability(hour, "1-30")
    pace.upcoming(["180+", None])
    assert pace.floor().next_segments == ("180+", None)
