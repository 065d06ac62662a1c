"""The :class:`cartera.core.adapters.PluginContext` core hands one adapter: its site, clock and folder, and the
reports it makes, written to the node's services through its held reports (never lost to a store out of reach)."""

from __future__ import annotations

import logging
from typing import Protocol

from cartera.contact.calls import CallService
from cartera.contact.texts import TextService
from cartera.core.adapters import ContextBase
from cartera.core.clock import Clock
from cartera.core.config import SiteConfig
from cartera.core.logs import event
from cartera.core.models import Activity, AgentConnected, CallResult, DeliveryReport, InboundSms, Recording
from cartera.core.store.database import Database
from cartera.portfolio.export import exported_activities
from cartera.recordings.archival import Archiver
from cartera.runtime.held_reports import HeldReports
from cartera.workspace.hub import WorkspaceHub

log = logging.getLogger("cartera.node")


class ContextServices(Protocol):
    """What an adapter's reports reach: the node's services, read when a report arrives (an adapter is built
    before the services that take its reports)."""

    @property
    def site(self) -> SiteConfig: ...
    @property
    def clock(self) -> Clock: ...
    @property
    def db(self) -> Database: ...
    @property
    def reports(self) -> HeldReports: ...
    @property
    def calls(self) -> CallService: ...
    @property
    def texts(self) -> TextService: ...
    @property
    def workspace(self) -> WorkspaceHub: ...
    @property
    def archiver(self) -> Archiver | None: ...


class NodeContext(ContextBase):
    """The :class:`cartera.core.adapters.PluginContext` of the adapter of ``kind``."""

    def __init__(self, node: ContextServices, kind: str) -> None:
        super().__init__(
            node.site.name, node.clock, node.site.data_dir / kind, logging.getLogger(f"cartera.plugin.{kind}")
        )
        self._node = node

    # Reports are written through the node's HeldReports: held while the store is out of reach, never lost to it.

    def report_call(self, result: CallResult) -> None:
        self._node.reports.write(f"call {result.attempt_id}", lambda: self._node.calls.on_call_result(result))

    def report_recording(self, recording: Recording) -> None:
        archiver = self._node.archiver
        if archiver is None:
            event(log, "recording.no_store", logging.WARNING, path=str(recording.path))
            return
        self._node.reports.write(f"recording of call {recording.attempt_id}", lambda: archiver.catalog(recording))

    def report_agent_connected(self, connected: AgentConnected) -> None:
        def write() -> None:
            if self._node.calls.on_agent_connected(connected):
                self._node.workspace.agent_connected(connected)  # the screen pop, pushed to the agent's page

        self._node.reports.write(f"agent of call {connected.attempt_id}", write)

    def report_delivery(self, report: DeliveryReport) -> None:
        self._node.reports.write("sms receipt", lambda: self._node.texts.on_delivery(report))

    def report_inbound(self, message: InboundSms) -> None:
        self._node.reports.write("sms received", lambda: self._node.texts.on_inbound(message))

    @property
    def base_url(self) -> str:
        return self._node.site.section.web.base_url

    def exported_activities(self, creditor: str, after: int, limit: int) -> list[Activity]:
        return exported_activities(self._node.db, self._node.site.name, creditor, after, limit)
