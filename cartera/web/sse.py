"""Server-sent events: a workspace subscription streamed to a browser or an integration.

A stream runs on the server's event loop, never in the pages' worker pool, and waits on the hub without
polling. A comment every :data:`KEEP_ALIVE_S` keeps proxies from closing an idle stream (and the server's
deadlines apply to request heads and bodies, which a stream has done with). The client reconnects by itself
after ``retry`` and sends ``Last-Event-ID``: the hub replays what it missed (or sends ``reset`` when it no longer
keeps it all).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import queue
import re
import threading
import weakref
from collections import Counter
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Iterable

from fastapi import Request
from fastapi.responses import JSONResponse, StreamingResponse

from cartera.core.logs import event as log_event
from cartera.web.server import default_max_connections, raise_descriptor_limit
from cartera.workspace.hub import Subscription, WorkspaceEvent

KEEP_ALIVE_S = 15.0
SESSION_CHECK_S = 60.0  #: how often a page's stream checks that its session is still live (and keeps it so)
RETRY_MS = 2000
RETRY = f"retry: {RETRY_MS}\n\n".encode()  #: how soon a client reconnects
KEEP_ALIVE = b": keep-alive\n\n"
_EVENT_ID = re.compile(r"[0-9]{1,20}")
STREAMS_PER_USER = 4  #: event streams one user (or integration) may hold open: a few tabs, not a script's thousands
log = logging.getLogger("cartera.web")


class StreamSlots:
    """The open event streams: at most ``per_user`` of one holder and ``total`` in all. A stream past either is
    refused (429), so one browser or script cannot take the server's loop and connections from everyone else."""

    def __init__(self, total: int, per_user: int = STREAMS_PER_USER) -> None:
        self.total, self.per_user = total, per_user
        self._held: Counter[str] = Counter()
        self._open = 0
        self._lock = threading.Lock()

    def take(self, holder: str) -> Slot | None:
        """A slot for one more stream of ``holder``; ``None`` when it holds its share or all are taken. Call it
        holding no lock: the streams collected meanwhile are ended first (see :func:`end_collected`)."""
        end_collected()
        with self._lock:
            if self._held[holder] >= self.per_user or self._open >= self.total:
                return None
            self._held[holder] += 1
            self._open += 1
            return Slot(self, holder)

    def _give_back(self, slot: Slot) -> None:
        with self._lock:
            if slot.given:
                return
            slot.given = True
            self._open -= 1
            self._held[slot.holder] -= 1
            if self._held[slot.holder] <= 0:
                del self._held[slot.holder]


class Slot:
    """One stream's place in :class:`StreamSlots`, given back once however its stream ends."""

    def __init__(self, slots: StreamSlots, holder: str) -> None:
        self.slots, self.holder, self.given = slots, holder, False

    def give_back(self) -> None:
        self.slots._give_back(self)


#: What the finalizers of collected streams left to do, for a thread that holds no lock (see :func:`when_collected`)
_collected: queue.SimpleQueue[Callable[[], None]] = queue.SimpleQueue()


def _running_loop() -> asyncio.AbstractEventLoop | None:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None


def when_collected(loop: asyncio.AbstractEventLoop | None, cleanup: Callable[[], None]) -> None:
    """A stream's finalizer: it only queues ``cleanup`` for ``loop`` (the server's) to run, and wakes it. The
    collector runs finalizers in whatever thread allocates at that moment, possibly one holding the hub's, the
    roster's or the slots' lock (not re-entrant), which ``cleanup`` takes: run there, that thread waited for
    itself for good, and the server's loop with it. So a finalizer takes no lock (``SimpleQueue.put`` and
    ``call_soon_threadsafe`` take none); a loop already closed leaves it to the next :meth:`StreamSlots.take`."""
    _collected.put(cleanup)
    if loop is not None:
        with contextlib.suppress(RuntimeError):  # closed: the server stopped
            loop.call_soon_threadsafe(end_collected)


def end_collected() -> None:
    """Run what the finalizers of the streams collected meanwhile left to do (:func:`when_collected`); call it
    holding no lock (the server's loop between callbacks)."""
    while True:
        try:
            cleanup = _collected.get_nowait()
        except queue.Empty:
            return
        try:
            cleanup()
        except Exception as exc:  # one failing leaves the others to run
            log_event(log, "web.stream_cleanup_failed", logging.ERROR, error=type(exc).__name__)


def stream_cap(max_connections: int | None) -> int:
    """Event streams in all: half the server's connections (``[web] max_connections``, else what the descriptors
    allow), so the pages and the sign-in keep the other half."""
    return max(1, (max_connections or default_max_connections(raise_descriptor_limit())) // 2)


def too_many_streams() -> JSONResponse:
    return JSONResponse({"error": "too many event streams open"}, status_code=429, headers={"Retry-After": "30"})


def last_event_id(request: Request) -> int | None:
    """The ``Last-Event-ID`` a reconnecting client sent (the header, or ``lastEventId`` in the query for a
    client that cannot set headers); ``None`` when absent or not a number."""
    given = request.headers.get("last-event-id") or request.query_params.get("lastEventId") or ""
    return int(given) if _EVENT_ID.fullmatch(given) else None


def encode(event: WorkspaceEvent) -> bytes:
    data = json.dumps(dict(event.data), separators=(",", ":"), ensure_ascii=False)
    return f"id: {event.id}\nevent: {event.kind}\ndata: {data}\n\n".encode()


async def pushed(
    request: Request,
    subscription: Subscription,
    keep_alive: float | None = None,
    alive: Callable[[], Awaitable[bool]] | None = None,
) -> AsyncGenerator[WorkspaceEvent | None]:
    """``subscription``'s events as they come, ``None`` after each ``keep_alive`` seconds (default
    :data:`KEEP_ALIVE_S`) without one, until the client disconnects (noticed at once, not at the next write), falls
    so far behind that its queue overflowed (it reconnects and is replayed what it missed), or ``alive`` (asked every
    :data:`SESSION_CHECK_S`) says its session has ended. Closes the subscription."""

    async def watch() -> None:
        while (await request.receive())["type"] != "http.disconnect":
            pass
        subscription.end()

    loop = asyncio.get_running_loop()
    watcher, checked = asyncio.create_task(watch()), loop.time()
    try:
        while not (subscription.overflowed or subscription.ended):
            event = await subscription.next(keep_alive or KEEP_ALIVE_S)
            if subscription.ended:
                break
            if alive is not None and loop.time() - checked >= SESSION_CHECK_S:
                if not await alive():  # signed out, disabled or expired: no more of the debtors' data
                    break
                checked = loop.time()
            yield event
    finally:
        watcher.cancel()
        subscription.close()


def stream_response(body: AsyncIterator[bytes]) -> StreamingResponse:
    headers = {"Cache-Control": "no-store", "X-Accel-Buffering": "no"}
    return StreamingResponse(body, media_type="text/event-stream", headers=headers)


def event_stream(
    request: Request,
    subscription: Subscription,
    first: Iterable[WorkspaceEvent] = (),
    *,
    on_close: Callable[[], None] = lambda: None,
    alive: Callable[[], Awaitable[bool]] | None = None,
    slot: Slot | None = None,
) -> StreamingResponse:
    """The response streaming ``first``, then ``subscription``'s events (see :func:`pushed`); then, once, the
    subscription closed, ``on_close`` and ``slot`` given back: when the stream ends, or when its body is collected
    unstarted (its client left before the server began it, and a body never started runs no ``finally``)."""

    async def stream() -> AsyncGenerator[bytes]:
        yield RETRY
        for replayed in first:
            yield encode(replayed)
        async with contextlib.aclosing(pushed(request, subscription, alive=alive)) as events:
            async for event in events:
                yield KEEP_ALIVE if event is None else encode(event)

    return stream_response(ending(stream(), subscription, on_close=on_close, slot=slot))


def ending(
    body: AsyncGenerator[bytes],
    subscription: Subscription,
    *,
    on_close: Callable[[], None] = lambda: None,
    slot: Slot | None = None,
) -> AsyncIterator[bytes]:
    """``body``, then, once, ``subscription`` closed, ``on_close`` and ``slot`` given back: when the body ends,
    fails, is closed or cancelled anywhere (before its first chunk too: a HEAD stops it after the head, a client
    leaving while it waits), or when it is collected unstarted (its client left before the server began it, and a
    body never started runs no ``finally``; then the server's loop does it, see :func:`when_collected`). Only
    :func:`pushed` closes a subscription otherwise, once reached."""

    def done() -> None:
        subscription.close()
        if slot is not None:
            slot.give_back()
        on_close()

    async def run() -> AsyncIterator[bytes]:
        try:
            async with contextlib.aclosing(body) as chunks:
                async for chunk in chunks:
                    yield chunk
        finally:
            if collected.detach() is not None:  # still to do (once): here, on the server's loop
                done()

    outer = run()
    collected = weakref.finalize(outer, when_collected, _running_loop(), done)
    return outer
