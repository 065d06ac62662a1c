"""Registers the Asterisk AMI dialer as ``asterisk_ami``."""

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
from cartera.plugins.dialers.asterisk_ami.config import AsteriskAmiConfig
from cartera.plugins.dialers.asterisk_ami.switch import AsteriskSwitch


class AsteriskAmiDialer(Dialer[AsteriskAmiConfig]):
    """Places calls through Asterisk's manager interface: Originate into a recording, queueing context."""

    name: ClassVar[str] = "asterisk_ami"
    config_model: ClassVar[type[PluginConfig]] = AsteriskAmiConfig
    capabilities: ClassVar[DialerCapabilities] = DialerCapabilities(
        records_calls=True,
        reports_agents=True,
        reports_agent_connections=True,
        cancels=True,
        reconciles=True,
        pauses_agents=True,
        targets_agents=True,
        abandons_calls=True,
    )

    def __init__(self, config: AsteriskAmiConfig, context: PluginContext) -> None:
        super().__init__(config, context)
        self._switch = AsteriskSwitch(config, context)

    def start(self) -> None:
        self._switch.start()

    def check(self) -> CheckResult:
        return self._switch.check()

    def capacity(self) -> int:
        return self._switch.capacity()

    def place_call(self, request: CallRequest) -> None:
        self._switch.place_call(request)

    def cancel(self, attempt_id: int) -> bool:
        return self._switch.cancel(attempt_id)

    def pause_agent(self, agent: str, reason: str) -> None:
        """``agent`` is a member's interface in the queue (``PJSIP/ana``); ``reason`` is QueuePause's."""
        self._switch.set_paused(agent, True, reason)

    def resume_agent(self, agent: str) -> None:
        self._switch.set_paused(agent, False)

    def reconcile(self, calls: Sequence[UnfinishedCall]) -> None:
        self._switch.reconcile(calls)

    def stop(self) -> None:
        self._switch.stop()


@hookimpl
def cartera_register_dialers(register: AdapterRegistry[Dialer[Any]]) -> None:
    register.add(AsteriskAmiDialer)
