"""One site's node, the composition root: its config, store, adapters and services, wired (and closed); running
them is :mod:`cartera.runtime`'s."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

from fastapi import APIRouter
from sqlalchemy import select

from cartera.contact.abandonment import answered_calls, latest_calls
from cartera.contact.calls import CallService
from cartera.contact.campaign import Campaign
from cartera.contact.compliance import ComplianceGate
from cartera.contact.compliance.prefs_service import ContactPrefs
from cartera.contact.explain import GateExplainer
from cartera.contact.listing import CallList, ready_in
from cartera.contact.pace import Pace
from cartera.contact.sms_templates import SmsTemplates
from cartera.contact.targets import Targets
from cartera.contact.texts import TextService
from cartera.core.adapters import Adapter, CrmSync, Dialer, RecordingStore, SmsGateway
from cartera.core.audit import AuditLog
from cartera.core.config import SiteConfig, load_site
from cartera.core.errors import CarteraError, UsageError
from cartera.core.hooks import Hooks, load_site_plugins
from cartera.core.models import CallOutcome
from cartera.core.registry import AdapterCatalog
from cartera.core.store.database import Database
from cartera.core.store.schema import Site
from cartera.core.store.site_lease import LeaseHolder, lease_holder
from cartera.core.store.site_lock import running_here
from cartera.portfolio.export import ActivityExporter
from cartera.portfolio.identity import SiteIdentity
from cartera.portfolio.importer import AssignmentImporter
from cartera.portfolio.sync import CreditorSync
from cartera.recordings.access import RecordingLibrary
from cartera.recordings.archival import Archiver
from cartera.recordings.peer_stores import PeerStores
from cartera.runtime.context import NodeContext
from cartera.runtime.figures import SiteFigures
from cartera.runtime.health import CheckLine, Health
from cartera.runtime.held_reports import HeldReports
from cartera.runtime.jobs import SiteJobs
from cartera.runtime.lifecycle import Lifecycle
from cartera.runtime.page_reads import PageReads
from cartera.runtime.site_clock import make_clock
from cartera.runtime.store_status import StoreStatus
from cartera.users.directory import Role, UserDirectory
from cartera.users.sessions import LoginThrottler, SessionStore
from cartera.web.app import build_app
from cartera.web.server import WebServer
from cartera.web.services import WebServices
from cartera.workspace.hub import CallEnds, WorkspaceHub
from cartera.workspace.offers import PreviewOffers
from cartera.workspace.screen import ScreenBuilder
from cartera.workspace.service import WorkspaceService

log = logging.getLogger("cartera.node")
REPORTS_WAIT_S = 15.0  #: how long a stopping node waits for reports the store could not take yet

A = TypeVar("A", bound=Adapter[Any])


class Node:
    """Built by :meth:`open` (config validated, store migrated); adapters start on first use."""

    def __init__(self, site: SiteConfig, hooks: Hooks, catalog: AdapterCatalog, db: Database) -> None:
        self.site = site
        self.hooks = hooks
        self._catalog = catalog
        self.db = db
        self.clock = make_clock(site, db)
        self._adapters: dict[str, Adapter[Any]] = {}
        self._started: list[Adapter[Any]] = []
        self._lock = threading.Lock()
        self._sync: CreditorSync | None = None
        self._stop = threading.Event()
        self.reports = HeldReports()  #: the dialer's and gateway's reports, held while the store is out of reach
        self.users = UserDirectory(db)  #: the users of the site's pages
        self.audit = AuditLog(site.name, db, self.clock)  #: the site's audit log, an entry per call
        self.contact_prefs = ContactPrefs(site.name, db, self.clock)  #: the debtors' requested hours, line types
        self.identity = SiteIdentity(site.name, db)  #: the portfolio or account an operator's reference names
        self.figures = SiteFigures(site.name, db, self.clock, site.section.campaign.abandonment)  #: the store, counted
        self.lease_holder: Callable[[], LeaseHolder | None] = lambda: lease_holder(db, site.name)  #: on PostgreSQL
        self.gate = ComplianceGate.for_site(
            site.name,
            site.section.compliance,
            country=site.section.country,
            zone=site.zone,
            abandoned_rest_hours=site.section.campaign.abandoned_rest_hours,
        )
        targets = Targets(site.name, site.section.country, self.gate)
        dialer = self._provider("dialer", Dialer)
        self.texts = TextService(
            targets=targets,
            db=self.db,
            hooks=hooks,
            clock=self.clock,
            sms=self._provider("sms", SmsGateway),
            templates=SmsTemplates(site.section.sms_templates, site.section.sms_pricing),
        )
        self.workspace_service = WorkspaceService(
            targets=targets,
            db=self.db,
            hooks=hooks,
            clock=self.clock,
            config=site.section.workspace,
            campaign=site.section.campaign,
            texts=self.texts,
            zone=site.zone,
        )
        campaign = site.section.campaign

        def started_dialer() -> Dialer[Any] | None:
            return dialer() if dialer is not None else None

        self.pace = Pace(
            config=campaign,
            clock=self.clock,
            zone=site.zone,
            workspace=lambda: self.workspace.roster.everyone(),  # noqa: PLW0108 (the hub is built below)
            dialer=started_dialer,
            answered=self._answered_calls,
            latest=self._latest_calls,
        )
        self.calls = CallService(
            targets=targets,
            db=self.db,
            hooks=hooks,
            clock=self.clock,
            campaign=campaign,
            dialer=dialer,
            workspace=self.workspace_service,
            pace=self.pace,
        )
        self.explainer = GateExplainer(targets, self.db)
        self.workspace = WorkspaceHub(
            ScreenBuilder(
                site.name, self.db, self.clock, self.explainer, workspace=site.section.workspace, zone=site.zone
            ),
            now=_wall_clock,  # agents' timeouts are people's: wall-clock time
            dialer=started_dialer,
            dispose=self._dispose_left_call,
            wrap_up_limit=timedelta(seconds=site.section.workspace.wrap_up_seconds),
            gone_limit=timedelta(seconds=site.section.workspace.gone_seconds),
            audit=self.audit,
        )
        self.workspace.listen(self.pace.workspace_event)
        self.call_list = CallList(
            site=site.name,
            zone=site.zone,
            db=self.db,
            clock=self.clock,
            config=site.section.campaign.listing,
            release=timedelta(minutes=site.section.workspace.callback_release_minutes),
            ready_agents=lambda: ready_in(self.workspace.roster),
            targets_agents=lambda: dialer is not None and self.adapter("dialer", Dialer).capabilities.targets_agents,
        )
        self.offers = PreviewOffers(
            db=self.db,
            audit=self.audit,
            clock=self.clock,
            now=_wall_clock,  # an offer's hold is people's time
            hub=self.workspace,
            listing=self.call_list,
            calls=self.calls,
            campaign=site.section.campaign,
            hold=timedelta(seconds=site.section.workspace.offer_hold_seconds),
            skip_rest=timedelta(minutes=site.section.workspace.skip_rest_minutes),
        )
        self._call_ends = CallEnds(site.name, self.workspace)
        hooks.plugin_manager.register(self._call_ends)
        store = self._provider("recording", RecordingStore)
        self.archiver = (
            Archiver(
                site=site.name,
                zone=site.zone,
                db=self.db,
                store=store,
                hooks=hooks,
                clock=self.clock,
                config=site.section.archival,
            )
            if store
            else None
        )
        self._provider("crm_sync", CrmSync)
        self.importer = AssignmentImporter(
            site.name,
            site.section.country,
            self.db,
            self.clock,
            hooks,
            law_country=self.gate.law_country,
            max_rows=site.section.sync.max_delivery_rows,
            zone=site.zone,
        )
        self.peer_stores = PeerStores(site.source, site.database_url, catalog, self.clock, site.data_dir)
        self.library = RecordingLibrary(
            site.name,
            self.db,
            self.clock,
            lambda: self.adapter("recording", RecordingStore),
            peer_store=self.peer_stores.get,
        )
        #: the deliveries that failed the creditor sync's last run, for ``check`` and ``/healthz``
        self._sync_failures = site.data_dir / "creditor_sync.failed"
        self.health = Health(
            self.db,
            {kind: choice.name for kind, choice in site.plugins.items()},
            lambda kind: self.adapter(kind, Adapter),
            self.archiver,
            running=lambda: self.lifecycle.running,
            sync_failures=self._sync_failures if "crm_sync" in self._adapters else None,
            web=site.section.web,
            running_here=lambda: running_here(db, site.name),
        )
        self.jobs = SiteJobs(
            section=site.section,
            calls=self.calls,
            texts=self.texts,
            workspace=self.workspace,
            workspace_service=self.workspace_service,
            offers=self.offers,
            archiver=self.archiver,
            creditor_sync=self.creditor_sync if "crm_sync" in self._adapters else None,
            check=self.health.check,
            dials=dialer is not None,
            stopping=self._stop.is_set,
        )
        self.lifecycle = Lifecycle(
            site.name,
            self.db,
            self.jobs,
            self._stop,
            start_adapters=self._start_adapters,
            pause_agents=self._pause_signed_out,
            campaign=self._campaign,
            web_server=self._web_server,
            end_calls=self._end_calls,
            lease=site.section.node,
        )

    @classmethod
    def open(cls, config_path: Path, site_name: str, hooks: Hooks | None = None) -> Node:
        hooks = hooks or load_site_plugins(config_path, site_name)
        catalog = hooks.collect_adapters()
        site = load_site(config_path, site_name, catalog)
        db = Database(site.database_url)
        db.migrate()
        with db.session() as session:
            if session.scalar(select(Site).where(Site.name == site.name)) is None:
                session.add(Site(name=site.name, timezone=site.section.timezone, country=site.section.country))
        return cls(site, hooks, catalog, db)

    # --- adapters -------------------------------------------------------------------------------

    def _provider(self, kind: str, base: type[A]) -> Callable[[], A] | None:
        """Instantiate the site's adapter of ``kind`` and return a getter that starts it on first use;
        ``None`` when the site has no plugin of that kind."""
        choice = self.site.plugins.get(kind)
        if choice is None:
            return None
        adapter = self._catalog.by_kind()[kind].get(choice.name)(choice.settings, NodeContext(self, kind))
        if not isinstance(adapter, base):
            raise CarteraError(f"{kind} plugin {choice.name!r} is not a {base.__name__}")
        self._adapters[kind] = adapter

        def started() -> A:
            return self.adapter(kind, base)

        return started

    def adapter(self, kind: str, of: type[A]) -> A:
        """The site's adapter of ``kind`` (an ``of``), started on first use."""
        adapter = self._adapters.get(kind)
        if adapter is None:
            raise UsageError(f"site {self.site.name!r} has no {kind} plugin configured")
        if not isinstance(adapter, of):
            raise CarteraError(f"{kind} plugin {type(adapter).__name__} is not a {of.__name__}")
        with self._lock:
            if adapter not in self._started:
                adapter.start()
                self._started.append(adapter)
        return adapter

    def web_services(self) -> WebServices:
        """What the site's web app may use: the node's narrow services, never the node itself; sessions and sign-in
        throttling run on wall-clock time."""
        web, abandonment = self.site.section.web, self.site.section.campaign.abandonment
        return WebServices(
            site=self.site.name,
            zone=self.site.zone,
            country=self.site.section.country,
            data_dir=self.site.data_dir,
            config=web,
            clock=self.clock,
            users=self.users,
            sessions=SessionStore(self.db, web.session_minutes, web.session_max_hours, _wall_clock),
            throttle=LoginThrottler(self.db, _wall_clock),
            audit=self.audit,
            reads=PageReads(self.site.name, self.db, self.clock, self.site.zone, abandonment),
            store=StoreStatus(self.site.name, self.db, self.clock, abandonment),
            library=self.library,
            routers=self.http_routers,
            state=self.health,
            calls=self.calls,
            workspace=self.workspace,
            workspace_service=self.workspace_service,
            offers=self.offers,
        )

    def configured_kinds(self) -> list[str]:
        return list(self._adapters)

    def http_routers(self) -> list[tuple[str, APIRouter]]:
        """The routes of the site's adapters that serve HTTP, by kind; starts those adapters."""
        routers = [(kind, self.adapter(kind, Adapter).http_router()) for kind in self.configured_kinds()]
        return [(kind, router) for kind, router in routers if router is not None]

    def check(self) -> list[CheckLine]:
        return self.health.check()

    @property
    def scheduler_running(self) -> bool:
        return self.lifecycle.running

    def creditor_sync(self) -> CreditorSync:
        crm = self.adapter("crm_sync", CrmSync)
        if self._sync is None:
            exporter = ActivityExporter(self.site.name, self.db, crm)
            self._sync = CreditorSync(
                crm, self.importer, exporter, stop=self._stop.is_set, failures=self._sync_failures
            )
        return self._sync

    def _dispose_left_call(self, agent: str, attempt_id: int, code: str) -> None:
        """A call its agent left (page gone, wrap-up too long) is dispositioned ``code`` for the agent."""
        self.workspace_service.system_disposition(agent, attempt_id, code)

    def close(self) -> None:
        """Stop started adapters in reverse order, then release the store."""
        if self.hooks.plugin_manager.is_registered(self._call_ends):  # a node may be closed twice
            self.hooks.plugin_manager.unregister(self._call_ends)
        with self._lock:
            started, self._started = self._started[::-1], []
        for adapter in started:
            try:
                adapter.stop()
            except Exception:
                log.exception("stopping %s failed", type(adapter).__name__)
        self.reports.close(REPORTS_WAIT_S)
        self.peer_stores.close()
        self.db.dispose()

    # --- run ------------------------------------------------------------------------------------

    def run(self, duration: float | None = None, *, standby: bool = False) -> None:
        """Run the site's jobs until ``duration`` real seconds pass, SIGINT/SIGTERM arrives or :meth:`stop`;
        ``standby``: wait for the site's lease first (see :class:`~cartera.runtime.lifecycle.Lifecycle`)."""
        self.lifecycle.run(duration, standby=standby)

    def stop(self) -> None:
        """Ask :meth:`run` to drain and return."""
        self.lifecycle.stop()

    def _start_adapters(self) -> None:
        for kind in self.configured_kinds():
            self.adapter(kind, Adapter)

    def _pause_signed_out(self) -> None:
        """Every agent granted this site is paused at the dialer until its page says it is ready."""
        if "dialer" not in self._adapters:
            return
        agents = [
            (user.name, user.extension)
            for user in self.users.everyone()
            if user.role is Role.AGENT and user.extension and user.sees_site(self.site.name)
        ]
        self.workspace.roster.pause_signed_out(agents)

    def _web_server(self) -> WebServer | None:
        web = self.site.section.web
        if not web.enabled:
            return None
        return WebServer(
            build_app(self.web_services()),
            web.bind,
            web.port,
            head_timeout=web.head_timeout,
            body_timeout=web.body_timeout,
            max_connections=web.max_connections,
        )

    def _campaign(self) -> Campaign | None:
        if "dialer" not in self._adapters or not self.site.section.campaign.enabled:
            return None
        dialer = self.adapter("dialer", Dialer)
        return Campaign(
            site=self.site.name,
            zone=self.site.zone,
            db=self.db,
            calls=self.calls,
            texts=self.texts,
            dialer=dialer,
            clock=self.clock,
            config=self.site.section.campaign,
            listing=self.call_list,
            pace=self.pace,
        )

    def _answered_calls(self, now: datetime) -> list[tuple[datetime, bool]]:
        with self.db.reading() as session:
            return answered_calls(session, self.site.name, now, self.site.section.campaign.abandonment)

    def _latest_calls(self, before: datetime, count: int) -> list[tuple[datetime, CallOutcome]]:
        with self.db.reading() as session:
            return latest_calls(session, self.site.name, before, count)

    def _end_calls(self) -> None:
        """Once the run's scheduler stopped: the dialer's stop finishes the calls in progress."""
        dialer = self._adapters.get("dialer")
        if dialer in self._started:
            assert isinstance(dialer, Dialer)
            dialer.stop()
            self._started.remove(dialer)
        self.reports.wait_written(REPORTS_WAIT_S)  # the last calls' ends, before the drain exports them


def _wall_clock() -> datetime:
    return datetime.now(UTC)
