"""Signing in and out (CSRF-checked, throttled per user and per address) and the language switch."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Form, Request
from fastapi.responses import RedirectResponse, Response

from cartera.users.directory import Role
from cartera.web.context import (
    LANGUAGE_COOKIE,
    SESSION_COOKIE,
    Web,
    WebError,
    anonymous,
    check_csrf,
    client_address,
)
from cartera.web.i18n import LANGUAGES

PRESESSION_COOKIE = "cartera_signin"  #: the sign-in form's pre-session, whose CSRF token the server keeps


def signin_router(web: Web) -> APIRouter:
    router = APIRouter()

    def session_cookie(response: Response, token: str) -> None:
        response.set_cookie(
            SESSION_COOKIE, token, httponly=True, samesite="strict", secure=web.secure_cookies, path="/"
        )

    @router.get("/", include_in_schema=False)
    def home() -> RedirectResponse:
        return RedirectResponse("/recordings", status_code=303)

    @router.get("/login", include_in_schema=False)
    @web.workers.anonymous
    def login_form(request: Request, expired: int = 0) -> Response:
        return _login_page(request, "login.expired" if expired else None, 200)

    def _login_page(request: Request, message: str | None, status: int, **values: object) -> Response:
        token, csrf = web.sessions.begin_sign_in()
        response = web.page(request, "login.html", None, status=status, csrf=csrf, message=message, **values)
        response.set_cookie(
            PRESESSION_COOKIE, token, httponly=True, samesite="strict", secure=web.secure_cookies, path="/login"
        )
        return response

    @router.post("/login", include_in_schema=False)
    @web.workers.anonymous
    def login(
        request: Request,
        user: Annotated[str, Form(max_length=64)],
        password: Annotated[str, Form(max_length=1024)],
        csrf: Annotated[str, Form(max_length=128)] = "",
    ) -> Response:
        check_csrf(csrf, web.sessions.finish_sign_in(request.cookies.get(PRESESSION_COOKIE, "")) or "")
        address = client_address(request)
        locked = web.throttle.attempt(user, address)
        if locked is not None:
            request.app.state.refusal_audit.throttled_sign_in(request, user, locked.isoformat())
            return _login_page(request, "login.throttled", 429, until=f"{locked:%H:%M:%S}")
        found = web.workers.low_priority(lambda: web.users.authenticate(user, password))
        if found is None:
            web.throttle.failed(user, address)
            web.audit(anonymous(request), "web.login_failed", f"user:{user}")
            return _login_page(request, "login.failed", 401)
        web.throttle.succeeded(user, address)
        token, _ = web.sessions.create(found.id)
        web.audit(f"web:{found.name}", "web.login", f"user:{found.name}", address=address)
        response = RedirectResponse("/agent" if found.role is Role.AGENT else "/recordings", status_code=303)
        session_cookie(response, token)
        response.delete_cookie(PRESESSION_COOKIE, path="/login")
        return response

    @router.post("/logout", include_in_schema=False)
    def logout(request: Request, csrf: Annotated[str, Form(max_length=128)] = "") -> Response:
        viewer = request.state.viewer = web.viewer(request)
        check_csrf(csrf, viewer.session.csrf)
        web.sessions.end(request.cookies.get(SESSION_COOKIE, ""))
        web.audit(viewer.actor, "web.logout", f"user:{viewer.user.name}")
        if viewer.user.role is Role.AGENT:  # its preview offer goes back to the list, and no call reaches it
            web.services.offers.signed_out(viewer.user.name)
        response = RedirectResponse("/login", status_code=303)
        response.delete_cookie(SESSION_COOKIE, path="/")
        return response

    @router.get("/lang/{language}", include_in_schema=False)
    def switch_language(language: str, back: str = "/recordings") -> Response:
        if language not in LANGUAGES:
            raise WebError(400, f"unknown language {language[:8]!r}", "error.400")
        target = back if back.startswith("/") and not back.startswith("//") and "\\" not in back else "/"
        response = RedirectResponse(target, status_code=303)
        response.set_cookie(LANGUAGE_COOKIE, language, samesite="strict", secure=web.secure_cookies, path="/")
        return response

    return router
