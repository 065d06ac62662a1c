"""Other sites' recording stores, read by a node that shows the company's recordings: a site defined in this
node's sites file, on the same store and with a configuration that loads here, has its recording store built
(started on first use) to fetch that site's recordings; any other site's store is unknown to this node."""

from __future__ import annotations

import logging
import threading
from pathlib import Path
from typing import Any

from cartera.core.adapters import ContextBase, RecordingStore
from cartera.core.clock import Clock
from cartera.core.config import load_site
from cartera.core.errors import CarteraError, UsageError
from cartera.core.logs import event
from cartera.core.models import Activity, AgentConnected, CallResult, DeliveryReport, InboundSms, Recording
from cartera.core.registry import AdapterCatalog

log = logging.getLogger("cartera.recordings.peers")
_READ_ONLY = "another site's recording store is only read by this node: it reports nothing"


class PeerStores:
    """The recording stores of the sites of ``config`` other than this node's, for reading their recordings."""

    def __init__(self, config: Path, database_url: str, catalog: AdapterCatalog, clock: Clock, data_dir: Path) -> None:
        self.config, self.database_url, self.catalog = config, database_url, catalog
        self.clock, self.data_dir = clock, data_dir
        self._stores: dict[str, RecordingStore[Any] | None] = {}
        self._lock = threading.Lock()

    def get(self, site: str) -> RecordingStore[Any] | None:
        """``site``'s recording store, started; ``None`` (logged once) when this node does not know it."""
        with self._lock:
            if site not in self._stores:
                self._stores[site] = self._open(site)
            return self._stores[site]

    def _open(self, site: str) -> RecordingStore[Any] | None:
        try:
            peer = load_site(self.config, site, self.catalog)
        except CarteraError as exc:
            event(log, "recordings.peer_store_unknown", logging.WARNING, site=site, reason=str(exc))
            return None
        choice = peer.plugins.get("recording")
        if peer.database_url != self.database_url or choice is None:
            reason = "on another store" if choice is not None else "no recording store configured"
            event(log, "recordings.peer_store_unknown", logging.WARNING, site=site, reason=reason)
            return None
        context = PeerContext(site, self.clock, self.data_dir / "peers" / site / "recording")
        store = self.catalog.by_kind()["recording"].get(choice.name)(choice.settings, context)
        if not isinstance(store, RecordingStore):
            raise CarteraError(f"recording plugin {choice.name!r} of site {site!r} is not a RecordingStore")
        store.start()
        return store

    def close(self) -> None:
        with self._lock:
            started, self._stores = [store for store in self._stores.values() if store is not None], {}
        for store in started:
            try:
                store.stop()
            except Exception:
                log.exception("stopping %s failed", type(store).__name__)


class PeerContext(ContextBase):
    """The :class:`cartera.core.adapters.PluginContext` of another site's recording store: read from only."""

    def __init__(self, site: str, clock: Clock, data_dir: Path) -> None:
        super().__init__(site, clock, data_dir, logging.getLogger("cartera.plugin.recording.peer"))

    def report_call(self, result: CallResult) -> None:
        raise UsageError(_READ_ONLY)

    def report_recording(self, recording: Recording) -> None:
        raise UsageError(_READ_ONLY)

    def report_agent_connected(self, event: AgentConnected) -> None:
        raise UsageError(_READ_ONLY)

    def report_delivery(self, report: DeliveryReport) -> None:
        raise UsageError(_READ_ONLY)

    def report_inbound(self, message: InboundSms) -> None:
        raise UsageError(_READ_ONLY)

    @property
    def base_url(self) -> str:
        raise UsageError(_READ_ONLY)

    def exported_activities(self, creditor: str, after: int, limit: int) -> list[Activity]:
        raise UsageError(_READ_ONLY)
