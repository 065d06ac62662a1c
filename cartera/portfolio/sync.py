"""The creditor sync job: import new deliveries (answering bad rows with a rejection report), set rejected ones
aside, then export."""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from cartera.core.adapters import CrmSync
from cartera.core.durable import write_atomically
from cartera.core.logs import event
from cartera.core.models import AssignmentBatch, FileRejected, RowError
from cartera.core.redaction import redact
from cartera.portfolio.export import ActivityExporter
from cartera.portfolio.importer import AssignmentImporter, ImportReport

log = logging.getLogger("cartera.sync")
_LINE = re.compile(r"line (\d+): (.*)", re.DOTALL)


@dataclass
class SyncRun:
    imports: list[ImportReport] = field(default_factory=list)
    rejected: list[str] = field(default_factory=list)
    #: deliveries an unexpected error stopped (``source: error``): left where they are for the next run
    failed: list[str] = field(default_factory=list)
    exported: int = 0


class CreditorSync:
    """``stop``: true once the node is stopping; a run then starts no further delivery, nor the export."""

    def __init__(
        self,
        crm: CrmSync[Any],
        importer: AssignmentImporter,
        exporter: ActivityExporter,
        stop: Callable[[], bool] = lambda: False,
        failures: Path | None = None,
    ) -> None:
        self.crm, self.importer, self.exporter, self.stop = crm, importer, exporter, stop
        #: where the deliveries that failed the last run are listed (see :func:`last_failures`); absent: none did
        self.failures = failures

    def run_once(self) -> SyncRun:
        """Import each waiting delivery, send its rejection report, acknowledge it; then export activities.

        A delivery is acknowledged (archived) only after it was committed and its report was sent; a delivery
        an unexpected error stops is logged (``sync.delivery_failed``), listed in ``failed`` and left for the next
        run, while the others and the export go on; the adapter's fetch failing (``sync.fetch_failed``) is listed
        in ``failed`` too, and the export goes on; a delivery
        seen again after a crash is recognised by its content and only its report is sent again. A delivery
        rejected whole gets a report of one row, field ``file``, with the reason; once the report was sent it
        is set aside (``CrmSync.reject``: a ``rejected/`` folder...) and not fetched again. If sending the
        report fails, nothing is set aside and the next sync tries both again. Once ``stop()`` is true the run
        fetches no further delivery and does not export; the next run takes what is left.
        """
        run = SyncRun()
        try:
            self._take_all(run)
        except Exception as exc:  # the adapter's fetch itself (the creditor's view, say): the export still runs
            reason = f"{type(exc).__name__}: {exc}"
            run.failed.append(f"fetch: {reason}")
            event(log, "sync.fetch_failed", logging.ERROR, reason=reason)
        self._record(run.failed)
        if self.stop():
            event(log, "sync.stopped", reason="node stopping")
            return run
        run.exported = self.exporter.run_once(self.stop)
        return run

    def import_file(self, path: Path, actor: str) -> ImportReport:
        """A creditor's file given by hand (``import``), read as the adapter reads its deliveries and held to
        what it may deliver; :class:`FileRejected` loads nothing."""
        return self.importer.import_batch(self.crm.read_file(path), actor=actor, scope=self.crm.delivers())

    def _record(self, failed: list[str]) -> None:
        if self.failures is None:
            return
        if not failed:
            self.failures.unlink(missing_ok=True)
            return
        self.failures.parent.mkdir(parents=True, exist_ok=True)
        text = "".join(f"{redact(line)}\n" for line in failed).encode(errors="backslashreplace")

        def write(sink: IO[bytes]) -> None:
            sink.write(text)

        write_atomically(self.failures, write)

    def _take_all(self, run: SyncRun) -> None:
        for batch in self.crm.fetch():
            try:
                self._take(batch, run)
            except Exception as exc:  # one delivery's fault never holds up the others, nor the export
                reason = f"{type(exc).__name__}: {exc}"
                run.failed.append(f"{batch.source}: {reason}")
                event(log, "sync.delivery_failed", logging.ERROR, source=batch.source, reason=reason)
            if self.stop():  # before the next delivery is even fetched
                break

    def _take(self, batch: AssignmentBatch, run: SyncRun) -> None:
        try:
            report = self.importer.import_batch(batch, actor="sync", scope=self.crm.delivers())
        except FileRejected as exc:
            run.rejected.append(str(exc))
            event(log, "sync.file_rejected", logging.ERROR, source=exc.source, reason=exc.reason)
            if self.crm.capabilities.rejection_reports:
                self.crm.report_rejections(batch, [_file_error(exc.reason)])
            self.crm.reject(batch)
            return
        if report.quarantined and self.crm.capabilities.rejection_reports:
            self.crm.report_rejections(batch, report.quarantined)
        self.crm.acknowledge(batch)
        run.imports.append(report)


def last_failures(failures: Path) -> list[str]:
    """The deliveries that failed the creditor sync's last run, as :attr:`SyncRun.failed` listed them."""
    try:
        return failures.read_text(encoding="utf-8", errors="replace").splitlines()
    except FileNotFoundError:
        return []


def _file_error(reason: str) -> RowError:
    """A whole-file rejection as a report row: its line when the reason names one (``line 3: ...``)."""
    found = _LINE.match(reason)
    return RowError(int(found[1]), "file", found[2]) if found else RowError(0, "file", reason)
