"""The node's ASGI app: core's own routes plus each started adapter's
:meth:`~cartera.core.adapters.Adapter.http_router`."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from http import HTTPStatus
from pathlib import Path

from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException
from uvicorn.middleware.proxy_headers import ProxyHeadersMiddleware

from cartera.core.errors import CarteraError, DialerUnavailable, UsageError
from cartera.core.logs import event
from cartera.web.agent_pages import agent_router
from cartera.web.context import SignInRequired, Viewer, Web, WebError, anonymous, refusal
from cartera.web.head import HeadAsGet
from cartera.web.health import health_router
from cartera.web.i18n import translate
from cartera.web.nul_guard import NulInRequest, refuse_nul
from cartera.web.pages import pages_router
from cartera.web.preview import preview_router
from cartera.web.refusals import RefusalAudit
from cartera.web.server import ON_STOP, Tally
from cartera.web.services import WebServices
from cartera.web.signin import signin_router
from cartera.web.wallboard import wallboard_router
from cartera.web.workers import RETRY_AFTER_S, Overloaded
from cartera.web.workspace_api import API_PREFIX, Refused, answer_refusals, api_router, integration

PLUGIN_PREFIX = "/plugins"
AGENT_ROUTES = "/agent/"  #: the agent page's own requests, which read JSON answers
#: The largest body of a page's or the workspace API's request (a sign-in form is a few hundred bytes).
PAGE_BODY_LIMIT = 64 * 1024
#: The largest body of a plugin's request unless its router sets its own ``max_body_size`` (the creditor API's
#: is its ``max_body_bytes``, checked after its token): every body is bounded before anything reads it.
PLUGIN_BODY_LIMIT = PAGE_BODY_LIMIT
STATIC = Path(__file__).with_name("static")
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; img-src 'self' data:; media-src 'self'; style-src 'self'; script-src 'self'; "
        "frame-ancestors 'none'; form-action 'self'; base-uri 'none'"
    ),
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
}
log = logging.getLogger("cartera.web")


def build_app(services: WebServices) -> FastAPI:
    """The app of one site's node, given its services (never the node). Plugin routes live under
    ``/plugins/{kind}``; the supervisors' pages, ``/healthz`` and ``/metrics`` are core's."""
    app = FastAPI(
        title=f"Cartera node {services.site}",
        version="1",
        docs_url=None,
        redoc_url=None,
        dependencies=[Depends(refuse_nul)],
    )
    for kind, router in services.routers():
        app.include_router(router, prefix=f"{PLUGIN_PREFIX}/{kind}", max_body_size=PLUGIN_BODY_LIMIT)
    web = Web(services)
    app.state.web = web
    core = (health_router(services), signin_router(web), pages_router(web), agent_router(web), preview_router(web))
    for router in (*core, wallboard_router(web), api_router()):
        app.include_router(router, max_body_size=PAGE_BODY_LIMIT)  # 413 past it, before a form is held
    answer_refusals(app)
    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    _handle_errors(app, web)
    setattr(app.state, ON_STOP, [app.state.refusal_audit.close])  # the strangers' refusals left only counted
    trusted = services.config.trusted_proxies
    if trusted:  # only then is X-Forwarded-For believed: its right-most address outside these networks
        app.add_middleware(ProxyHeadersMiddleware, trusted_hosts=[str(network) for network in trusted])

    @app.middleware("http")
    async def security_headers(request: Request, call_next: Callable[[Request], Awaitable[Response]]) -> Response:
        response = await call_next(request)
        for name, value in SECURITY_HEADERS.items():
            response.headers.setdefault(name, value)
        if not request.url.path.startswith("/static/"):  # pages show accounts and phones: kept by no cache
            response.headers.setdefault("Cache-Control", "no-store")
        return response

    app.add_middleware(HeadAsGet)  # outermost: HEAD meets every check, audit and header its GET does
    return app


def _answer_shed(app: FastAPI, answer: Callable[[Request, int, str, Viewer | None], Response]) -> None:
    """A request the worker pool shed answers 503 touching no store (no audit entry, no viewer looked up): a
    burst's sheds would queue for SQLite's write lock in the scheduled jobs' way. The log counts them instead,
    once a minute (``web.requests_shed``)."""
    shed = Tally("web.requests_shed")

    @app.exception_handler(Overloaded)
    async def overloaded(request: Request, _exc: Overloaded) -> Response:
        shed.note(path=request.url.path[:200])
        response = answer(request, 503, "error.503", None)
        response.headers["Retry-After"] = f"{RETRY_AFTER_S}"
        return response


def _answer_nul(
    app: FastAPI,
    page: Callable[[Request, str], Response],
    audit_rejected: Callable[[Request, int, str], Viewer | None],
) -> None:
    """A request holding a NUL or a lone surrogate answers 400, audited: a JSON ``{field, error}`` for the workspace
    API and the agent's page, ``{detail}`` (FastAPI's, the creditor API's) for a plugin's routes, else the error
    ``page``; each says which it held."""

    @app.exception_handler(NulInRequest)
    def nul(request: Request, exc: NulInRequest) -> Response:
        reason = str(exc)
        if request.url.path.startswith((API_PREFIX, AGENT_ROUTES)):
            audit_rejected(request, 400, reason)
            return refusal(400, "request", reason)
        if request.url.path.startswith(f"{PLUGIN_PREFIX}/"):
            audit_rejected(request, 400, reason)
            return JSONResponse({"detail": reason}, status_code=400)
        return page(request, reason)


def _agent_not_found(
    request: Request, exc: WebError, audit_rejected: Callable[[Request, int, str], Viewer | None]
) -> Response | None:
    """A 404 of the agent page's own routes (a call not on its screen, an account out of its reach), audited: a
    ``{field, error}`` as its other refusals, with a fixed text (the reason may name a portfolio outside its
    grants); ``None`` for any other refusal."""
    path = request.url.path
    if exc.status != HTTPStatus.NOT_FOUND or not path.startswith(AGENT_ROUTES):
        return None
    audit_rejected(request, exc.status, exc.reason)
    call = path.startswith(f"{AGENT_ROUTES}calls/")
    field, text = ("attempt", "the call is not on the agent's screen") if call else ("account", "not found")
    return refusal(exc.status, field, text, exc.headers)


def _handle_errors(app: FastAPI, web: Web) -> None:
    """Every failure a clean page or JSON, audited with who asked; never a stack trace in a response."""

    def answer(request: Request, status: int, message_key: str, viewer: Viewer | None) -> Response:
        """Plugins' routes and the workspace API are machines' APIs: their errors are JSON, never a page."""
        if request.url.path.startswith((f"{PLUGIN_PREFIX}/", f"{API_PREFIX}/")):
            return JSONResponse({"detail": HTTPStatus(status).phrase}, status_code=status)
        return web.error(request, status, message_key, viewer)

    audit_refusal = app.state.refusal_audit = RefusalAudit(web)  # its budget of strangers' refusals

    def audit_rejected(request: Request, status: int, reason: str) -> Viewer | None:
        """Audit a refused request (``web.rejected``) with who asked; that viewer, when known."""
        viewer = web.known_viewer(request)
        audit_refusal(request, viewer.actor if viewer else None, status, reason)
        return viewer

    def rejected(request: Request, status: int, reason: str, message_key: str, headers: dict[str, str]) -> Response:
        viewer = audit_rejected(request, status, reason)
        response = answer(request, status, message_key, viewer)
        response.headers.update(headers)
        return response

    def failed(request: Request, status: int, error: str) -> Response:
        """The error page of a failure on our side (5xx), audited when the store still answers."""
        viewer = web.known_viewer(request)
        actor = viewer.actor if viewer else anonymous(request)
        try:
            web.audit(actor, "web.failed", request.url.path[:200], status=status, error=error[:100])
        except Exception as exc:  # the store may be what failed; the answer must not
            event(log, "web.audit_failed", logging.ERROR, path=request.url.path, error=type(exc).__name__)
        return answer(request, status, f"error.{status}", viewer)

    @app.exception_handler(SignInRequired)
    def sign_in(request: Request, exc: SignInRequired) -> Response:
        reason = "session expired" if exc.expired else "not signed in"
        audit_refusal(request, None, 303, reason)
        return RedirectResponse("/login?expired=1" if exc.expired else "/login", status_code=303)

    @app.exception_handler(WebError)
    def web_error(request: Request, exc: WebError) -> Response:
        return _agent_not_found(request, exc, audit_rejected) or rejected(
            request, exc.status, exc.reason, exc.message_key, exc.headers
        )

    @app.exception_handler(StarletteHTTPException)
    def http_error(request: Request, exc: StarletteHTTPException) -> Response:
        key = f"error.{exc.status_code}" if exc.status_code in (400, 403, 404, 405, 413) else "error.400"
        return rejected(request, exc.status_code, str(exc.detail), key, dict(exc.headers or {}))

    _answer_shed(app, answer)
    _answer_nul(app, lambda request, reason: rejected(request, 400, reason, "error.400", {}), audit_rejected)

    @app.exception_handler(RequestValidationError)
    def invalid(request: Request, exc: RequestValidationError) -> Response:
        fields = ", ".join(".".join(str(part) for part in error["loc"]) for error in exc.errors()[:3])
        if request.url.path.startswith(API_PREFIX):  # its body is read before its token: the token answers first
            try:
                integration(request)
            except Refused as refused:
                return refusal(401, refused.error.field, str(refused.error), refused.headers)
            return _invalid_field(exc, skip=0)
        if request.url.path.startswith(AGENT_ROUTES):  # the agent's page reads {field, error}: the form's field
            audit_rejected(request, 422, f"invalid fields: {fields}")
            return _invalid_field(exc, skip=1)
        return rejected(request, 422, f"invalid fields: {fields}", "error.422", {})

    @app.exception_handler(DialerUnavailable)
    def dialer_down(request: Request, exc: DialerUnavailable) -> Response:
        """The agent's page tells the agent (``field`` ``dialer``) in its language that the dialer is unreachable,
        never the vendor's text (it may echo a login): that goes to the log (redacted) and the admin's ``/healthz``.
        Nothing was changed, the same post may be sent again once the dialer is back."""
        event(log, "web.dialer_unavailable", logging.WARNING, path=request.url.path, error=str(exc))
        told = translate(web.language(request), "agent.dialer_down")
        return refusal(503, "dialer", told, {"Retry-After": f"{RETRY_AFTER_S}"})

    @app.exception_handler(UsageError)
    def misused(request: Request, exc: UsageError) -> Response:
        """A request core cannot do as asked now (the caller's to change): 409, audited, never a 502."""
        return rejected(request, 409, str(exc), "error.409", {})

    @app.exception_handler(CarteraError)
    def vendor_failed(request: Request, exc: CarteraError) -> Response:
        event(log, "web.failed", logging.ERROR, path=request.url.path, error=str(exc))
        return failed(request, 502, type(exc).__name__)

    @app.middleware("http")
    async def crashed(request: Request, call_next: Callable[[Request], Awaitable[Response]]) -> Response:
        """A crash answers 500 here: left to Starlette's last handler, it would be raised on to the server,
        which logs its traceback a second time and drops the connection."""
        try:
            return await call_next(request)
        except Exception as exc:
            log.error("web: %s %s failed", request.method, request.url.path, exc_info=exc)
            return await run_in_threadpool(failed, request, 500, type(exc).__name__)


def _invalid_field(exc: RequestValidationError, *, skip: int) -> JSONResponse:
    """422 ``{"field", "error"}`` naming the request's first invalid field (its location past ``skip`` parts)."""
    first = exc.errors()[0]
    field = ".".join(str(part) for part in first["loc"][skip:])
    return refusal(422, field, f"{field}: {first['msg']}")
