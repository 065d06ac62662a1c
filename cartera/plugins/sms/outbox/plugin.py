"""The outbox SMS gateway adapter."""

from __future__ import annotations

from typing import Any, ClassVar

from cartera.plugin import (
    AdapterCapabilities,
    AdapterRegistry,
    CheckResult,
    DeliveryReport,
    NotARegularFile,
    PluginConfig,
    PluginContext,
    SmsGateway,
    SmsMessage,
    SmsState,
    SmsSubmitResult,
    hookimpl,
)
from cartera.plugins.sms.outbox.client import OutboxFile
from cartera.plugins.sms.outbox.config import OutboxConfig


class OutboxGateway(SmsGateway[OutboxConfig]):
    """Writes each message as a JSON line to an outbox file an operator reads; nothing leaves the node.

    Delivery means "durably written to the outbox": once a message's line is flushed (and fsynced when
    configured), the gateway reports it DELIVERED with ``raw_status="written to outbox"``. ``send``
    itself returns SUBMITTED.
    """

    name: ClassVar[str] = "outbox"
    config_model: ClassVar[type[PluginConfig]] = OutboxConfig
    capabilities: ClassVar[AdapterCapabilities] = AdapterCapabilities()

    def __init__(self, config: OutboxConfig, context: PluginContext) -> None:
        super().__init__(config, context)
        self._outbox = OutboxFile(config.path, fsync=config.fsync)

    def start(self) -> None:
        self._outbox.open()

    def stop(self) -> None:
        self._outbox.close()

    def check(self) -> CheckResult:
        try:
            self._outbox.probe()
        except NotARegularFile as exc:
            return CheckResult(ok=False, detail=f"outbox {exc}")
        except OSError as exc:
            return CheckResult(ok=False, detail=f"outbox {self.config.path} is not writable: {exc}")
        return CheckResult(ok=True, detail=f"outbox {self.config.path} is writable")

    def send(self, message: SmsMessage) -> SmsSubmitResult:
        entry = self._outbox.append(
            message_id=message.message_id, to=message.phone, text=message.text, at=self.context.clock.now()
        )
        self.context.report_delivery(
            DeliveryReport(
                state=SmsState.DELIVERED,
                gateway_id=entry.gateway_id,
                at=self.context.clock.now(),
                message_id=message.message_id,
                raw_status="written to outbox",
            )
        )
        return SmsSubmitResult(
            message_id=message.message_id,
            state=SmsState.SUBMITTED,
            gateway_id=entry.gateway_id,
            detail=f"{entry.segments} {entry.encoding} segment(s) in {self.config.path}",
        )


@hookimpl
def cartera_register_sms_gateways(register: AdapterRegistry[SmsGateway[Any]]) -> None:
    register.add(OutboxGateway)
