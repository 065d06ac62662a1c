"""``/healthz`` for IT and ``/metrics`` for Prometheus: no sign-in, read from the node's state and its store.

``/healthz`` tells anyone only ok or fail per check; the detail (store URL without password, vendor answers,
paths: redacted all the same) goes to a signed-in admin of the site, or to a request whose socket peer is
loopback and that carries no forwarded header (a proxy in front adds one).

Neither takes a page worker nor a thread per request: each is a :class:`~cartera.web.workers.SharedResult`, one
computation at a time on a thread of its own that every concurrent request awaits, served as is for
:data:`FRESH_SECONDS` after. A flood of either (anyone may send one) thus costs the store one reader and the node's
scheduled jobs nothing; no request is shed, so Prometheus's scrape from loopback is answered whoever else floods
(round 21 M1). Only an admin's ``/healthz`` detail looks its session up, in the pages' lane (when that lane is full
the answer goes without the detail).
"""

from __future__ import annotations

import functools
import ipaddress
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
from starlette.concurrency import run_in_threadpool

from cartera.core.redaction import redact
from cartera.users.directory import Role
from cartera.web.context import SESSION_COOKIE, Web
from cartera.web.services import WebServices
from cartera.web.workers import Overloaded, SharedResult

#: Headers a proxy adds: a request carrying one is not trusted as local, whatever its socket peer.
FORWARDED_HEADERS = ("forwarded", "x-forwarded-for", "x-real-ip", "x-forwarded-host")
#: Seconds a computed ``/metrics`` or ``/healthz`` result is served again to the requests that follow.
FRESH_SECONDS = 1.0


def _fresh() -> float:
    return FRESH_SECONDS


def health_router(services: WebServices) -> APIRouter:
    router = APIRouter()
    registry = CollectorRegistry(auto_describe=False)
    registry.register(StoreCollector(services))
    scrape = SharedResult(lambda: generate_latest(registry), _fresh, "cartera-web-metrics")
    checks = SharedResult(lambda: _checks(services), _fresh, "cartera-web-healthz")

    @router.get("/healthz")
    async def healthz(request: Request) -> JSONResponse:
        detail = await checks.get()
        healthy = all(check["ok"] for check in detail.values())
        body: dict[str, Any] = {
            "status": "ok" if healthy else "fail",
            "checks": {name: "ok" if check["ok"] else "fail" for name, check in detail.items()},
        }
        if await _may_see_detail(request, services.site):
            body |= {"site": services.site, "detail": detail}
        return JSONResponse(body, status_code=200 if healthy else 503, headers={"Cache-Control": "no-store"})

    @router.get("/metrics")
    async def metrics() -> Response:
        return Response(await scrape.get(), media_type=CONTENT_TYPE_LATEST)

    return router


def _checks(services: WebServices) -> dict[str, dict[str, Any]]:
    """Every check by name with its result and (redacted) detail: scheduler, store, each vendor's last check."""
    store_ok, store_detail = services.store.reachable()
    checks: dict[str, dict[str, Any]] = {
        "scheduler": {"ok": services.state.scheduler_running},
        "store": {"ok": store_ok, "detail": redact(store_detail)},
    }
    lease = services.store.lease() if store_ok else None
    if lease is not None:  # PostgreSQL: which node works the site, with its fencing token
        active, detail = lease.describe(datetime.now(UTC))
        checks["node"] = {"ok": active, "detail": detail, "token": lease.token}
    last_check = services.state.last_check
    if last_check is not None:
        at, lines = last_check
        for line in lines:
            if line.what != "store":
                result = line.result
                checks[line.what] = {"ok": result.ok, "detail": redact(result.detail), "checked_at": at.isoformat()}
    return checks


def local_request(request: Request) -> bool:
    """The request comes from this host: its socket peer is loopback and it carries no forwarded header."""
    peer = request.client.host if request.client else ""
    try:
        local = ipaddress.ip_address(peer).is_loopback
    except ValueError:
        local = False
    return local and not any(name in request.headers for name in FORWARDED_HEADERS)


async def _may_see_detail(request: Request, site: str) -> bool:
    """A signed-in admin granted the site, or a local request (:func:`local_request`). The session is looked up by
    a worker of the pages' lane; none free (the lane sheds): no detail."""
    if local_request(request):
        return True
    if not request.cookies.get(SESSION_COOKIE):
        return False
    web: Web = request.app.state.web
    try:
        viewer = await run_in_threadpool(web.workers.run, functools.partial(web.known_viewer, request))
    except Overloaded:
        return False
    return viewer is not None and viewer.user.role is Role.ADMIN and viewer.user.sees_site(site)


class StoreCollector(Collector):
    """Every scrape counts what the store holds for the node's site (no process-local counters to lose)."""

    def __init__(self, services: WebServices) -> None:
        self.services = services

    def collect(self) -> Iterator[GaugeMetricFamily]:
        counts = self.services.store.counts()
        yield _family("cartera_calls", "Finished calls by outcome", "outcome", counts.calls)
        abandonment = counts.abandonment
        yield GaugeMetricFamily(
            "cartera_abandonment_rate",
            f"Abandoned calls over calls answered by a person, last {abandonment.window_days:g} days "
            f"(limit {abandonment.limit:g})",
            value=abandonment.rate,
        )
        yield GaugeMetricFamily("cartera_abandonment_limit", "The abandonment rate allowed", value=abandonment.limit)
        yield _family("cartera_recordings", "Recordings by archival state", "state", counts.recordings)
        oldest = counts.oldest_pending
        lag = max(0.0, (self.services.clock.now() - oldest).total_seconds()) if oldest else 0.0
        yield GaugeMetricFamily(
            "cartera_archival_lag_seconds", "Age of the oldest recording not archived yet (0: none)", value=lag
        )
        yield _family("cartera_sms", "Text messages by state", "state", counts.sms)
        rows: dict[str, int] = {}
        for batch in counts.batches:
            for result, count in batch.items():
                rows[result] = rows.get(result, 0) + count
        yield GaugeMetricFamily("cartera_creditor_import_batches", "Creditor files imported", value=len(counts.batches))
        yield _family("cartera_creditor_import_rows", "Imported creditor rows by result", "result", rows.items())
        yield _family(
            "cartera_creditor_exported_seq", "Last activity exported, per creditor", "creditor", counts.cursors
        )
        lease = self.services.store.lease()
        if lease is not None:  # a takeover raises the token: changes(cartera_site_lease_token[1h])
            token = GaugeMetricFamily("cartera_site_lease_token", "The site's lease: fencing token", labels=["holder"])
            token.add_metric([lease.holder], float(lease.token))
            yield token
            left = (lease.expires_at - datetime.now(UTC)).total_seconds()
            yield GaugeMetricFamily(
                "cartera_site_lease_seconds_left", "Seconds until the site's lease expires unless renewed", value=left
            )


def _family(name: str, doc: str, label: str, values: Any) -> GaugeMetricFamily:
    family = GaugeMetricFamily(name, doc, labels=[label])
    for key, count in values:
        family.add_metric([str(key)], float(count))
    return family
