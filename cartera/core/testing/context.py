"""A :class:`cartera.core.adapters.PluginContext` that records what an adapter reports, for tests."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from operator import attrgetter
from pathlib import Path
from typing import TypeVar

from cartera.core.adapters import ContextBase
from cartera.core.clock import Clock, SystemClock
from cartera.core.models import Activity, AgentConnected, CallResult, DeliveryReport, InboundSms, Recording

#: Anything an adapter reports.
Report = CallResult | Recording | DeliveryReport | InboundSms | AgentConnected
T = TypeVar("T", bound=Report)


class CapturingContext(ContextBase):
    """Collects reports, each kind in its list and all of them in ``reports`` in the order they arrived;
    ``wait_for_*`` block until enough arrived or fail the test on timeout. ``exported`` stands for what core's
    store holds as exported: a test puts activities there for :meth:`exported_activities` to answer."""

    def __init__(
        self,
        data_dir: Path,
        *,
        site: str = "test",
        clock: Clock | None = None,
        base_url: str = "http://127.0.0.1:8080",
    ) -> None:
        super().__init__(site, clock or SystemClock(), data_dir, logging.getLogger(f"cartera.test.{site}"))
        self._changed = threading.Condition()
        self.calls: list[CallResult] = []
        self.recordings: list[Recording] = []
        self.deliveries: list[DeliveryReport] = []
        self.inbound: list[InboundSms] = []
        self.agent_connections: list[AgentConnected] = []
        self.reports: list[Report] = []
        self.exported: list[Activity] = []
        self._base_url = base_url

    @property
    def base_url(self) -> str:
        return self._base_url

    def exported_activities(self, creditor: str, after: int, limit: int) -> list[Activity]:
        own = sorted((a for a in self.exported if a.creditor == creditor and a.seq > after), key=attrgetter("seq"))
        return own[:limit]

    def report_call(self, result: CallResult) -> None:
        self._append(self.calls, result)

    def report_recording(self, recording: Recording) -> None:
        self._append(self.recordings, recording)

    def report_delivery(self, report: DeliveryReport) -> None:
        self._append(self.deliveries, report)

    def report_inbound(self, message: InboundSms) -> None:
        self._append(self.inbound, message)

    def report_agent_connected(self, event: AgentConnected) -> None:
        self._append(self.agent_connections, event)

    def wait_for_calls(self, count: int, timeout: float = 10.0) -> list[CallResult]:
        return self._wait(self.calls, count, timeout, "call results")

    def wait_for_recordings(self, count: int, timeout: float = 10.0) -> list[Recording]:
        return self._wait(self.recordings, count, timeout, "recordings")

    def wait_for_deliveries(self, count: int, timeout: float = 10.0) -> list[DeliveryReport]:
        return self._wait(self.deliveries, count, timeout, "delivery reports")

    def wait_for_inbound(self, count: int, timeout: float = 10.0) -> list[InboundSms]:
        return self._wait(self.inbound, count, timeout, "inbound messages")

    def wait_for_agent_connections(self, count: int, timeout: float = 10.0) -> list[AgentConnected]:
        return self._wait(self.agent_connections, count, timeout, "agent connections")

    def wait_until(self, predicate: Callable[[], bool], timeout: float, what: str) -> None:
        with self._changed:
            if not self._changed.wait_for(predicate, timeout):
                raise AssertionError(f"timed out after {timeout}s waiting for {what}")

    def _append(self, items: list[T], item: T) -> None:
        with self._changed:
            items.append(item)
            self.reports.append(item)
            self._changed.notify_all()

    def _wait(self, items: list[T], count: int, timeout: float, what: str) -> list[T]:
        self.wait_until(lambda: len(items) >= count, timeout, f"{count} {what} (got {len(items)})")
        with self._changed:
            return list(items)
