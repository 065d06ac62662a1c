"""A node's run: the site's lock, its adapters started, its jobs on a scheduler until a duration passes, a signal
arrives or a stop is asked, then an orderly shutdown (campaign paused, jobs finished, calls ended, their work
saved)."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from contextlib import nullcontext

from apscheduler.schedulers.background import BackgroundScheduler

from cartera.contact.campaign import Campaign
from cartera.core.config import NodeConfig
from cartera.core.logs import event
from cartera.core.store.database import Database
from cartera.core.store.site_lock import hold_site
from cartera.runtime.jobs import SiteJobs, logged, new_scheduler
from cartera.runtime.signals import stop_on_signals, wait_for_stop
from cartera.web.server import WebServer

log = logging.getLogger("cartera.node")


class Lifecycle:
    """Runs one site's jobs. ``stop`` is the node's stop request, shared with the services that end early on it;
    ``pause_agents`` pauses at the dialer the agents no page made ready yet, once the adapters started;
    ``campaign`` and ``web_server`` build the run's (``None``: the site has none), ``end_calls`` stops the dialer
    once its calls ended; ``lease`` times the site's lease on PostgreSQL."""

    def __init__(
        self,
        site: str,
        db: Database,
        jobs: SiteJobs,
        stop: threading.Event,
        *,
        start_adapters: Callable[[], None],
        pause_agents: Callable[[], None],
        campaign: Callable[[], Campaign | None],
        web_server: Callable[[], WebServer | None],
        end_calls: Callable[[], None],
        lease: NodeConfig,
    ) -> None:
        self._site = site
        self._db = db
        self._jobs = jobs
        self._stop = stop
        self._start_adapters = start_adapters
        self._pause_agents = pause_agents
        self._campaign = campaign
        self._web_server = web_server
        self._end_calls = end_calls
        self._lease = lease
        self.scheduler: BackgroundScheduler | None = None  #: the run's, once it started

    @property
    def running(self) -> bool:
        return self.scheduler is not None and self.scheduler.running

    def run(self, duration: float | None = None, *, standby: bool = False) -> None:
        """Run the site's jobs until ``duration`` real seconds pass, SIGINT/SIGTERM arrives or :meth:`stop`.
        The site's lock comes first: a second node of the site raises ``SiteAlreadyRunning`` and changes nothing;
        with ``standby`` (PostgreSQL) it waits for the site's lease instead, then takes the site over. A node whose
        lease another node took stops, and raises ``LeaseLost``."""
        with (
            stop_on_signals(self._stop),
            hold_site(
                self._db,
                self._site,
                standby=standby,
                stop=self._stop,
                on_lost=self.stop,
                lease_seconds=self._lease.lease_seconds,
                renew_seconds=self._lease.renew_seconds,
            ) as held,
        ):
            if held:
                self._run(duration)

    def stop(self) -> None:
        """Ask :meth:`run` to drain and return."""
        self._stop.set()

    def _run(self, duration: float | None) -> None:
        self._start_adapters()
        self._pause_agents()  # before any page can open and before the campaign's first tick
        logged("reconcile_calls", self._jobs.calls.reconcile_calls)()  # calls a killed run left in flight
        logged("reconcile_texts", self._jobs.texts.reconcile_texts)()  # texts a killed sender left queued
        web = self._web_server()
        campaign = self._campaign()
        scheduler = self.scheduler = new_scheduler(self._jobs.scheduled(campaign))
        with web or nullcontext():
            scheduler.start()
            event(log, "node.started", site=self._site, jobs=",".join(j.id for j in scheduler.get_jobs()))
            wait_for_stop(self._stop, duration)
            event(log, "node.stopping", site=self._site)
            if campaign:
                campaign.pause()
            scheduler.shutdown(wait=True)
            self._end_calls()
            self._jobs.drain()
        event(log, "node.stopped", site=self._site)
