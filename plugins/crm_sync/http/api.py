"""The creditor API's routes, served by the node under ``/plugins/crm_sync`` (see its OpenAPI schema)."""

import hmac
import logging
from collections.abc import Callable, Coroutine
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Path, Query, Request, Response, status
from fastapi.exception_handlers import http_exception_handler, request_validation_exception_handler
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from core.logs import event
from plugins.crm_sync.http.batches import BatchConflict, BatchSpool
from plugins.crm_sync.http.config import CODE_PATTERN, CreditorAccess
from plugins.crm_sync.http.feed import ActivityFeed
from plugins.crm_sync.http.models import ActivityPage, BatchIn, BatchOut, ErrorOut, HealthOut

API_VERSION = "v1"
MAX_PAGE = 1000
MAX_BODY_BYTES = 16 << 20

_bearer = HTTPBearer(auto_error=False, description="The creditor's API token: `Authorization: Bearer TOKEN`.")
_UNAUTHORIZED: dict[int | str, dict[str, Any]] = {
    401: {"model": ErrorOut, "description": "No bearer token, or one the node does not know."}
}
_FORBIDDEN: dict[int | str, dict[str, Any]] = {
    403: {"model": ErrorOut, "description": "The token's creditor may not use this creditor or portfolio."}
}


class JsonErrorRoute(APIRoute):
    """Answers the API's errors as its schema documents them (``{"detail": ...}``, 422 with field paths), even
    in an app whose own exception handlers render errors for people (the node's web pages); refuses POST
    bodies without a Content-Length or larger than ``MAX_BODY_BYTES`` before reading them."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def handle(request: Request) -> Response:
            if request.method == "POST" and (refused := _body_size_problem(request)) is not None:
                return JSONResponse({"detail": refused[1]}, status_code=refused[0])
            try:
                return await handler(request)
            except HTTPException as exc:
                return await http_exception_handler(request, exc)
            except RequestValidationError as exc:
                return await request_validation_exception_handler(request, exc)

        return handle


def _body_size_problem(request: Request) -> tuple[int, str] | None:
    """Refuse bodies of unknown or excessive size before they are read."""
    length = request.headers.get("content-length", "")
    if not length.isdigit():
        return status.HTTP_411_LENGTH_REQUIRED, "send the body with a Content-Length header"
    if int(length) > MAX_BODY_BYTES:
        return status.HTTP_413_CONTENT_TOO_LARGE, f"the body exceeds {MAX_BODY_BYTES} bytes: split the batch"
    return None


def token_owner(creditors: dict[str, CreditorAccess], token: str) -> str | None:
    """The creditor whose token is ``token``; every token is compared in constant time."""
    presented = token.encode()
    owner = None
    for code, access in creditors.items():
        if hmac.compare_digest(presented, access.token.get_secret_value().encode()):
            owner = code
    return owner


def api_router(
    creditors: dict[str, CreditorAccess], spool: BatchSpool, feed: ActivityFeed, log: logging.Logger
) -> APIRouter:
    """The routes of API version 1."""
    router = APIRouter(prefix=f"/{API_VERSION}", tags=["creditor exchange"], route_class=JsonErrorRoute)

    def creditor(
        request: Request, credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]
    ) -> str:
        owner = None if credentials is None else token_owner(creditors, credentials.credentials)
        if owner is None:
            client = request.client.host if request.client else "?"
            event(log, "crm_sync.http.unauthorized", logging.WARNING, client=client, path=request.url.path)
            detail = "unknown token" if credentials else "send the creditor's token as 'Authorization: Bearer TOKEN'"
            raise HTTPException(status.HTTP_401_UNAUTHORIZED, detail, headers={"WWW-Authenticate": "Bearer"})
        return owner

    @router.get(
        "/health",
        summary="Whether the API is served (no token needed)",
        operation_id="health",
        response_model=HealthOut,
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
            409: {"model": ErrorOut, "description": "The batch id was already used for different content."},
            411: {"model": ErrorOut, "description": "The body came without a Content-Length header."},
            413: {"model": ErrorOut, "description": f"The body is larger than {MAX_BODY_BYTES} bytes."},
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
        responses={**_UNAUTHORIZED, 404: {"model": ErrorOut, "description": "No batch of yours has this id."}},
    )
    def batch_result(
        batch_id: Annotated[str, Path(pattern=CODE_PATTERN)], owner: Annotated[str, Depends(creditor)]
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
        responses=_UNAUTHORIZED,
    )
    def activities(
        owner: Annotated[str, Depends(creditor)],
        after: Annotated[int, Query(ge=0, description="The last seq you stored (0 at first).")] = 0,
        limit: Annotated[int, Query(ge=1, le=MAX_PAGE, description="Page size.")] = 500,
    ) -> ActivityPage:
        page, more = feed.page(owner, after, limit)
        return ActivityPage(activities=page, next_after=page[-1].seq if page else after, more=more)

    return router
