"""Registers the simulated PBX as the ``simulator`` dialer."""

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
    Seat,
    UnfinishedCall,
    hookimpl,
)
from cartera.plugins.dialers.simulator.audio import voice_bank
from cartera.plugins.dialers.simulator.client import SimulatedSwitch
from cartera.plugins.dialers.simulator.config import SimulatorConfig

#: The raw cause of a call a killed node left in flight.
SIMULATION_LOST = "simulated in the killed node's process: its end is unknown"


class SimulatorDialer(Dialer[SimulatorConfig]):
    """A PBX simulated in-process, for the demo site and for tests: needs nothing outside the repo."""

    name: ClassVar[str] = "simulator"
    config_model: ClassVar[type[PluginConfig]] = SimulatorConfig
    capabilities: ClassVar[DialerCapabilities] = DialerCapabilities(
        records_calls=True,
        reports_agents=True,
        reports_agent_connections=True,
        cancels=True,
        reconciles=True,
        pauses_agents=True,
        targets_agents=True,
        abandons_calls=True,
        reports_seats=True,
    )

    def __init__(self, config: SimulatorConfig, context: PluginContext) -> None:
        super().__init__(config, context)
        self._switch = SimulatedSwitch(config, context)

    def start(self) -> None:
        if self.config.record:
            voice_bank()  # synthesise the voices now rather than during the first answered call

    def check(self) -> CheckResult:
        if self._switch.stopped:
            return CheckResult(ok=False, detail="simulator stopped: it places no more calls")
        return CheckResult(
            ok=True,
            detail=f"simulator ready: {len(self.config.seat_names)} agents, dial ratio {self.config.dial_ratio:g}",
        )

    def capacity(self) -> int:
        return self._switch.capacity()

    def place_call(self, request: CallRequest) -> None:
        self._switch.place_call(request)

    def cancel(self, attempt_id: int) -> bool:
        return self._switch.cancel(attempt_id)

    def pause_agent(self, agent: str, reason: str) -> None:
        self._switch.pause_agent(agent, reason)

    def resume_agent(self, agent: str) -> None:
        self._switch.resume_agent(agent)

    def seats(self) -> list[Seat]:
        return self._switch.seats()

    def reconcile(self, calls: Sequence[UnfinishedCall]) -> None:
        """The simulated switch ran inside the node's process: its calls ended, unseen, when the node was killed."""
        for call in calls:
            self.context.report_call(call.unknown(SIMULATION_LOST))

    def stop(self) -> None:
        self._switch.stop()


@hookimpl
def cartera_register_dialers(register: AdapterRegistry[Dialer[Any]]) -> None:
    register.add(SimulatorDialer)
