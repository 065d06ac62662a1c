"""The creditor sync job: import new deliveries, then export activities."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

from core.activities import ActivityExporter
from core.adapters import CrmSync
from core.assignments import AssignmentImporter, ImportReport
from core.logs import event
from core.models import FileRejected

log = logging.getLogger("cartera.sync")


@dataclass
class SyncRun:
    imports: list[ImportReport] = field(default_factory=list)
    rejected: list[str] = field(default_factory=list)
    exported: int = 0


class CreditorSync:
    def __init__(self, crm: CrmSync[Any], importer: AssignmentImporter, exporter: ActivityExporter) -> None:
        self.crm, self.importer, self.exporter = crm, importer, exporter

    def run_once(self) -> SyncRun:
        run = SyncRun()
        for batch in self.crm.fetch():
            try:
                report = self.importer.import_batch(batch, actor="sync")
            except FileRejected as exc:
                run.rejected.append(str(exc))
                event(log, "sync.file_rejected", logging.ERROR, source=exc.source, reason=exc.reason)
                continue
            self.crm.acknowledge(batch)
            run.imports.append(report)
        run.exported = self.exporter.run_once()
        return run
