"""Counting a node's scheduled job runs: the tests that a flood of web work starves no job count runs while the
flood is held, not wall-clock time, so a busy machine only makes them wait longer."""

from __future__ import annotations

import threading

from apscheduler.events import EVENT_JOB_EXECUTED, JobExecutionEvent
from apscheduler.schedulers.base import BaseScheduler

WATCHED = ("archive_recordings", "campaign_tick")


class JobRuns:
    """The runs of the scheduler's ``watched`` jobs (those it has) from :meth:`listen` on."""

    def __init__(self, scheduler: BaseScheduler, watched: tuple[str, ...] = WATCHED) -> None:
        self.scheduler = scheduler
        self.jobs = [job.id for job in scheduler.get_jobs() if job.id in watched]
        self.runs: dict[str, int] = {}
        self._ran = threading.Condition()

    def listen(self) -> None:
        self.scheduler.add_listener(self._count, EVENT_JOB_EXECUTED)

    def each_ran(self, times: int, timeout: float) -> bool:
        """Whether each watched job ran ``times`` times since :meth:`listen`, waiting at most ``timeout``."""
        with self._ran:
            return self._ran.wait_for(lambda: all(self.runs.get(job, 0) >= times for job in self.jobs), timeout)

    def _count(self, executed: JobExecutionEvent) -> None:
        with self._ran:
            self.runs[executed.job_id] = self.runs.get(executed.job_id, 0) + 1
            self._ran.notify_all()
