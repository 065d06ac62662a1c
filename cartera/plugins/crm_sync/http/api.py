"""The creditor API's routes, served by the node under ``/plugins/crm_sync`` (see its OpenAPI schema)."""

import hmac
import logging
from collections.abc import Callable, Coroutine
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Path, Query, Request, Response, status
from fastapi.exception_handlers import http_exception_handler, request_validation_exception_handler
from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import Message

from cartera.plugin import Activity, event
from cartera.plugins.crm_sync.http.batches import BatchConflict, BatchSpool
from cartera.plugins.crm_sync.http.config import CODE, DEFAULT_MAX_BODY_BYTES, CreditorAccess
from cartera.plugins.crm_sync.http.models import ActivityOut, ActivityPage, BatchIn, BatchOut, ErrorOut, HealthOut

API_VERSION = "v1"
MAX_PAGE = 1000
MAX_SEQ = 2**63 - 1  #: the store's largest integer (BIGINT): activities' seqs never pass it
UNBOUNDED_HERE = 2**63 - 1  #: the node's body bound on these routes: none, they bound bodies after the token
UNREADABLE_BODY = "the body is not JSON the API can read (UTF-8, depth, number sizes)"

_bearer = HTTPBearer(auto_error=False, description="The creditor's API token: `Authorization: Bearer TOKEN`.")
_UNAUTHORIZED: dict[int | str, dict[str, Any]] = {
    401: {"model": ErrorOut, "description": "No bearer token, or one the node does not know."}
}
#: The node refuses any request holding a NUL or a lone UTF-16 surrogate before a route sees it (no text it keeps may
#: hold one): ``{"detail": "a NUL character in the request"}`` or ``"a lone UTF-16 surrogate in the request"``.
_NUL: dict[int | str, dict[str, Any]] = {
    400: {
        "model": ErrorOut,
        "description": "The path, the query or the body holds a NUL character or a lone UTF-16 surrogate.",
    }
}
_FORBIDDEN: dict[int | str, dict[str, Any]] = {
    403: {"model": ErrorOut, "description": "The token's creditor may not use this creditor or portfolio."}
}
Authenticate = Callable[[Request, HTTPAuthorizationCredentials | None], str]


def guarded_route(authenticate: Authenticate, max_body_bytes: int) -> type[APIRoute]:
    """A route class answering the API's errors as its schema documents them (``{"detail": ...}``, 422 with
    field paths), even in an app whose own exception handlers render errors for people (the node's web pages).

    A route that depends on ``authenticate`` checks the token before anything of the body is read; then a body
    announced larger than ``max_body_bytes`` is refused at once, and one sent without a length (chunked) as soon
    as it passes the limit, so no more than the limit is ever buffered."""

    class GuardedRoute(APIRoute):
        def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
            handler = super().get_route_handler()
            needs_token = any(dependency.call is authenticate for dependency in self.dependant.dependencies)

            async def handle(request: Request) -> Response:
                try:
                    if needs_token:
                        authenticate(request, await _bearer(request))
                    return await handler(_bounded(request, max_body_bytes))
                except StarletteHTTPException as exc:
                    if exc.status_code == status.HTTP_400_BAD_REQUEST:  # the parser's, whatever it says
                        exc = HTTPException(exc.status_code, UNREADABLE_BODY)
                    return await http_exception_handler(request, exc)
                except RequestValidationError as exc:
                    return await request_validation_exception_handler(request, exc)

            return handle

    return GuardedRoute


def _bounded(request: Request, limit: int) -> Request:
    """``request`` whose body may not exceed ``limit`` bytes: 413 now if its Content-Length says more, else
    413 from the read that passes the limit."""
    too_large = HTTPException(status.HTTP_413_CONTENT_TOO_LARGE, f"the body exceeds {limit} bytes: split the batch")
    length = request.headers.get("content-length", "")
    if length.isascii() and length.isdigit() and (len(length) > 18 or int(length) > limit):
        raise too_large
    received = 0

    async def receive() -> Message:
        nonlocal received
        message = await request.receive()
        received += len(message.get("body", b""))
        if received > limit:
            raise too_large
        return message

    return Request(request.scope, receive)


def presented_token(request: Request) -> str:
    """The token of ``Authorization: Bearer TOKEN`` exactly as sent: only the one space after the scheme is
    taken off (``HTTPBearer`` strips the rest, so a token with whitespace around it would match); "" if none."""
    scheme, space, token = request.headers.get("Authorization", "").partition(" ")
    return token if space and scheme.lower() == "bearer" else ""


def token_owner(creditors: dict[str, CreditorAccess], token: str) -> str | None:
    """The creditor whose token is ``token``; every token is compared in constant time."""
    presented = token.encode()
    owner = None
    for code, access in creditors.items():
        if hmac.compare_digest(presented, access.token.get_secret_value().encode()):
            owner = code
    return owner


def api_router(
    creditors: dict[str, CreditorAccess],
    spool: BatchSpool,
    exported: Callable[[str, int, int], list[Activity]],
    log: logging.Logger,
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
) -> APIRouter:
    """The routes of API version 1; ``exported`` is :meth:`PluginContext.exported_activities`."""

    def creditor(
        request: Request, credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]
    ) -> str:
        owner = None if credentials is None else token_owner(creditors, presented_token(request))
        if owner is None:
            client = request.client.host if request.client else "?"
            event(log, "crm_sync.http.unauthorized", logging.WARNING, client=client, path=request.url.path)
            detail = "unknown token" if credentials else "send the creditor's token as 'Authorization: Bearer TOKEN'"
            raise HTTPException(status.HTTP_401_UNAUTHORIZED, detail, headers={"WWW-Authenticate": "Bearer"})
        return owner

    route_class = guarded_route(creditor, max_body_bytes)
    # The node bounds a plugin's bodies (64 KiB) before anything reads them unless its router sets its own bound:
    # this API's is ``max_body_bytes``, enforced by its routes after the token (a stranger's oversized request
    # answers 401, a creditor's 413), so the node's own bound is set past any length.
    router = APIRouter(
        prefix=f"/{API_VERSION}", tags=["creditor exchange"], route_class=route_class, max_body_size=UNBOUNDED_HERE
    )

    @router.get(
        "/health",
        summary="Whether the API is served (no token needed)",
        operation_id="health",
        response_model=HealthOut,
        responses=_NUL,
    )
    def health() -> HealthOut:
        return HealthOut(status="ok", api=f"cartera creditor exchange {API_VERSION}")

    @router.post(
        "/batches",
        summary="Deliver a batch of assignment rows",
        description="Stores the batch durably before answering, then the node imports it at its next sync. "
        "202: stored now. 200: this batch id was received before with the same content; nothing changes and "
        "the batch's current result is returned. Rows that are not valid assignments are listed in `rejected` "
        "and quarantined while the other rows load; a body that is not a batch is refused with 422.",
        status_code=status.HTTP_202_ACCEPTED,
        response_model=BatchOut,
        response_description="Stored: the node imports the batch at its next sync.",
        operation_id="push_batch",
        responses={
            200: {"model": BatchOut, "description": "Re-delivery of a known batch: nothing changed."},
            **_UNAUTHORIZED,
            **_FORBIDDEN,
            400: {
                "model": ErrorOut,
                "description": "The body is not JSON the API can read: invalid UTF-8, nesting "
                "deeper than the parser allows, or a number of more than 4300 digits; or the request holds a NUL "
                "character or a lone UTF-16 surrogate (`\\ud800` without its pair, in a value or a key), which no "
                "UTF-8 text holds: the whole batch is refused, `detail` saying which.",
            },
            409: {"model": ErrorOut, "description": "The batch id was already used for different content."},
            413: {
                "model": ErrorOut,
                "description": "The body is larger than the site's `max_body_bytes` "
                f"({DEFAULT_MAX_BODY_BYTES} bytes unless set): split the batch.",
            },
        },
    )
    def push_batch(batch: BatchIn, response: Response, owner: Annotated[str, Depends(creditor)]) -> BatchOut:
        if batch.creditor != owner:
            raise HTTPException(
                status.HTTP_403_FORBIDDEN, f"this token may not deliver for creditor {batch.creditor!r}"
            )
        allowed = creditors[owner].portfolios
        if allowed and batch.portfolio not in allowed:
            raise HTTPException(
                status.HTTP_403_FORBIDDEN, f"creditor {owner!r} may not deliver to portfolio {batch.portfolio!r}"
            )
        try:
            result, stored = spool.save(batch)
        except BatchConflict as exc:
            raise HTTPException(status.HTTP_409_CONFLICT, str(exc)) from None
        if not stored:
            response.status_code = status.HTTP_200_OK
        event(
            log,
            "crm_sync.http.batch_received" if stored else "crm_sync.http.batch_redelivered",
            creditor=owner,
            batch_id=batch.batch_id,
            rows=result.rows,
            rejected=len(result.rejected),
        )
        return result

    @router.get(
        "/batches/{batch_id}",
        summary="A batch's result: status and rejection report",
        operation_id="get_batch",
        response_model=BatchOut,
        responses={
            **_NUL,
            **_UNAUTHORIZED,
            404: {"model": ErrorOut, "description": "No batch of yours has this id."},
        },
    )
    def batch_result(
        batch_id: Annotated[str, Path(pattern=CODE)], owner: Annotated[str, Depends(creditor)]
    ) -> BatchOut:
        result = spool.result(owner, batch_id)
        if result is None:
            raise HTTPException(status.HTTP_404_NOT_FOUND, f"no batch {batch_id!r} of creditor {owner!r}")
        return result

    @router.get(
        "/activities",
        summary="The activity export, incrementally",
        operation_id="get_activities",
        description="Activities on your accounts with seq above `after`, in seq order. Keep `next_after` once "
        "you have stored a page and ask with it for the next one: asking again with the same `after` returns "
        "the same activities, so nothing is skipped or sent twice across your restarts.",
        response_model=ActivityPage,
        responses={**_NUL, **_UNAUTHORIZED},
    )
    def activities(
        owner: Annotated[str, Depends(creditor)],
        after: Annotated[int, Query(ge=0, le=MAX_SEQ, description="The last seq you stored (0 at first).")] = 0,
        limit: Annotated[int, Query(ge=1, le=MAX_PAGE, description="Page size.")] = 500,
    ) -> ActivityPage:
        found = exported(owner, after, limit + 1)
        page = [ActivityOut.of(activity) for activity in found[:limit]]
        return ActivityPage(activities=page, next_after=page[-1].seq if page else after, more=len(found) > limit)

    return router
