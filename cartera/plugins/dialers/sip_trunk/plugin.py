"""Registers the SIP trunk dialer as ``sip_trunk``."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

from cartera.plugin import (
    AdapterRegistry,
    CallRequest,
    CheckResult,
    Dialer,
    DialerCapabilities,
    PluginConfig,
    PluginContext,
    UnfinishedCall,
    hookimpl,
)
from cartera.plugins.dialers.sip_trunk.config import SipTrunkConfig
from cartera.plugins.dialers.sip_trunk.pool import SipTrunkPool

#: The raw cause of a call a killed node left in flight.
WORKERS_GONE = "SIP workers hung up when the node died: end unknown"


class SipTrunkDialer(Dialer[SipTrunkConfig]):
    """Places calls straight on a SIP trunk (pjsua2) and REFERs the answered ones to the agents' queue URI."""

    name: ClassVar[str] = "sip_trunk"
    config_model: ClassVar[type[PluginConfig]] = SipTrunkConfig
    #: Records nothing and names no agent: it REFERs an answered call to the queue, whose PBX does both.
    capabilities: ClassVar[DialerCapabilities] = DialerCapabilities(cancels=True, reconciles=True)

    def __init__(self, config: SipTrunkConfig, context: PluginContext) -> None:
        super().__init__(config, context)
        self._trunk = SipTrunkPool(config, context)

    def start(self) -> None:
        self._trunk.start()

    def check(self) -> CheckResult:
        return self._trunk.check()

    def capacity(self) -> int:
        return self._trunk.capacity()

    def place_call(self, request: CallRequest) -> None:
        self._trunk.place_call(request)

    def cancel(self, attempt_id: int) -> bool:
        return self._trunk.cancel(attempt_id)

    def reconcile(self, calls: Sequence[UnfinishedCall]) -> None:
        """A killed node's SIP workers hung their calls up when they found it gone (their pipe closed), and told
        nobody how each had gone: every call's end is unknown."""
        for call in calls:
            self.context.report_call(call.unknown(WORKERS_GONE))

    def stop(self) -> None:
        self._trunk.stop()

    @property
    def worker_exit_codes(self) -> list[int | None]:
        """Exit codes of the SIP worker processes, once stopped (0 each when pjsua shut down cleanly)."""
        return self._trunk.exit_codes


@hookimpl
def cartera_register_dialers(register: AdapterRegistry[Dialer[Any]]) -> None:
    register.add(SipTrunkDialer)
