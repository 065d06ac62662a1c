"""The agents' page: state (ready / paused), the screen pop pushed over server-sent events, the right party's
confirmation that reveals the debt, and the disposition. Only users of the ``agent`` role with an extension."""

from __future__ import annotations

import re
import threading
import time
from collections import defaultdict, deque
from collections.abc import Callable
from dataclasses import asdict
from datetime import date, datetime
from decimal import Decimal, InvalidOperation
from http import HTTPStatus
from typing import Annotated

from fastapi import APIRouter, Form, Request
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool

from cartera.contact.compliance import LineType, Reason
from cartera.core.errors import UsageError
from cartera.core.models import CallOutcome
from cartera.users.directory import Role
from cartera.web.context import SESSION_COOKIE, Viewer, Web, WebError, check_csrf, refusal, refuse_body
from cartera.web.i18n import Language, translate
from cartera.web.sse import event_stream, last_event_id, too_many_streams
from cartera.workspace.errors import AlreadyDispositioned, CallbackNotAllowed, NotYourCall, PageNotOpen, WorkspaceError
from cartera.workspace.hub import AGENT_KINDS, CALL_NOT_VISIBLE, Subscription, WorkspaceEvent, WorkspaceHub
from cartera.workspace.offers import SKIP_REASONS
from cartera.workspace.promises import Instalment
from cartera.workspace.screen import NotOnScreen, jsonable
from cartera.workspace.service import MAX_NOTE, CallbackRequest, DispositionInput

_ID = re.compile(r"[0-9]{1,12}")
_AMOUNT = re.compile(r"[0-9]{1,12}([.,][0-9]{1,2})?")
STATE_CHANGES_PER_S = 5  #: state changes one agent may make in a second: each is an audit row and a dialer request


class DispositionForm(BaseModel):
    """The disposition form as posted (every field text, as typed)."""

    model_config = ConfigDict(extra="forbid")

    code: str = Field(max_length=32)
    note: str = Field("", max_length=MAX_NOTE)
    promise_amount: str = Field("", max_length=20)
    promise_due: str = Field("", max_length=10)
    callback_at: str = Field("", max_length=40)  # with seconds, a fraction and a UTC offset: 32
    callback_anyone: str = Field("", max_length=5)
    line_type: str = Field("", max_length=16)
    csrf: str = Field("", max_length=128)


def _monotonic() -> float:
    return time.monotonic()  # looked up at each call: tests replace this module's clock


class StateRate:
    """At most ``per_second`` state changes (or refused dispositions) per agent in any second; past that, refused
    (429) until it slows."""

    def __init__(self, per_second: int = STATE_CHANGES_PER_S, clock: Callable[[], float] | None = None) -> None:
        self.per_second = per_second
        self._clock = clock or _monotonic
        self._recent: defaultdict[str, deque[float]] = defaultdict(deque)
        self._lock = threading.Lock()

    def allow(self, agent: str) -> bool:
        """Counts one for ``agent`` unless it spent its second's allowance (then ``False``)."""
        now = self._clock()
        with self._lock:
            if self._spent(agent, now):
                return False
            self._recent[agent].append(now)
            return True

    def spent(self, agent: str) -> bool:
        """Whether ``agent`` spent its allowance in the last second (nothing counted)."""
        with self._lock:
            return self._spent(agent, self._clock())

    def _spent(self, agent: str, now: float) -> bool:
        recent = self._recent[agent]
        while recent and now - recent[0] >= 1.0:
            recent.popleft()
        return len(recent) >= self.per_second


def agent_router(web: Web) -> APIRouter:
    """The agent's page, its event stream, its state and the call on its screen."""
    router = APIRouter()
    hub = web.services.workspace
    rate = StateRate()

    @router.get("/agent", include_in_schema=False)
    @web.workers.pooled
    def page(request: Request) -> Response:
        viewer, extension = signed_in_agent(web, request)
        status = hub.open_page(viewer.user.name, extension, viewer.user.portfolios(web.site))
        messages = page_messages(web.language(request))
        return web.page(
            request,
            "agent.html",
            viewer,
            agent_status=status,
            messages=messages,
            skip_reasons=SKIP_REASONS,
            max_note=MAX_NOTE,
        )

    @router.get("/agent/events", include_in_schema=False)
    async def events(request: Request) -> Response:
        viewer, extension = await run_in_threadpool(signed_in_agent, web, request)
        refuse_body(request)
        name = viewer.user.name
        holder = f"user:{name}"
        slot = web.streams.take(holder)
        if slot is None:
            return too_many_streams()
        since = last_event_id(request)
        try:
            subscription, first = await _page_opened(web, hub, viewer, extension, since)
        except BaseException:  # the store failing (or the client gone) before the stream: its slot is free again
            slot.give_back()
            raise
        token = request.cookies.get(SESSION_COOKIE, "")

        async def alive() -> bool:
            """The agent's session is live (an open page keeps it so, up to its longest life)."""
            return await run_in_threadpool(web.sessions.lookup, token) is not None

        return event_stream(
            request, subscription, first, on_close=lambda: hub.roster.page_gone(name), alive=alive, slot=slot
        )

    @router.post("/agent/state", include_in_schema=False)
    @web.workers.pooled
    def state(
        request: Request,
        state: Annotated[str, Form(max_length=16)],
        reason: Annotated[str, Form(max_length=64)] = "",
        csrf: Annotated[str, Form(max_length=128)] = "",
    ) -> Response:
        viewer, _ = signed_in_agent(web, request)
        check_csrf(csrf, viewer.session.csrf)
        name = viewer.user.name
        if not rate.allow(name):
            return refusal(429, "state", f"more than {rate.per_second} state changes in a second")
        try:
            if state == "ready":
                status = hub.roster.ready(name)
            elif state == "paused":
                status = hub.roster.pause(name, reason or "break")
            else:
                raise WebError(400, f"unknown agent state {state[:16]!r}", "error.422")
        except PageNotOpen as exc:  # its state is not known until its page opens
            return refusal(409, exc.field, str(exc))
        except UsageError as exc:
            return refusal(409, "state", str(exc))
        web.audit(viewer.actor, "workspace.state", f"agent:{name}", state=status.state, reason=status.pause_reason)
        return JSONResponse(status.as_event())

    call_routes(router, web, hub)
    return router


def call_routes(router: APIRouter, web: Web, hub: WorkspaceHub) -> None:
    """The call on the agent's screen: its codes, the right party's confirmation, its disposition."""
    refused = StateRate()  # refused dispositions: each may be an audit row, and a guess at a field

    @router.post("/agent/calls/{attempt_id}/right-party", include_in_schema=False)
    @web.workers.pooled
    def right_party(request: Request, attempt_id: str, csrf: Annotated[str, Form(max_length=128)] = "") -> Response:
        viewer, _ = signed_in_agent(web, request)
        check_csrf(csrf, viewer.session.csrf)
        number = on_screen(hub, viewer, attempt_id)
        within = viewer.user.portfolios(web.site)
        service = web.services.workspace_service
        try:
            details = hub.screens.details(number, viewer.user.name, within)
            service.confirm_right_party(viewer.user.name, number, within=within)  # its right-party codes now
        except (NotOnScreen, NotYourCall) as exc:
            raise WebError(404, str(exc), "error.404") from None
        found = details.as_json()
        found["promises"] = [
            jsonable(asdict(promise)) for line in details.accounts for promise in service.promises_of(line.id)
        ]
        return JSONResponse(found)

    @router.get("/agent/calls/{attempt_id}/codes", include_in_schema=False)
    @web.workers.pooled
    def codes(request: Request, attempt_id: str) -> Response:
        viewer, _ = signed_in_agent(web, request)
        number = on_screen(hub, viewer, attempt_id)
        pop = hub.on_screen(viewer.user.name, viewer.user.portfolios(web.site))
        account_id = pop.data.get("account_id") if pop else None
        if pop is not None and pop.kind == CALL_NOT_VISIBLE:  # audited as such, not as a call of no account
            raise WebError(404, f"call {number} is not visible: outside the agent's portfolios", "error.404")
        if not isinstance(account_id, int):
            raise WebError(404, f"call {number} is of no account: no disposition codes", "error.404")
        english = web.language(request) == "en"
        return JSONResponse(
            [
                {
                    "code": spec.code,
                    "label": spec.label_en if english else spec.label_es,
                    "flags": sorted(flag.value for flag in spec.flags),
                }
                for spec in web.services.workspace_service.codes(account_id)
            ]
        )

    @router.post("/agent/calls/{attempt_id}/disposition", include_in_schema=False)
    @web.workers.pooled
    def disposition(request: Request, attempt_id: str, form: Annotated[DispositionForm, Form()]) -> Response:
        viewer, _ = signed_in_agent(web, request)
        check_csrf(form.csrf, viewer.session.csrf)
        name = viewer.user.name
        if refused.spent(name):
            return refusal(429, "disposition", f"more than {refused.per_second} refused dispositions in a second")
        if not _ID.fullmatch(attempt_id):
            raise WebError(400, "not a call id", "error.400")
        try:
            given = DispositionInput(
                attempt_id=int(attempt_id),
                code=form.code.strip(),
                note=form.note.strip(),
                promise=_promise(form.promise_amount, form.promise_due),
                callback=_callback(web, form.callback_at, _checked(form.callback_anyone)),
                line_type=_line_type(form.line_type),
            )
        except WorkspaceError as exc:
            refused.allow(name)
            return refusal(400, exc.field, str(exc))
        answer = _dispose(web, hub, viewer, given)
        if answer.status_code >= HTTPStatus.BAD_REQUEST:
            refused.allow(name)
        return answer


async def _page_opened(
    web: Web, hub: WorkspaceHub, viewer: Viewer, extension: str, since: int | None
) -> tuple[Subscription, list[WorkspaceEvent]]:
    """An agent's page stream subscribed and its page counted on the roster, with what it is shown first; when
    something fails on the way (the store: the preview offer), neither the subscription nor the page is kept."""
    name = viewer.user.name
    subscription: Subscription | None = None
    seen = False
    try:
        within = viewer.user.portfolios(web.site)  # its grants now: what is replayed or shown again passes them
        hub.open_page(name, extension, within)
        subscription = hub.subscribe(name, AGENT_KINDS, last_event_id=since, within=within)
        hub.roster.page_seen(name)
        seen = True
        first: list[WorkspaceEvent] = []
        offer = web.services.offers.held(name)
        if since is None:  # a page just opened: its state (to it alone), the call on screen or the offer held
            first.append(hub.state_now(name))
            shown = (hub.on_screen(name, within), offer if offer is not None and offer.visible(within) else None)
            first.extend(event for event in shown if event is not None)
        if offer is None:  # preview mode: a ready agent's first page is offered an account (pushed as it is made)
            await run_in_threadpool(web.services.offers.offer, name)
    except BaseException:
        if subscription is not None:
            subscription.close()
        if seen:
            hub.roster.page_gone(name)
        raise
    return subscription, first


def signed_in_agent(web: Web, request: Request) -> tuple[Viewer, str]:
    """The signed-in agent and its extension; 403 for anyone else."""
    viewer = web.signed_in(request, agents=True)
    extension = viewer.user.extension
    if viewer.user.role is not Role.AGENT or not extension:
        reason = f"the agent page needs the agent role and an extension, not {viewer.user.role}"
        raise WebError(403, reason, "error.403")
    return viewer, extension


def on_screen(hub: WorkspaceHub, viewer: Viewer, attempt_id: str) -> int:
    """The call ``attempt_id`` when it is the one on the agent's screen, else 404 (audited)."""
    number = int(attempt_id) if _ID.fullmatch(attempt_id) else None
    pop = hub.on_screen(viewer.user.name)
    if number is None or pop is None or pop.data.get("attempt_id") != number:
        raise WebError(404, f"call {attempt_id[:20]!r} is not on the agent's screen", "error.404")
    return number


def _dispose(web: Web, hub: WorkspaceHub, viewer: Viewer, given: DispositionInput) -> Response:
    """Save the disposition through the workspace service; each refusal a JSON answer naming its field."""
    name = viewer.user.name
    try:
        saved = web.services.workspace_service.post_disposition(name, given, within=viewer.user.portfolios(web.site))
    except NotYourCall as exc:
        return refusal(403, exc.field, str(exc))
    except AlreadyDispositioned as exc:
        hub.dispositioned(name, given.attempt_id)  # saved already (a double submit): the screen is free
        return refusal(409, exc.field, str(exc))
    except CallbackNotAllowed as exc:
        answer = refusal(400, exc.field, str(exc))
        answer.headers["X-Next-Allowed-At"] = exc.next_allowed_at.isoformat() if exc.next_allowed_at else ""
        return answer
    except WorkspaceError as exc:
        return refusal(400, exc.field, str(exc))
    status = hub.dispositioned(name, given.attempt_id)  # a dialer down leaves the agent paused, told so
    state, down = (status.state.value, status.dialer_down) if status else (None, False)
    return JSONResponse({"saved": saved.id, "code": saved.code, "state": state, "dialer_down": down}, status_code=201)


def _promise(amount: str, due: str) -> tuple[Instalment, ...]:
    amount, due = amount.strip(), due.strip()
    if not amount and not due:
        return ()
    if not _AMOUNT.fullmatch(amount):
        raise WorkspaceError("promise.amount", "an amount like 1500.00 is needed")
    try:
        day = date.fromisoformat(due)
    except ValueError:
        raise WorkspaceError("promise.due", "a date YYYY-MM-DD is needed") from None
    try:
        return (Instalment(Decimal(amount.replace(",", ".")), day),)
    except InvalidOperation:
        raise WorkspaceError("promise.amount", "an amount like 1500.00 is needed") from None


def _callback(web: Web, at: str, anyone: bool) -> CallbackRequest | None:
    """A callback's time as typed (``YYYY-MM-DDTHH:MM``, the site's local time)."""
    at = at.strip()
    if not at:
        return None
    try:
        local = datetime.fromisoformat(at)
    except ValueError:
        raise WorkspaceError("callback.at", "a time YYYY-MM-DDTHH:MM is needed") from None
    if local.tzinfo is None:
        local = local.replace(tzinfo=web.services.zone)
    return CallbackRequest(at=local, for_anyone=anyone)


#: what a checkbox's value may read (the page's sends "1" or nothing), case aside
_CHECKED = {"1": True, "on": True, "true": True, "": False, "0": False, "false": False, "off": False}


def _checked(text: str) -> bool:
    """``callback_anyone`` as posted: one of :data:`_CHECKED`, else refused (never read as true)."""
    try:
        return _CHECKED[text.strip().lower()]
    except KeyError:
        raise WorkspaceError("callback_anyone", "1, on or true; or 0, off, false or nothing") from None


def _line_type(text: str) -> LineType | None:
    if not text:
        return None
    try:
        return LineType(text)
    except ValueError:
        raise WorkspaceError("line_type", f"one of {', '.join(LineType)}") from None


#: The page's script reads its texts from here (the page never builds HTML from data: text only).
_PAGE_KEYS = (
    "agent.state.ready",
    "agent.state.on_call",
    "agent.state.wrap_up",
    "agent.state.paused",
    "agent.waiting",
    "agent.ask_for",
    "agent.no_account",
    "agent.not_visible",
    "agent.pending",
    "agent.confirm",
    "agent.mini_miranda",
    "agent.script.text",
    "agent.saved",
    "agent.dialer_down",
    "agent.ended",
    "agent.law.allowed",
    "agent.law.denied",
    "agent.law.next",
    "agent.channel.call",
    "agent.channel.sms",
    "agent.reconnecting",
    "agent.call",
    "agent.calling",
    "agent.offer.unanswered",
    "agent.offer.denied",
)


def page_messages(language: Language) -> dict[str, str]:
    """The texts the page's script shows, in ``language``."""
    messages = {key: translate(language, key) for key in _PAGE_KEYS}
    messages |= {f"reason.{key}": translate(language, f"reason.{key}") for key in Reason}
    messages |= {f"outcome.{key}": translate(language, f"outcome.{key}") for key in CallOutcome}
    return messages
