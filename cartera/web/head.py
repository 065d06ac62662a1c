"""``HEAD`` answered as ``GET`` without a body (RFC 9110 §9.3.2): FastAPI's routes answer only the methods they
name, so every page and a recording's audio answered 405 to a player or proxy probing with ``HEAD``."""

from __future__ import annotations

import anyio
from starlette.types import ASGIApp, Message, Receive, Scope, Send


class HeadAsGet:
    """Routes a ``HEAD`` request as its ``GET`` (the same checks and audit: a recording's ``HEAD`` is audited as
    the play or download it tells the size of), sends the ``GET``'s status and headers with an empty body, then
    stops the app: a recording is not read, an event stream not held open, for a body nobody receives. A route
    with no ``GET`` still answers 405."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "HEAD":
            await self.app(scope, receive, send)
            return
        answered = anyio.Event()

        async def headers_only(message: Message) -> None:
            if answered.is_set():
                return
            if message["type"] in ("http.response.body", "http.response.pathsend"):  # the body: none
                await send({"type": "http.response.body", "body": b"", "more_body": False})
                answered.set()
                return
            await send(message)

        async with anyio.create_task_group() as group:

            async def run() -> None:
                await self.app({**scope, "method": "GET"}, receive, headers_only)
                answered.set()

            group.start_soon(run)
            await answered.wait()
            group.cancel_scope.cancel()
