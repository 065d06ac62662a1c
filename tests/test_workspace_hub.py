"""The workspace hub and the agents' roster: states driving the simulator's pacing, events pushed from any thread
to an asyncio reader, replay after ``Last-Event-ID``, calls left by their agents, and the screen pop's two steps."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest
from sqlalchemy import select

from cartera.core.adapters import Dialer
from cartera.core.errors import UsageError
from cartera.core.models import AgentConnected, CallOutcome, CallResult
from cartera.core.store.schema import AuditEntry
from cartera.node import Node
from cartera.portfolio.identity import PortfolioKey
from cartera.workspace.agents import AgentState
from cartera.workspace.hub import (
    AGENT_KINDS,
    AGENT_STATE,
    CALL_NOT_VISIBLE,
    KEPT_EVENTS,
    RESET,
    SCREEN_POP,
    WorkspaceEvent,
    WorkspaceHub,
)
from cartera.workspace.screen import NotOnScreen
from tests.conftest import write_sites
from tests.workspace_seed import DAY, KEYS, Calls, seed_calls


@pytest.fixture
def node(tmp_path: Path, open_node: Callable[[Path], Node]) -> Node:
    config = write_sites(tmp_path)
    text = config.read_text().replace("[sites.t.campaign]\n", "[sites.t.campaign]\nenabled = false\n")
    config.write_text(text.replace("seed = 7\n", 'seed = 7\nseats = ["agent-01", "agent-02"]\n'))
    return open_node(config)


class Wall:
    """A wall clock the test moves."""

    def __init__(self) -> None:
        self.at = datetime(2026, 12, 4, 12, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.at


def hub_of(node: Node, wall: Wall, disposed: list[tuple[str, int, str]]) -> WorkspaceHub:
    def dispose(agent: str, attempt_id: int, code: str) -> None:
        disposed.append((agent, attempt_id, code))

    return WorkspaceHub(
        node.workspace.screens,
        now=wall,
        dialer=lambda: node.adapter("dialer", Dialer),
        dispose=dispose,
        wrap_up_limit=timedelta(seconds=120),
        gone_limit=timedelta(seconds=30),
    )


def test_pacing_counts_only_ready_agents(node: Node) -> None:
    dialer = node.adapter("dialer", Dialer)
    hub = node.workspace
    everyone = dialer.capacity()
    hub.open_page("ana", "agent-01", None)
    assert hub.roster.get("ana").state is AgentState.PAUSED  # opening the page is not being ready
    assert dialer.capacity() < everyone
    hub.roster.ready("ana")
    assert dialer.capacity() == everyone
    hub.roster.pause("ana", "lunch")
    assert dialer.capacity() < everyone
    assert hub.roster.ready_agents() == []


def test_no_call_is_offered_until_the_disposition_is_saved(node: Node) -> None:
    calls = seed_calls(node)
    hub = node.workspace
    hub.open_page("ana", "agent-01", None)
    hub.roster.ready("ana")
    hub.agent_connected(AgentConnected(calls.colombian, "agent-01", DAY))
    assert hub.roster.get("ana").state is AgentState.ON_CALL
    with pytest.raises(UsageError, match="save the disposition"):
        hub.roster.ready("ana")
    ended = DAY + timedelta(seconds=40)
    node.calls.on_call_result(
        CallResult(calls.colombian, CallOutcome.ANSWERED, "16", DAY, DAY, ended, agent="agent-01")
    )  # the end as the dialer reports it: the node tells the hub
    assert hub.roster.get("ana").state is AgentState.WRAP_UP
    assert hub.roster.ready_agents() == []
    status = hub.dispositioned("ana", calls.colombian)
    assert status is not None
    assert status.state is AgentState.READY
    assert hub.on_screen("ana") is None


def test_events_published_from_another_thread_reach_the_reader_and_a_reconnect_replays_what_it_missed(
    node: Node,
) -> None:
    hub = node.workspace

    async def read() -> tuple[list[str], list[str]]:
        first = hub.subscribe("ana")
        publisher = threading.Thread(target=lambda: [hub.publish("x", {"n": n}, agent="ana") for n in range(3)])
        publisher.start()
        got = [await first.next(2) for _ in range(3)]
        publisher.join()
        first.close()
        hub.publish("x", {"n": 3}, agent="ana")
        hub.publish("x", {"n": 4}, agent="bea")  # another agent's: never ana's
        assert got[0] is not None
        again = hub.subscribe("ana", last_event_id=got[0].id)
        replayed = [await again.next(0.5) for _ in range(3)]
        again.close()
        return [str(e.data["n"]) for e in got if e], [str(e.data["n"]) for e in replayed if e]

    live, replayed = asyncio.run(read())
    assert live == ["0", "1", "2"]
    assert replayed == ["1", "2", "3"]


@pytest.mark.abuse
def test_a_reconnect_far_behind_is_replayed_everything_kept_then_live_events_and_never_overflows(node: Node) -> None:
    hub = node.workspace

    async def resume() -> tuple[list[int], bool]:
        sent = [hub.publish("x", {"n": n}) for n in range(300)]
        again = hub.subscribe(None, last_event_id=sent[19].id)  # 280 back: more than the live queue holds
        hub.publish("x", {"n": 300})
        got = [await again.next(0.5) for _ in range(281)]
        overflowed = again.overflowed
        again.close()
        return [int(str(e.data["n"])) for e in got if e], overflowed

    got, overflowed = asyncio.run(resume())
    assert got == list(range(20, 301))
    assert not overflowed


@pytest.mark.abuse
def test_a_reconnect_older_than_the_kept_events_gets_a_reset_then_live_events(node: Node) -> None:
    hub = node.workspace

    async def resume() -> tuple[list[str], int, bool]:
        first = hub.publish("x", {"n": -1})
        last = [hub.publish("x", {"n": n}) for n in range(KEPT_EVENTS + 1)][-1]
        again = hub.subscribe(None, last_event_id=first.id)  # the event after it is no longer kept
        hub.publish("x", {"n": KEPT_EVENTS + 1})
        reset, live = await again.next(0.5), await again.next(0.5)
        overflowed = again.overflowed
        again.close()
        assert reset is not None
        assert live is not None
        assert reset.id == last.id
        assert reset.data == {"last_event_id": first.id}
        return [reset.kind, live.kind], int(str(live.data["n"])), overflowed

    kinds, n, overflowed = asyncio.run(resume())
    assert kinds == [RESET, "x"]
    assert n == KEPT_EVENTS + 1
    assert not overflowed


def ana_on_a_call(node: Node, wall: Wall, disposed: list[tuple[str, int, str]]) -> tuple[WorkspaceHub, Calls]:
    """A hub whose agent ana, page open and ready, has the colombian call on screen."""
    calls = seed_calls(node)
    hub = hub_of(node, wall, disposed)
    hub.open_page("ana", "agent-01", None)
    hub.roster.page_seen("ana")
    hub.roster.ready("ana")
    hub.agent_connected(AgentConnected(calls.colombian, "agent-01", DAY))
    return hub, calls


def test_a_call_whose_page_is_gone_is_dispositioned_and_its_agent_paused(node: Node) -> None:
    wall, disposed = Wall(), list[tuple[str, int, str]]()
    hub, calls = ana_on_a_call(node, wall, disposed)
    hub.roster.page_gone("ana")
    wall.at += timedelta(seconds=29)
    assert hub.sweep() == 0
    wall.at += timedelta(seconds=1)
    assert hub.sweep() == 1
    assert disposed == [("ana", calls.colombian, "browser_closed")]
    status = hub.roster.get("ana")
    assert (status.state, status.pause_reason, status.attempt_id) == (AgentState.PAUSED, "browser_closed", None)
    assert node.adapter("dialer", Dialer).capacity() < 2 * 2  # the seat is paused at the dialer too


def test_a_ready_agent_whose_page_is_gone_for_good_is_paused(node: Node) -> None:
    wall, dialer = Wall(), node.adapter("dialer", Dialer)
    hub = hub_of(node, wall, [])
    everyone = dialer.capacity()
    hub.open_page("ana", "agent-01", None)
    hub.roster.page_seen("ana")
    hub.roster.ready("ana")
    hub.roster.page_gone("ana")
    wall.at += timedelta(seconds=29)
    assert hub.sweep() == 0
    assert hub.roster.get("ana").state is AgentState.READY  # a reload has gone_seconds to come back
    wall.at += timedelta(seconds=1)
    assert hub.sweep() == 0  # no call was on screen: nothing dispositioned
    status = hub.roster.get("ana")
    assert (status.state, status.pause_reason) == (AgentState.PAUSED, "browser_closed")
    assert dialer.capacity() < everyone  # paused at the dialer: no call goes to a page nobody watches


def test_a_wrap_up_past_its_limit_is_dispositioned_and_its_agent_paused(node: Node) -> None:
    calls, wall = seed_calls(node), Wall()
    disposed: list[tuple[str, int, str]] = []
    hub = hub_of(node, wall, disposed)
    hub.open_page("ana", "agent-01", None)
    hub.roster.page_seen("ana")
    hub.agent_connected(AgentConnected(calls.colombian, "agent-01", DAY))
    hub.call_ended(calls.colombian)
    wall.at += timedelta(seconds=119)
    assert hub.sweep() == 0
    wall.at += timedelta(seconds=1)
    assert hub.sweep() == 1
    assert disposed == [("ana", calls.colombian, "wrap_up_timeout")]
    assert hub.roster.get("ana").pause_reason == "wrap_up_timeout"


def test_the_screen_pop_names_whom_to_ask_for_and_hides_the_debt(node: Node) -> None:
    calls = seed_calls(node)
    hub = node.workspace
    hub.open_page("ana", "agent-01", KEYS["TARJETAS"])

    async def pop() -> dict[str, object]:
        subscription = hub.subscribe("ana", frozenset({SCREEN_POP}))
        await asyncio.to_thread(hub.agent_connected, AgentConnected(calls.colombian, "agent-01", DAY))
        event = await subscription.next(2)
        subscription.close()
        assert event is not None
        return dict(event.data)

    shown = asyncio.run(pop())
    assert (shown["debtor"], shown["phone"]) == ("Deudora Uno", "+573001112233")
    assert not {"balance", "accounts", "ref", "currency"} & shown.keys()
    assert "500000" not in str(shown)

    details = hub.screens.details(calls.colombian, "ana", KEYS["TARJETAS"])
    assert [(line.ref, line.balance) for line in details.accounts] == [
        ("BCO-1", Decimal(500000))
    ]  # not VEH-1: no grant
    assert not details.mini_miranda
    assert {law.channel for law in details.law} == {"call", "sms"}
    assert [entry.kind for entry in details.timeline] == ["call_attempt"]
    with node.db.session() as session:
        actions = session.scalars(select(AuditEntry.action).where(AuditEntry.actor == "web:ana")).all()
    assert {"workspace.screen_pop", "workspace.right_party"} <= set(actions)


def test_a_us_account_shows_the_mini_miranda_and_a_call_outside_the_grants_shows_nothing(node: Node) -> None:
    calls = seed_calls(node)
    screens = node.workspace.screens
    assert screens.details(calls.american, "ana", None).mini_miranda
    with pytest.raises(NotOnScreen, match="outside the agent's portfolios"):
        screens.pop(calls.vehicles, "ana", KEYS["TARJETAS"], DAY)
    hub = node.workspace
    hub.open_page("ana", "agent-01", KEYS["TARJETAS"])
    hub.agent_connected(AgentConnected(calls.vehicles, "agent-01", DAY))
    shown = hub.on_screen("ana")
    assert shown is not None
    assert (shown.kind, "debtor" in shown.data) == ("call_not_visible", False)


def test_an_agent_state_change_is_published(node: Node) -> None:
    hub = node.workspace

    async def watch() -> list[str]:
        subscription = hub.subscribe(None, frozenset({AGENT_STATE}))
        await asyncio.to_thread(hub.open_page, "ana", "agent-01", None)
        await asyncio.to_thread(hub.roster.ready, "ana")
        states = [await subscription.next(2) for _ in range(2)]
        subscription.close()
        return [str(event.data["state"]) for event in states if event]

    assert asyncio.run(watch()) == ["paused", "ready"]


@pytest.mark.abuse
def test_a_narrowed_agent_is_replayed_and_shown_again_only_the_pops_of_the_portfolios_it_keeps(node: Node) -> None:
    """Round 20 H1: the kept pops were replayed to a new stream whatever the agent's grants were now."""
    calls = seed_calls(node)
    hub = node.workspace
    hub.open_page("ana", "agent-01", None)  # the whole site: both calls pop
    hub.agent_connected(AgentConnected(calls.colombian, "agent-01", DAY))
    hub.call_ended(calls.colombian)
    assert hub.dispositioned("ana", calls.colombian) is not None
    hub.agent_connected(AgentConnected(calls.vehicles, "agent-01", DAY))
    hub.open_page("ana", "agent-01", KEYS["TARJETAS"])  # narrowed, signed in again

    async def replayed(within: frozenset[PortfolioKey] | None) -> list[WorkspaceEvent]:
        subscription = hub.subscribe("ana", AGENT_KINDS, last_event_id=0, within=within)
        got = []
        while (event := await subscription.next(0.2)) is not None:
            got.append(event)
        subscription.close()
        return got

    before = asyncio.run(replayed(None))  # a reader granted the whole site: both pops
    assert [e.data["attempt_id"] for e in before if e.kind == SCREEN_POP] == [calls.colombian, calls.vehicles]
    now = asyncio.run(replayed(KEYS["TARJETAS"]))
    pops = [e.data for e in now if e.kind == SCREEN_POP]
    assert [pop["attempt_id"] for pop in pops] == [calls.colombian]  # the kept portfolio's still replays
    assert all(e.data.get("account_id") != pops[0]["account_id"] for e in now if e.kind == CALL_NOT_VISIBLE)
    on_screen = hub.on_screen("ana", KEYS["TARJETAS"])  # the VEHICULOS call on screen: its id only
    assert on_screen is not None
    assert (on_screen.kind, dict(on_screen.data)) == (CALL_NOT_VISIBLE, {"attempt_id": calls.vehicles})
    shown = hub.on_screen("ana", None)
    assert shown is not None
    assert shown.kind == SCREEN_POP


@pytest.mark.abuse
def test_a_subscription_closed_while_an_event_is_offered_does_not_stall_the_hub(
    node: Node, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A stream's cleanup, run by the garbage collector wherever it ran (an offer allocates its loop's callback),
    closed a subscription in the middle of a publish, which held the hub's lock, not re-entrant: the publishing
    thread waited for itself for good, and the server's loop with it at its next subscribe (round 23 B-F4).
    Publish offers outside that lock; the subscriber sees the event, the closed one is gone."""
    hub = hub_of(node, Wall(), [])

    async def scenario() -> list[int]:
        reader, collected = hub.subscribe(None), hub.subscribe(None)
        offer = reader.offer

        def offered_while_collecting(event: WorkspaceEvent) -> bool:
            collected.close()  # what the collected stream's cleanup did, on the publishing thread
            return offer(event)

        monkeypatch.setattr(reader, "offer", offered_while_collecting)
        publisher = threading.Thread(target=hub.publish, args=(AGENT_STATE, {"n": 0}), daemon=True)
        publisher.start()
        publisher.join(10)  # a deadlock fails the test instead of hanging it
        assert not publisher.is_alive(), "publish waits for the hub's lock it holds"
        assert collected not in hub._subscribers
        monkeypatch.undo()
        later = hub.subscribe(None)  # the server's loop subscribes again
        hub.publish(AGENT_STATE, {"n": 1})
        got = [await reader.next(2), await reader.next(2), await later.next(2)]
        reader.close()
        later.close()
        return [int(str(event.data["n"])) for event in got if event is not None]

    assert asyncio.run(scenario()) == [0, 1, 1]
    assert hub._subscribers == []
