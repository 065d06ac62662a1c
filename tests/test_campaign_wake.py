"""The campaign re-decides at each pacing event, not only every ``tick_seconds``: a call's connection or end and an
agent turning ready wake its tick, run by the node's one scheduler (never two ticks at once)."""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import sqlalchemy as sa
from apscheduler.schedulers.base import STATE_RUNNING

from cartera.core.models import AgentConnected, CallOutcome, CallResult
from cartera.core.store.schema import ContactAttempt
from cartera.node import Node
from cartera.runtime.jobs import Job, Wakeable, new_scheduler
from cartera.workspace.agents import AgentState
from tests.conftest import write_portfolio, write_sites
from tests.peers.net import wait_until
from tests.test_campaign_modes import predictive_pace

START = datetime(2026, 11, 23, 14, tzinfo=UTC)


#: How long a wait may take on a loaded machine (the tests assert what happens, not how fast).
WAIT_S = 60


def test_each_pacing_event_wakes_the_campaign_tick() -> None:
    """A call's connection and its end, and an agent turning ready, wake the tick; a call the campaign did not
    place, and an agent starting a call, do not."""
    pace = predictive_pace(START)
    wakes: list[str] = []
    pace.wake = lambda: wakes.append("tick")
    pace.dialled(1, START)
    pace.connected(AgentConnected(1, "agent-01", START))
    assert len(wakes) == 1
    pace.finished(CallResult(1, CallOutcome.ANSWERED, "", START, START, START))
    assert len(wakes) == 2
    pace.finished(CallResult(2, CallOutcome.NO_ANSWER, "", START))  # not one the node handed the dialer
    pace.agent_state("ana", AgentState.ON_CALL, START)
    pace.agent_state("ana", AgentState.WRAP_UP, START)
    assert len(wakes) == 2
    pace.agent_state("ana", AgentState.READY, START)
    assert len(wakes) == 3


def test_a_wake_runs_the_job_at_once_and_never_two_runs_at_once() -> None:
    """An hour between scheduled runs: each wake runs the job; a wake during a run has one more run follow it."""
    runs: list[int] = []
    inside = threading.Event()
    release = threading.Event()

    def run() -> None:
        runs.append(len(runs))
        if len(runs) == 2:
            inside.set()
            release.wait(30)

    tick = Wakeable("campaign_tick", run)
    scheduler = new_scheduler([Job(tick.id, tick, 3600)])
    scheduler.start()
    try:
        wait_until(lambda: len(runs) == 1, "the first run", timeout=WAIT_S)
        tick.wake()
        wait_until(inside.is_set, "the woken run", timeout=WAIT_S)
        tick.wake()
        tick.wake()
        assert len(runs) == 2  # the run in progress is not doubled
        release.set()
        wait_until(lambda: len(runs) == 3, "the run the wakes during the second asked for", timeout=WAIT_S)
    finally:
        scheduler.shutdown(wait=True)
    assert len(runs) == 3


def test_a_wake_during_the_last_run_does_not_hang_the_schedulers_shutdown() -> None:
    """A node stopping mid-tick: the scheduler's shutdown waits for the running tick while holding its job stores'
    lock, so the run a wake asked for must not ask the scheduler for it (the node hung in its shutdown)."""
    runs: list[int] = []
    inside = threading.Event()
    release = threading.Event()

    def run() -> None:
        runs.append(len(runs))
        if len(runs) == 2:
            inside.set()
            release.wait(WAIT_S)

    tick = Wakeable("campaign_tick", run)
    scheduler = new_scheduler([Job(tick.id, tick, 3600)])
    scheduler.start()
    wait_until(lambda: len(runs) == 1, "the first run", timeout=WAIT_S)
    tick.wake()
    wait_until(inside.is_set, "the woken run", timeout=WAIT_S)
    tick.wake()  # a call ended during the run
    stopping = threading.Thread(target=scheduler.shutdown, kwargs={"wait": True}, daemon=True)
    stopping.start()
    wait_until(lambda: scheduler.state != STATE_RUNNING, "the shutdown to begin", timeout=WAIT_S)
    release.set()
    stopping.join(WAIT_S)
    assert not stopping.is_alive(), "the scheduler's shutdown hung on the run a wake asked for"
    assert len(runs) == 2  # no run after the stop


def test_an_ended_call_has_the_campaign_place_the_next_within_the_hour_between_its_ticks(
    tmp_path: Path, open_node: Callable[..., Node]
) -> None:
    """One seat, progressive, a tick an hour: each call's end wakes the tick that places the next, so the six due
    accounts are called one after the other (ticking on the hour alone, one call would be placed)."""
    path = write_sites(tmp_path)
    text = path.read_text().replace("tick_seconds = 0.2", 'tick_seconds = 3600\nmode = "progressive"')
    path.write_text(text.replace("seed = 7\n", "seed = 7\nagents = 1\n"))
    write_portfolio(tmp_path / "inbox", [f"BCO-{n};Deudor {n};+5730012345{n:02d};;1.000.000,00;COP" for n in range(6)])
    node = open_node(path)
    node.creditor_sync().run_once()
    runner = threading.Thread(target=node.run, kwargs={"duration": 120})
    runner.start()

    def placed() -> int:
        with node.db.reading() as session:
            return session.scalar(sa.select(sa.func.count()).select_from(ContactAttempt)) or 0

    try:
        wait_until(lambda: placed() >= 6, "the six accounts called", timeout=WAIT_S)
    finally:
        node.stop()
        runner.join(60)
