"""The supervisors' pages: recordings search, player, download, KPIs and the audit view; recordings and KPIs span
every site granted to the viewer that shares this node's store (the company view), with a site filter."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from fastapi import APIRouter, Request
from fastapi.responses import Response

from cartera.contact.phones import InvalidPhone, normalize
from cartera.core.errors import NotFound, UsageError
from cartera.core.models import CallOutcome
from cartera.portfolio.identity import code_problem
from cartera.recordings.access import Reach, RecordingView, SearchFilters
from cartera.web.context import Viewer, Web, WebError, refuse_body
from cartera.web.i18n import translate
from cartera.web.kpi import bar_chart
from cartera.web.media import BadRange, ByteRange, download_name, file_response, parse_range

PAGE_SIZE = 25
AUDIT_PAGE_SIZE = 50
KPI_DEFAULT_DAYS = 14
KPI_MAX_DAYS = 92
_ID = re.compile(r"[0-9]{1,12}")
NOT_VISIBLE = "no such recording within the viewer's reach"
#: Query numbers and dates are ASCII digits only (``str.isdigit`` also takes ``²`` and ``①``, ``int`` takes
#: Arabic-Indic digits), and dates lie within a range where a day more, in any time zone, is still a date.
_PAGE = re.compile(r"[0-9]{1,6}")
_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")
FIRST_DATE, LAST_DATE = date(1970, 1, 1), date(2999, 12, 31)
_AUDITED = ("recordings.", "web.", "users.")


@dataclass(frozen=True)
class Search:
    """The search form, validated: anything outside the expected shapes is a 400, not a query."""

    filters: SearchFilters
    page: int
    form: dict[str, str]
    sites: list[str]  #: the sites granted to the viewer, for the site filter


def pages_router(web: Web) -> APIRouter:
    """Recordings, player, download, KPIs and audit: signed-in users granted this site only."""
    router = APIRouter()

    @router.get("/recordings", include_in_schema=False)
    @web.workers.pooled
    def recordings(request: Request) -> Response:
        viewer = web.signed_in(request)
        search = _search(web, request, viewer)
        views = web.services.library.search(search.filters, actor=viewer.actor)
        return web.page(
            request,
            "recordings.html",
            viewer,
            views=views[:PAGE_SIZE],
            page=search.page,
            more=len(views) > PAGE_SIZE,
            form=search.form,
            query=urlencode({key: value for key, value in search.form.items() if value}),
            outcomes=[outcome.value for outcome in CallOutcome],
            portfolios=web.services.reads.portfolios(viewer.user.reach()),
            sites=search.sites,
            zone=web.services.zone,
            as_local=_local(web),
        )

    @router.get("/recordings/{recording_id}", include_in_schema=False)
    @web.workers.pooled
    def player(request: Request, recording_id: str) -> Response:
        viewer = web.signed_in(request)
        view = visible(web, viewer, recording_id)
        details = {"recording_site": view.site} if view.site != web.site else {}
        web.audit(viewer.actor, "recordings.view", f"recording:{view.id}", **details)  # shows account and phone
        here = web.services.library.store_of(view.site) is not None
        return web.page(request, "player.html", viewer, view=view, here=here, as_local=_local(web))

    @router.get("/recordings/{recording_id}/audio", include_in_schema=False)
    @web.workers.pooled
    def audio(request: Request, recording_id: str) -> Response:
        return stream(web, request, recording_id, attachment=False)

    @router.get("/recordings/{recording_id}/download", include_in_schema=False)
    @web.workers.pooled
    def download(request: Request, recording_id: str) -> Response:
        return stream(web, request, recording_id, attachment=True)

    @router.get("/kpi", include_in_schema=False)
    @web.workers.pooled
    def kpi(request: Request) -> Response:
        viewer = web.signed_in(request)
        today = web.services.clock.now().astimezone(web.services.zone).date()
        since = _date(request.query_params.get("since")) or today - timedelta(days=KPI_DEFAULT_DAYS - 1)
        until = _date(request.query_params.get("until")) or today
        if since > until or (until - since).days >= KPI_MAX_DAYS:
            raise WebError(400, "the KPI period must run forward and span at most 92 days", "error.422")
        reach = _site_filter(viewer.user.reach(), request.query_params.get("site", "").strip())
        kpis = web.services.reads.kpis(reach, since=since, until=until)
        language = web.language(request)
        chart = bar_chart(
            kpis,
            since,
            until,
            title=translate(language, "kpi.chart"),
            labels=(translate(language, "kpi.attempts"), translate(language, "kpi.contacts")),
        )
        return web.page(
            request,
            "kpi.html",
            viewer,
            kpis=kpis,
            chart=chart,
            since=since.isoformat(),
            until=until.isoformat(),
            sites=list(viewer.user.reach()),
            chosen=request.query_params.get("site", "").strip(),
        )

    @router.get("/audit", include_in_schema=False)
    @web.workers.pooled
    def audit_view(request: Request) -> Response:
        viewer = web.signed_in(request)
        if not viewer.user.may_audit:
            raise WebError(403, f"the audit view needs the auditor or admin role, not {viewer.user.role}", "error.403")
        if viewer.user.portfolios(web.site) is not None:  # the log spans every creditor's portfolios
            raise WebError(403, "the audit view needs a grant of the whole site, not of some portfolios", "error.403")
        page = _page(request.query_params.get("page"))
        offset = (page - 1) * AUDIT_PAGE_SIZE
        entries = web.services.reads.audit_page(_AUDITED, offset=offset, limit=AUDIT_PAGE_SIZE + 1)
        return web.page(
            request,
            "audit.html",
            viewer,
            entries=entries[:AUDIT_PAGE_SIZE],
            page=page,
            more=len(entries) > AUDIT_PAGE_SIZE,
            form={},
        )

    return router


def stream(web: Web, request: Request, recording_id: str, *, attachment: bool) -> Response:
    """A recording played or downloaded, whole or by range: one pass, one audit row (see ``deliver``)."""
    viewer = web.signed_in(request)
    refuse_body(request)  # the file is streamed: see refuse_body
    header = request.headers.get("range")

    def send(view: RecordingView, key: str) -> tuple[tuple[Path, ByteRange | None], dict[str, Any]]:
        store = web.services.library.store_of(view.site)
        if store is None:
            reason = f"recording {view.id} is kept in site {view.site}'s store, unknown to this node"
            raise WebError(409, reason, "error.elsewhere")
        copy = web.copies.path(view, key, store)
        size = copy.stat().st_size
        try:
            wanted = parse_range(header, size)
        except BadRange:
            reason = f"unsatisfiable range {(header or '')[:80]!r} of {size} bytes"
            raise WebError(416, reason, "error.416", {"Content-Range": f"bytes */{size}"}) from None
        # the range read, never the header: a header of thousands of empty elements made each row as long
        read = "all" if wanted is None else f"bytes={wanted.start}-{wanted.end}"
        return (copy, wanted), {"range": read, "sha256": view.sha256, "portfolio": view.portfolio}

    action = "recordings.download" if attachment else "recordings.play"
    try:
        view, (copy, wanted) = web.services.library.deliver(
            recording_number(recording_id), viewer.actor, action, send, sites=viewer.user.reach()
        )
    except NotFound:
        raise WebError(404, NOT_VISIBLE, "error.404") from None
    except UsageError as exc:
        raise WebError(409, str(exc), "error.409") from None
    return file_response(copy, wanted, download_name(view.site, view), attachment=attachment)


def visible(web: Web, viewer: Viewer, recording_id: str) -> RecordingView:
    """The recording, when it is of a site granted to the viewer and in its portfolios there; else 400 or 404
    (audited by the error handler, like every refusal): an id out of reach and an unknown id look the same."""
    view = web.services.library.view(recording_number(recording_id), sites=viewer.user.reach())
    if view is None:
        raise WebError(404, NOT_VISIBLE, "error.404")
    return view


def recording_number(recording_id: str) -> int:
    """The id in a recording's URL; 400 unless it is 1 to 12 ASCII digits."""
    if not _ID.fullmatch(recording_id):
        raise WebError(400, f"not a recording id: {recording_id[:80]!r}", "error.400")
    return int(recording_id)


def _search(web: Web, request: Request, viewer: Viewer) -> Search:
    params = request.query_params
    form = {key: params.get(key, "").strip() for key in ("account", "phone", "agent", "portfolio", "outcome")}
    form |= {key: params.get(key, "").strip() for key in ("since", "until", "site")}
    granted = viewer.user.reach()
    reach = _site_filter(granted, form["site"])
    for key, parts in (("account", 3), ("agent", 1), ("portfolio", 2)):
        if form[key] and not _reference(form[key], parts):
            raise WebError(400, f"search field {key} has characters outside [A-Za-z0-9._@-]", "error.422")
    if form["outcome"] and form["outcome"] not in {outcome.value for outcome in CallOutcome}:
        raise WebError(400, "unknown outcome", "error.422")
    phone = None
    if form["phone"]:
        try:
            phone = normalize(form["phone"][:32], web.services.country)
        except InvalidPhone:
            raise WebError(400, "the phone is not a valid number", "error.422") from None
    zone = web.services.zone
    since, until = _date(form["since"]), _date(form["until"])
    page = _page(params.get("page"))
    filters = SearchFilters(
        account=form["account"] or None,
        phone=phone,
        agent=form["agent"] or None,
        portfolio=form["portfolio"] or None,
        outcome=form["outcome"] or None,
        since=datetime.combine(since, time(), zone) if since else None,
        until=datetime.combine(until + timedelta(days=1), time(), zone) if until else None,
        limit=PAGE_SIZE + 1,
        offset=(page - 1) * PAGE_SIZE,
        sites=reach,
    )
    return Search(filters, page, form, list(granted))


def _site_filter(granted: Reach, chosen: str) -> Reach:
    """The viewer's sites, or only ``chosen`` (400 unless it is one of them, whatever exists elsewhere)."""
    if not chosen:
        return granted
    if chosen not in granted:
        raise WebError(400, f"site filter {chosen[:64]!r} is not a site granted to the viewer", "error.422")
    return {chosen: granted[chosen]}


def _date(text: str | None) -> date | None:
    if not text:
        return None
    try:
        day = date.fromisoformat(text) if _DATE.fullmatch(text) else None
    except ValueError:
        day = None
    if day is None or not FIRST_DATE <= day <= LAST_DATE:
        raise WebError(400, f"dates must be YYYY-MM-DD from {FIRST_DATE} to {LAST_DATE}", "error.422")
    return day


def _page(text: str | None) -> int:
    if text is None or text == "":
        return 1
    if not _PAGE.fullmatch(text) or not 1 <= int(text) <= 100_000:
        raise WebError(400, "page must be a number from 1 to 100000", "error.422")
    return int(text)


def _reference(text: str, parts: int) -> bool:
    """``text`` is at most ``parts`` identifiers of the import's allow-list joined by ``/``."""
    split = text.split("/")
    return len(split) <= parts and all(code_problem(part) is None for part in split)


def _local(web: Web) -> Callable[[str], str]:
    zone = web.services.zone

    def as_local(iso: str) -> str:
        return f"{datetime.fromisoformat(iso).astimezone(zone):%Y-%m-%d %H:%M:%S}"

    return as_local
