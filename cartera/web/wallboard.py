"""The supervisors' live wallboard: agents and their states, calls ringing and talking, today's contacts,
promises, abandoned calls and occupancy, pushed (server-sent events) whenever an agent or a call changes."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncGenerator
from dataclasses import asdict, dataclass
from datetime import datetime, time
from time import monotonic as time_now

from fastapi import APIRouter, Request
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool

from cartera.portfolio.identity import PortfolioKey
from cartera.web.context import SESSION_COOKIE, Web, refuse_body
from cartera.web.sse import (
    KEEP_ALIVE,
    KEEP_ALIVE_S,
    RETRY,
    encode,
    ending,
    pushed,
    stream_response,
    too_many_streams,
)
from cartera.workspace.agents import AgentState, AgentStatus
from cartera.workspace.hub import PUBLIC_KINDS, WorkspaceEvent

SETTLE_S = 0.25  #: changes this close together are shown as one update
WALLBOARD = "wallboard"


@dataclass(frozen=True)
class Board:
    """What the wallboard shows; counts of today (the site's day) within the viewer's portfolios."""

    agents: list[dict[str, object]]
    ringing: int
    talking: int
    contacts: int
    promises: int
    abandoned: int  #: calls answered by a person that no agent took in time (:attr:`CallOutcome.ABANDONED`)
    abandon_rate: float  #: abandoned / answered by a person over the campaign's window (not only today)
    abandon_limit: float
    occupancy: float  #: agents on a call or in wrap-up over agents not paused (0 without any)


def board(web: Web, within: frozenset[PortfolioKey] | None) -> Board:
    """The wallboard now, from the roster and the store."""
    statuses = web.services.workspace.roster.everyone()
    zone, now = web.services.zone, web.services.clock.now()
    midnight = datetime.combine(now.astimezone(zone).date(), time(), zone)
    on_call = [s.attempt_id for s in statuses if s.state is AgentState.ON_CALL and s.attempt_id is not None]
    today = web.services.reads.today(within, midnight, on_call)
    # every agent is listed, but the calls counted are the viewer's portfolios' (an agent talking on another
    # portfolio's call is neither this viewer's talking nor taken off its ringing)
    talking = sum(status.state is AgentState.ON_CALL for status in statuses) if within is None else today.talking
    busy = sum(status.state in (AgentState.ON_CALL, AgentState.WRAP_UP) for status in statuses)
    working = sum(status.state is not AgentState.PAUSED or status.attempt_id is not None for status in statuses)
    return Board(
        agents=[_agent(status) for status in statuses],
        ringing=today.ringing,
        talking=talking,
        contacts=today.contacts,
        promises=today.promises,
        abandoned=today.abandoned,
        abandon_rate=round(today.abandonment.rate, 4),
        abandon_limit=today.abandonment.limit,
        occupancy=round(busy / working, 3) if working else 0.0,
    )


class SharedBoards:
    """The board computed once per change for every stream of the same grants: a stream settling on an event
    another stream's board already followed takes that board (not one query per stream and event)."""

    def __init__(self, web: Web) -> None:
        self.web = web
        self._held: dict[frozenset[PortfolioKey] | None, tuple[int, float, bytes]] = {}
        self._locks: dict[frozenset[PortfolioKey] | None, asyncio.Lock] = {}

    async def after(self, within: frozenset[PortfolioKey] | None, last: int) -> bytes:
        """The board (encoded) as of event ``last`` or later; ``last`` 0: one at most :data:`SETTLE_S` old."""
        async with self._locks.setdefault(within, asyncio.Lock()):
            held = self._held.get(within)
            now = time_now()
            if held is not None and held[0] >= last and (last or now - held[1] < SETTLE_S):
                return held[2]
            fresh = await run_in_threadpool(board, self.web, within)
            encoded = encode(WorkspaceEvent(last, WALLBOARD, None, asdict(fresh)))
            self._held[within] = (last, now, encoded)
            return encoded


def _agent(status: AgentStatus) -> dict[str, object]:
    return {
        "agent": status.agent,
        "state": status.state.value,
        "since": status.since.isoformat(),
        "pause_reason": status.pause_reason,
    }


def wallboard_router(web: Web) -> APIRouter:
    router = APIRouter()
    boards = SharedBoards(web)

    @router.get("/wallboard", include_in_schema=False)
    @web.workers.pooled
    def page(request: Request) -> Response:
        viewer = web.signed_in(request)  # agents are refused
        return web.page(request, "wallboard.html", viewer, board=board(web, viewer.user.portfolios(web.site)))

    @router.get("/wallboard/events", include_in_schema=False)
    async def events(request: Request) -> Response:
        viewer = await run_in_threadpool(web.signed_in, request)
        refuse_body(request)
        holder = f"user:{viewer.user.name}"
        slot = web.streams.take(holder)
        if slot is None:
            return too_many_streams()
        within = viewer.user.portfolios(web.site)
        subscription = web.services.workspace.subscribe(None, PUBLIC_KINDS)
        token = request.cookies.get(SESSION_COOKIE, "")

        async def alive() -> bool:
            return await run_in_threadpool(web.sessions.lookup, token) is not None

        async def stream() -> AsyncGenerator[bytes]:
            yield RETRY
            yield await boards.after(within, 0)
            settling, quiet = None, 0.0
            async with contextlib.aclosing(pushed(request, subscription, SETTLE_S, alive)) as events:
                async for event in events:
                    if event is not None:  # changes close together are one update
                        settling = event
                    elif settling is not None:
                        yield await boards.after(within, settling.id)
                        settling, quiet = None, 0.0
                    elif (quiet := quiet + SETTLE_S) >= KEEP_ALIVE_S:
                        yield KEEP_ALIVE
                        quiet = 0.0

        # the subscription is closed with the slot however the stream ends: also before the first board (a HEAD,
        # a client gone while it is computed), where pushed() is never reached
        return stream_response(ending(stream(), subscription, slot=slot))

    return router
