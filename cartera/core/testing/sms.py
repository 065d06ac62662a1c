"""Conformance suite for :class:`cartera.core.adapters.SmsGateway`: every SMS plugin's tests subclass it."""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from itertools import count
from typing import Any

import pytest
from pydantic import ValidationError

from cartera.core.adapters import SmsGateway
from cartera.core.models import DeliveryReport, SmsMessage, SmsState, SmsSubmitResult
from cartera.core.testing.capabilities import assert_serves_http_as_declared
from cartera.core.testing.context import CapturingContext

ACCEPTED = frozenset({SmsState.SUBMITTED, SmsState.DELIVERED})
FINAL = frozenset({SmsState.DELIVERED, SmsState.FAILED, SmsState.EXPIRED})
SPANISH = "Sr. Núñez: ¿podría llamarnos hoy? ¡Gracias! Su cuota está vencida, evite recargos. Atención al cliente."
LONG = "Le recordamos que su cuota número 4 está pendiente de pago; llámenos o pague en línea. " * 3
REPORT_TIMEOUT = 10.0


def _matches(report: DeliveryReport, result: SmsSubmitResult) -> bool:
    if report.message_id is not None:
        return report.message_id == result.message_id
    return report.gateway_id is not None and report.gateway_id == result.gateway_id


def _final_reports(context: CapturingContext, result: SmsSubmitResult) -> list[DeliveryReport]:
    return [r for r in list(context.deliveries) if r.state in FINAL and _matches(r, result)]


def _wait_for_final_reports(context: CapturingContext, results: Sequence[SmsSubmitResult]) -> None:
    context.wait_until(
        lambda: all(_final_reports(context, result) for result in results),
        REPORT_TIMEOUT,
        f"a final delivery report for each of {len(results)} messages (got {len(context.deliveries)})",
    )


class SmsConformance:
    """The contract of an SMS gateway. Override the ``context``, ``gateway`` and ``phone`` fixtures."""

    _ids = count(1_000_000)

    @pytest.fixture
    def context(self) -> CapturingContext:
        """The CapturingContext the gateway under test reports to."""
        raise NotImplementedError("provide a `context` fixture returning a CapturingContext")

    @pytest.fixture
    def gateway(self, context: CapturingContext) -> Iterator[SmsGateway[Any]]:
        """A started gateway built with ``context``; stopped at teardown."""
        raise NotImplementedError("provide a `gateway` fixture yielding a started SmsGateway, stopped after")

    @pytest.fixture
    def phone(self) -> str:
        """An E.164 number the peer under test accepts."""
        raise NotImplementedError("provide a `phone` fixture returning an E.164 number the peer accepts")

    def _message(self, context: CapturingContext, phone: str, text: str) -> SmsMessage:
        return SmsMessage(message_id=next(self._ids), site=context.site, phone=phone, text=text)

    def _send_accepted(self, gateway: SmsGateway[Any], message: SmsMessage) -> SmsSubmitResult:
        result = gateway.send(message)
        assert isinstance(result, SmsSubmitResult)
        assert result.message_id == message.message_id
        assert result.state in ACCEPTED, f"message refused: {result.state} {result.detail}"
        assert isinstance(result.gateway_id, str)
        assert result.gateway_id
        return result

    def test_send_returns_submit_result(self, gateway: SmsGateway[Any], context: CapturingContext, phone: str) -> None:
        """send returns a result for the same message_id, SUBMITTED or DELIVERED, with a gateway id."""
        self._send_accepted(gateway, self._message(context, phone, "Su pago fue recibido. Gracias."))

    def test_gateway_ids_are_distinct(self, gateway: SmsGateway[Any], context: CapturingContext, phone: str) -> None:
        """Two messages get two different gateway ids."""
        first = self._send_accepted(gateway, self._message(context, phone, "Primer aviso"))
        second = self._send_accepted(gateway, self._message(context, phone, "Segundo aviso"))
        assert first.gateway_id != second.gateway_id

    def test_spanish_text_is_accepted(self, gateway: SmsGateway[Any], context: CapturingContext, phone: str) -> None:
        """Spanish text with accents, ñ, ¿ and ¡ is accepted."""
        self._send_accepted(gateway, self._message(context, phone, SPANISH))

    def test_long_text_is_accepted(self, gateway: SmsGateway[Any], context: CapturingContext, phone: str) -> None:
        """A text longer than one SMS (160 characters) is accepted."""
        assert len(LONG) > 160
        self._send_accepted(gateway, self._message(context, phone, LONG))

    def test_each_message_gets_a_final_report(
        self, gateway: SmsGateway[Any], context: CapturingContext, phone: str
    ) -> None:
        """Each sent message gets one final delivery report, matched by message_id or gateway_id."""
        texts = ["Recordatorio de pago", SPANISH, LONG]
        results = [self._send_accepted(gateway, self._message(context, phone, t)) for t in texts]
        _wait_for_final_reports(context, results)
        for result in results:
            reports = _final_reports(context, result)
            assert len(reports) == 1, f"message {result.message_id}: {reports}"
            report = reports[0]
            assert report.at.tzinfo is not None
            assert report.at.utcoffset() is not None
            if report.message_id is not None and report.gateway_id is not None:
                assert report.gateway_id == result.gateway_id
        unmatched = [r for r in context.deliveries if not any(_matches(r, res) for res in results)]
        assert unmatched == []

    def test_concurrent_sends(self, gateway: SmsGateway[Any], context: CapturingContext, phone: str) -> None:
        """Sends from several threads each get exactly one result and one final report."""
        threads_n, per_thread = 4, 5
        messages = [self._message(context, phone, f"Aviso {i}: ¿pagó su cuota?") for i in range(20)]
        results: list[SmsSubmitResult] = []
        errors: list[BaseException] = []
        lock = threading.Lock()
        start = threading.Barrier(threads_n)

        def worker(batch: list[SmsMessage]) -> None:
            start.wait()
            for message in batch:
                try:
                    result = self._send_accepted(gateway, message)
                except BaseException as exc:  # reported to the main thread below
                    with lock:
                        errors.append(exc)
                    return
                with lock:
                    results.append(result)

        threads = [
            threading.Thread(target=worker, args=(messages[i * per_thread : (i + 1) * per_thread],))
            for i in range(threads_n)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(REPORT_TIMEOUT)
        assert errors == []
        assert sorted(r.message_id for r in results) == sorted(m.message_id for m in messages)
        assert len({r.gateway_id for r in results}) == len(messages)
        _wait_for_final_reports(context, results)
        assert all(len(_final_reports(context, result)) == 1 for result in results)

    def test_check_is_ok(self, gateway: SmsGateway[Any]) -> None:
        """check() on a working gateway is ok and says something."""
        result = gateway.check()
        assert result.ok, result.detail
        assert result.detail.strip()

    def test_serves_http_as_declared(self, gateway: SmsGateway[Any]) -> None:
        """http_router() gives routes exactly when the gateway declares serves_http."""
        assert_serves_http_as_declared(gateway)

    def test_config_model_rejects_unknown_key(self, gateway: SmsGateway[Any]) -> None:
        """The config model refuses a key it does not declare."""
        data = {**gateway.config.model_dump(), "no_such_option": True}
        with pytest.raises(ValidationError) as caught:
            type(gateway).config_model.model_validate(data)
        assert any(e["type"] == "extra_forbidden" and e["loc"] == ("no_such_option",) for e in caught.value.errors())
