"""What every supervisors' page needs: the site's services, the signed-in viewer, rendering and auditing."""

from __future__ import annotations

import hmac
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fastapi import Request
from fastapi.responses import HTMLResponse, JSONResponse, Response
from fastapi.templating import Jinja2Templates
from jinja2 import Environment, FileSystemLoader

from cartera.core.redaction import redact
from cartera.users.directory import Role, User
from cartera.users.sessions import SessionInfo
from cartera.web.i18n import LANGUAGES, Language, number, translate
from cartera.web.media import VerifiedCopies
from cartera.web.services import WebServices
from cartera.web.sse import StreamSlots, stream_cap
from cartera.web.workers import WorkerPool

SESSION_COOKIE = "cartera_session"
LANGUAGE_COOKIE = "cartera_lang"
TEMPLATES = Path(__file__).with_name("templates")


class SignInRequired(Exception):
    """No live session: HTML pages redirect to the sign-in form."""

    def __init__(self, expired: bool) -> None:
        self.expired = expired


class WebError(Exception):
    """A clean 4xx: rendered as the error page (or JSON) and audited as ``web.rejected`` with ``reason``."""

    def __init__(self, status: int, reason: str, message_key: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(reason)
        self.status, self.reason, self.message_key, self.headers = status, reason, message_key, headers or {}


@dataclass(frozen=True)
class Viewer:
    user: User
    session: SessionInfo

    @property
    def actor(self) -> str:
        return f"web:{self.user.name}"


class Web:
    """The supervisors' pages of one node."""

    def __init__(self, services: WebServices) -> None:
        config = services.config
        self.services, self.site = services, services.site
        self.users, self.sessions, self.throttle = services.users, services.sessions, services.throttle
        self.workers = WorkerPool(config.workers, config.queue, SESSION_COOKIE)
        self.streams = StreamSlots(stream_cap(config.max_connections))
        self.copies = VerifiedCopies(services.data_dir / "web" / "copies")
        self.secure_cookies = (config.public_url or "").startswith("https://")
        self.default_language: Language = config.language
        self.templates = Jinja2Templates(env=Environment(loader=FileSystemLoader(TEMPLATES), autoescape=True))

    # --- who is asking ---------------------------------------------------------------------------

    def viewer(self, request: Request) -> Viewer:
        token = request.cookies.get(SESSION_COOKIE)
        session = self.sessions.lookup(token) if token else None
        user = self.users.get(session.user_id) if session else None
        if session is None or user is None or user.disabled:
            raise SignInRequired(expired=token is not None)
        return Viewer(user, session)

    def known_viewer(self, request: Request) -> Viewer | None:
        """Who asked, when known (for error pages and their audit entries); never raises."""
        known: Viewer | None = getattr(request.state, "viewer", None)
        if known is None:
            try:
                known = self.viewer(request)
            except Exception:
                return None
        return known

    def signed_in(self, request: Request, *, agents: bool = False) -> Viewer:
        """The viewer, who must be granted this site (else a clear 403 page, audited); an agent only where
        ``agents`` (its own page: the supervisors' pages are not an agent's)."""
        viewer = request.state.viewer = self.viewer(request)
        if not viewer.user.sees_site(self.site):
            raise WebError(403, f"no grant for site {self.site}", "site.none")
        if viewer.user.role is Role.AGENT and not agents:
            raise WebError(403, f"{request.url.path[:80]} is a supervisors' page, not an agent's", "error.403")
        unresolved = viewer.user.unresolved(self.site)
        if unresolved:  # granted before portfolios named their creditor: which one is not known
            raise WebError(403, f"portfolio grant {', '.join(unresolved)} names no creditor", "grant.unresolved")
        return viewer

    def language(self, request: Request) -> Language:
        chosen = request.cookies.get(LANGUAGE_COOKIE)
        for language in LANGUAGES:
            if chosen == language:
                return language
        return self.default_language

    # --- answers ---------------------------------------------------------------------------------

    def page(
        self, request: Request, template: str, viewer: Viewer | None, status: int = 200, **values: Any
    ) -> HTMLResponse:
        language = self.language(request)

        def t(key: str, **fields: object) -> str:
            return translate(language, key, **fields)

        def num(value: object, decimals: int = 0) -> str:
            return number(language, value, decimals)

        context = {
            "t": t,
            "num": num,
            "lang": language,
            "viewer": viewer,
            "site": self.site,
            "path": request.url.path,
            **values,
        }
        response: HTMLResponse = self.templates.TemplateResponse(request, template, context, status_code=status)
        return response

    def error(self, request: Request, status: int, message_key: str, viewer: Viewer | None = None) -> Response:
        accept = request.headers.get("accept", "")
        if "application/json" in accept and "text/html" not in accept:
            return JSONResponse({"error": translate("en", message_key, site=self.site)}, status_code=status)
        return self.page(request, "error.html", viewer, status=status, message_key=message_key)

    def audit(self, actor: str, action: str, subject: str, **details: Any) -> None:
        self.services.audit.write(actor=actor, action=action, subject=subject, **details)


NO_BODY = "a GET of a stream takes no body"


def declares_body(request: Request) -> bool:
    """The request says a body follows (chunked, or a length other than 0, however spelt: ``00`` is none)."""
    headers = request.headers
    return "transfer-encoding" in headers or headers.get("content-length", "").strip().strip("0") != ""


def refuse_body(request: Request) -> None:
    """A GET answered by a stream (events, a recording) takes no body: one declared is refused (413) before the
    stream starts. Once it started, its disconnect watch reads the request through the pages' body limit, whose
    refusal can then only end the answer as a crash (a 500, a traceback logged); a body within it is read for
    nothing."""
    if declares_body(request):
        raise WebError(413, NO_BODY, "error.413")


def refusal(
    status: int, field: str, message: str, headers: dict[str, str] | None = None, **more: object
) -> JSONResponse:
    """A JSON refusal ``{"field", "error", **more}``: every error answer built from an exception's text is one,
    its text redacted (a vendor's message may echo a secret)."""
    body = {"field": field, "error": redact(message), **more}
    return JSONResponse(body, status_code=status, headers=headers)


def check_csrf(given: str, expected: str) -> None:
    if not (given and expected and hmac.compare_digest(given.encode(), expected.encode())):
        raise WebError(403, "missing or wrong CSRF token", "error.csrf")


def client_address(request: Request) -> str:
    return request.client.host if request.client else "unknown"


def anonymous(request: Request) -> str:
    return f"web:anonymous@{client_address(request)}"
