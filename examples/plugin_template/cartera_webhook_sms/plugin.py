"""The webhook SMS gateway adapter and its registration (the ``cartera`` entry point names this module)."""

from __future__ import annotations

from typing import Any, ClassVar

from cartera.plugin import (
    AdapterCapabilities,
    AdapterRegistry,
    CheckResult,
    DeliveryReport,
    PluginConfig,
    PluginContext,
    SmsGateway,
    SmsMessage,
    SmsState,
    SmsSubmitResult,
    hookimpl,
)

from cartera_webhook_sms.client import WebhookClient, WebhookError
from cartera_webhook_sms.config import WebhookSmsConfig

#: The vendor's final statuses, reported as delivery receipts. Any other status ("queued", "sent"...) means
#: the vendor took the message without a verdict yet: it stays SUBMITTED.
FINAL_STATES: dict[str, SmsState] = {
    "delivered": SmsState.DELIVERED,
    "failed": SmsState.FAILED,
    "rejected": SmsState.FAILED,
    "expired": SmsState.EXPIRED,
}


class WebhookSmsGateway(SmsGateway[WebhookSmsConfig]):
    """POSTs each message to the vendor and reports the delivery state its answer states.

    A final status (delivered, failed, rejected, expired) is reported at once through
    ``context.report_delivery``; any other leaves the message SUBMITTED (this vendor sends no later
    receipts). Errors raise :class:`WebhookError`; core then records the message as failed.
    """

    name: ClassVar[str] = "webhook"
    config_model: ClassVar[type[PluginConfig]] = WebhookSmsConfig
    #: Nothing optional: a gateway whose vendor calls back over HTTP overrides http_router, declaring serves_http=True.
    capabilities: ClassVar[AdapterCapabilities] = AdapterCapabilities()

    def __init__(self, config: WebhookSmsConfig, context: PluginContext) -> None:
        super().__init__(config, context)
        self._client = WebhookClient(str(config.url), config.token.get_secret_value(), config.timeout)

    def check(self) -> CheckResult:
        try:
            status = self._client.probe()
        except WebhookError as exc:
            return CheckResult(ok=False, detail=str(exc))
        if status in (401, 403):
            return CheckResult(ok=False, detail=f"{self.config.url} refused the token (HTTP {status})")
        if not 200 <= status < 300:
            return CheckResult(ok=False, detail=f"{self.config.url} answered HTTP {status}")
        return CheckResult(ok=True, detail=f"{self.config.url} accepted the token (HTTP {status})")

    def send(self, message: SmsMessage) -> SmsSubmitResult:
        answer = self._client.submit(
            to=message.phone, text=message.text, reference=f"{message.site}-{message.message_id}"
        )
        state = FINAL_STATES.get(answer.status, SmsState.SUBMITTED)
        if state is not SmsState.SUBMITTED:
            self.context.report_delivery(
                DeliveryReport(
                    state=state,
                    gateway_id=answer.id,
                    at=self.context.clock.now(),
                    message_id=message.message_id,
                    raw_status=answer.status,
                )
            )
        self.context.log.debug("message %s: vendor id %s, %s", message.message_id, answer.id, answer.status)
        return SmsSubmitResult(
            message_id=message.message_id,
            state=state,
            gateway_id=answer.id,
            detail=f"vendor status {answer.status!r}",
        )


@hookimpl
def cartera_register_sms_gateways(register: AdapterRegistry[SmsGateway[Any]]) -> None:
    register.add(WebhookSmsGateway)
