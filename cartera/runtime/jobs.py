"""The node's scheduled jobs: which of them the site runs and how often, on one scheduler; a failing run is logged
and the next one retries."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from contextlib import suppress
from dataclasses import dataclass
from datetime import UTC, datetime

from apscheduler.executors.pool import ThreadPoolExecutor as SchedulerPool
from apscheduler.jobstores.base import JobLookupError
from apscheduler.schedulers import SchedulerNotRunningError
from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.schedulers.base import STATE_RUNNING, BaseScheduler

from cartera.contact.calls import CallService
from cartera.contact.campaign import Campaign
from cartera.contact.texts import TextService
from cartera.core.config import SiteSection
from cartera.core.errors import CarteraError
from cartera.core.logs import event
from cartera.portfolio.sync import CreditorSync
from cartera.recordings.archival import Archiver
from cartera.workspace.hub import WorkspaceHub
from cartera.workspace.offers import PreviewOffers
from cartera.workspace.service import WorkspaceService

log = logging.getLogger("cartera.node")
WORKSPACE_SWEEP_S = 5.0  #: how often calls their agents left are looked for (page gone, wrap-up too long)
#: how often promises are settled from the payments reported, and calls no agent's page watches dispositioned
WORKSPACE_REVIEW_S = 60.0


@dataclass(frozen=True)
class Job:
    """One scheduled job: its id (the one its logs name), what it runs, and every how many seconds."""

    id: str
    run: Callable[[], object]
    every: float


class Wakeable:
    """A job that :meth:`wake` runs at once on its scheduler, which stays its one runner: never two runs at once,
    and a wake during a run has the next one follow it, in the same thread. A run never calls back into the
    scheduler: its shutdown holds the job stores' lock while it waits for the running jobs, so a job asking it to
    reschedule itself would wait for that lock forever (a node stopping mid-tick hung)."""

    def __init__(self, job_id: str, run: Callable[[], object]) -> None:
        self.id, self._run = job_id, run
        self.scheduler: BaseScheduler | None = None  #: set by :func:`new_scheduler`
        self._lock = threading.Lock()
        self._running = self._again = False

    def __call__(self) -> None:
        again = True
        while again:
            with self._lock:
                self._running, self._again = True, False
            try:
                self._run()
            finally:
                with self._lock:
                    self._running, again = False, self._again
            again = again and self._scheduler_running()

    def wake(self) -> None:
        """Run the job now, or once the run in progress ended."""
        with self._lock:
            if self._running:
                self._again = True
                return
        if self.scheduler is not None and self._scheduler_running():
            with suppress(JobLookupError, SchedulerNotRunningError):  # the run is over
                self.scheduler.modify_job(self.id, next_run_time=datetime.now(UTC))

    def _scheduler_running(self) -> bool:
        return self.scheduler is not None and self.scheduler.state == STATE_RUNNING


@dataclass(frozen=True)
class SiteJobs:
    """The site's jobs over its services. ``creditor_sync`` is ``None`` when the site has no crm_sync plugin,
    ``dials`` whether it has a dialer, ``stopping`` whether its node was asked to stop."""

    section: SiteSection
    calls: CallService
    texts: TextService
    workspace: WorkspaceHub
    workspace_service: WorkspaceService
    offers: PreviewOffers
    archiver: Archiver | None
    creditor_sync: Callable[[], CreditorSync] | None
    check: Callable[[], object]
    dials: bool
    stopping: Callable[[], bool]

    def scheduled(self, campaign: Campaign | None) -> list[Job]:
        """The jobs a run schedules; ``campaign`` is the run's, if the site calls."""
        section = self.section
        jobs: list[Job] = []
        if self.creditor_sync is not None:
            jobs.append(Job("creditor_sync", self.sync, section.sync.every_seconds))
        if campaign:  # every tick_seconds, and at once on a pacing event (a call ended, an agent ready)
            tick = Wakeable("campaign_tick", campaign.tick)
            campaign.pace.wake = tick.wake
            jobs.append(Job(tick.id, tick, section.campaign.tick_seconds))
        if self.archiver:
            jobs.append(Job("archive_recordings", self.archiver.run_once, section.archival.every_seconds))
        if section.web.enabled:
            jobs.append(Job("vendor_checks", self.check, section.web.check_seconds))
            jobs.append(Job("workspace_timeouts", self.workspace.sweep, WORKSPACE_SWEEP_S))
            if section.campaign.mode == "preview":
                jobs.append(Job("preview_offers", self.offers.sweep, WORKSPACE_SWEEP_S))
        jobs.append(Job("promises_and_orphan_calls", self.workspace_service.sweep, WORKSPACE_REVIEW_S))
        if self.texts.sms is not None:  # those an sms command killed beside the node left, or one live at the start
            jobs.append(Job("texts_left_in_flight", self.texts.reconcile_texts, WORKSPACE_REVIEW_S))
        return jobs

    def sync(self) -> None:
        """The creditor sync; when it withdrew accounts or recorded payments, their calls still ringing are
        cancelled at once rather than at the next campaign tick. None starts once the node is stopping (the
        scheduler may still fire it): each failing creditor's webhook would hold the stop for its deadline."""
        if self.creditor_sync is None or self.stopping():
            return
        run = self.creditor_sync().run_once()
        if self.dials and any(report.withdrawn or report.payments for report in run.imports):
            self.calls.cancel_closed_calls(actor="sync")

    def drain(self) -> None:
        """After the scheduler stopped and the last calls ended: archive and export what they produced."""
        if self.archiver:
            logged("archive_recordings", self.archiver.run_once)()
        if self.creditor_sync is not None:
            # the last calls' activities; a failed delivery ends it (the next start sends the rest), so the stop
            # waits for one failing creditor's webhook, not for each in turn
            exporter = self.creditor_sync().exporter
            logged("creditor_sync", lambda: exporter.run_once(stop_at_failure=True))()


def new_scheduler(jobs: Sequence[Job]) -> BackgroundScheduler:
    """A scheduler of ``jobs``, each first due now, never two runs of one job at once, missed runs coalesced."""
    scheduler = BackgroundScheduler(
        timezone=UTC,
        executors={"default": SchedulerPool(4)},
        job_defaults={"coalesce": True, "max_instances": 1, "misfire_grace_time": 30},
    )
    for job in jobs:
        if isinstance(job.run, Wakeable):
            job.run.scheduler = scheduler
        scheduler.add_job(
            logged(job.id, job.run),
            "interval",
            seconds=job.every,
            id=job.id,
            next_run_time=datetime.now(UTC),
            coalesce=True,
            max_instances=1,
            misfire_grace_time=max(1, int(job.every * 2)),
        )
    return scheduler


def logged(job_id: str, func: Callable[[], object]) -> Callable[[], None]:
    """``func`` as a job: a failure is logged (a :class:`CarteraError` by its message), never raised."""

    def run() -> None:
        try:
            func()
        except CarteraError as exc:  # a vendor or input failure its message explains; the next run retries
            event(log, "job.failed", level=logging.WARNING, job=job_id, reason=str(exc))
        except Exception:
            log.exception("job %s failed", job_id)

    run.__name__ = job_id
    return run
