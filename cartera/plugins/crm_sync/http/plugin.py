"""The ``http`` crm_sync adapter: creditors push batches to the node's API, pull or receive activities."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, ClassVar

import httpx
from fastapi import APIRouter

from cartera.plugin import (
    PLUGIN_PREFIX,
    Activity,
    AdapterRegistry,
    AssignmentBatch,
    CheckResult,
    CrmSync,
    CrmSyncCapabilities,
    DeliveryScope,
    PluginConfig,
    PluginContext,
    RowError,
    event,
    hookimpl,
)
from cartera.plugins.crm_sync.http.api import API_VERSION, api_router
from cartera.plugins.crm_sync.http.batches import BatchSpool
from cartera.plugins.crm_sync.http.client import Webhook, export_body
from cartera.plugins.crm_sync.http.config import HttpApiConfig

PROBE_TIMEOUT_S = 5.0
#: Webhooks ``check`` probes at once.
PROBE_WORKERS = 16


class HttpCrmSync(CrmSync[HttpApiConfig]):
    """Batches pushed to the API wait in the data directory until core imported them; creditors pull the
    exported activities from core's store (the context's ``exported_activities``), and each export is POSTed to
    a creditor's webhook when one is configured."""

    name: ClassVar[str] = "http"
    config_model: ClassVar[type[PluginConfig]] = HttpApiConfig
    capabilities: ClassVar[CrmSyncCapabilities] = CrmSyncCapabilities(
        serves_http=True, rejection_reports=True, restricts_deliveries=True
    )

    def __init__(self, config: HttpApiConfig, context: PluginContext) -> None:
        super().__init__(config, context)
        self.spool = BatchSpool(
            context.data_dir / "batches", config.currency, keep_seconds=config.keep_batches_days * 86400
        )
        self._webhooks = {
            code: Webhook(
                str(access.webhook_url),
                access.webhook_token.get_secret_value() if access.webhook_token else None,
                attempts=config.webhook_attempts,
                timeout_s=config.webhook_timeout_s,
                backoff_s=config.webhook_backoff_s,
                deadline_s=config.webhook_deadline_s,
            )
            for code, access in config.creditors.items()
            if access.webhook_url is not None
        }

    @property
    def api_url(self) -> str:
        return f"{self.context.base_url}{PLUGIN_PREFIX}/crm_sync/{API_VERSION}"

    def start(self) -> None:
        self.spool.root.mkdir(parents=True, exist_ok=True)

    def http_router(self) -> APIRouter:
        return api_router(
            self.config.creditors,
            self.spool,
            self.context.exported_activities,
            self.context.log,
            max_body_bytes=self.config.max_body_bytes,
        )

    def check(self) -> CheckResult:
        """The API's health and each webhook's reachability. The webhooks are probed at once (up to
        :data:`PROBE_WORKERS`), each for :data:`PROBE_TIMEOUT_S` at most: probed in turn, each unreachable one
        added its timeout to the node's vendor checks, a job a stopping node waits for."""
        problems = [problem for problem in self._probe_webhooks() if problem]
        health = f"{self.api_url}/health"
        try:
            response = httpx.get(health, timeout=PROBE_TIMEOUT_S)
        except httpx.HTTPError:
            served = f"API {self.api_url} not listening now (the node serves it while it runs)"
        else:
            served = f"API {self.api_url} answering"
            if response.status_code != 200:
                problems.append(
                    f"{health} answers HTTP {response.status_code}: is the node's [web] port another server's?"
                )
        if problems:
            return CheckResult(False, "; ".join(problems))
        pending = len(self.spool.pending())
        hooks = f", {len(self._webhooks)} webhook(s) answering" if self._webhooks else ""
        return CheckResult(True, f"{served}; {pending} batch(es) waiting for import{hooks}")

    def _probe_webhooks(self) -> list[str | None]:
        hooks = list(self._webhooks.values())
        if not hooks:
            return []
        with ThreadPoolExecutor(min(len(hooks), PROBE_WORKERS), thread_name_prefix="webhook-probe") as pool:
            return list(pool.map(lambda hook: hook.probe(PROBE_TIMEOUT_S), hooks))

    def delivers(self) -> DeliveryScope:
        """The configured creditors, each to its ``portfolios`` (any of its portfolios when none are listed):
        what the API lets each token push, so a batch imported by hand (``import FILE``) is held to it too."""
        return DeliveryScope({code: frozenset(access.portfolios) for code, access in self.config.creditors.items()})

    def read_file(self, path: Path) -> AssignmentBatch:
        """A batch as a JSON file, in the API's format (``POST /batches`` body)."""
        return self.spool.read(path)

    def fetch(self) -> Iterator[AssignmentBatch]:
        """The pending batches, once the batches set aside longer than ``keep_batches_days`` are removed."""
        if removed := self.spool.purge():
            event(self.context.log, "crm_sync.http.batches_removed", count=removed)
        for path in self.spool.pending():
            yield self.read_file(path)

    def acknowledge(self, batch: AssignmentBatch) -> None:
        if self.spool.mark_imported(Path(batch.source)):
            event(self.context.log, "crm_sync.http.batch_imported", file=batch.source)
            if self.config.keep_batches_days == 0:
                self.spool.purge()

    def reject(self, batch: AssignmentBatch) -> None:
        """Move the stored batch to ``rejected``: ``GET /batches/{id}`` answers status rejected from now on.

        The API refuses a body that is not a batch (422) and never stores it; a stored batch is rejected whole
        only when its file cannot be read back (damaged, or refused by a newer version's checks)."""
        if self.spool.mark_rejected(Path(batch.source)):
            event(self.context.log, "crm_sync.http.batch_rejected", file=batch.source)

    def report_rejections(self, batch: AssignmentBatch, errors: Sequence[RowError]) -> None:
        """Keep core's rejection report: ``GET /batches/{id}`` answers it from now on."""
        self.spool.record_rejections(Path(batch.source), errors)

    def export(self, activities: Sequence[Activity]) -> None:
        """Push each creditor's activities to its webhook; creditors pull them from core's store."""
        by_creditor: dict[str, list[Activity]] = defaultdict(list)
        for activity in activities:
            by_creditor[activity.creditor].append(activity)
        for creditor, own in by_creditor.items():
            webhook = self._webhooks.get(creditor)
            if webhook is not None:
                webhook.deliver(export_body(creditor, own), f"{creditor}-{own[0].seq}-{own[-1].seq}")
                event(self.context.log, "crm_sync.http.webhook_delivered", creditor=creditor, count=len(own))


@hookimpl
def cartera_register_crm_syncs(register: AdapterRegistry[Any]) -> None:
    register.add(HttpCrmSync)
