"""The confirmation texted after a call ends with a promise to pay: the built-in ``promise`` template, or the
portfolio's own, through the gate; a misplaced promise field is a config error naming the template."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import date
from decimal import Decimal
from pathlib import Path

import pytest
import sqlalchemy as sa

from cartera.core.errors import ConfigError
from cartera.core.hooks import load_plugins
from cartera.core.models import CallOutcome, CallResult, Disposition, DispositionCode
from cartera.core.store.schema import Account, ContactAttempt
from cartera.node import Node
from tests.conftest import write_portfolio, write_sites

ANA = "+573001234567"


def promised(tmp_path: Path, open_node: Callable[..., Node], extra: str = "", campaign: str = "") -> list[str]:
    """Account BCO-1's call answered with a promise to pay 1.250.000,50 by 30/11/2026 on site ``t`` with
    ``extra`` appended and ``campaign`` added to its campaign section; the texts sent. The site is held to
    Mexico's pack, which lets the confirmation go the day of the call (Colombia's Ley 2300 refuses it)."""
    path = write_sites(tmp_path, extra=extra)
    text = path.read_text().replace("[sites.t.campaign]", f"[sites.t.campaign]\n{campaign}")
    path.write_text(text.replace("[sites.t.compliance]", '[sites.t.compliance]\nlaw_pack = "mx"'))
    write_portfolio(tmp_path / "inbox", ["BCO-1;Ana Gómez;300 123 4567;;1.250.000,50;COP"])
    node = open_node(path)
    node.creditor_sync().run_once()
    now = node.clock.now()
    with node.db.session() as session:
        account_id = session.scalars(sa.select(Account.id).where(Account.ref == "BCO-1")).one()
        attempt = ContactAttempt(site="t", account_id=account_id, phone=ANA, state="placing", requested_at=now)
        session.add(attempt)
        session.flush()
        attempt_id = attempt.id
    promise = Disposition(DispositionCode.PROMISE_TO_PAY, Decimal("1250000.50"), date(2026, 11, 30))
    node.calls.on_call_result(
        CallResult(attempt_id, CallOutcome.ANSWERED, "16", now, now, now, agent="a-1", disposition=promise)
    )
    outbox = tmp_path / "sms" / "outbox.jsonl"
    lines = outbox.read_text(encoding="utf-8").splitlines() if outbox.exists() else []
    return [json.loads(line)["text"] for line in lines]


def test_a_promise_is_confirmed_with_the_built_in_text(tmp_path: Path, open_node: Callable[..., Node]) -> None:
    assert promised(tmp_path, open_node) == [
        "Gracias por su compromiso de pago de $1.250.000 para el 30/11/2026. Ref. BCO-1."
    ]


def test_a_portfolios_promise_template_replaces_the_built_in_one(
    tmp_path: Path, open_node: Callable[..., Node]
) -> None:
    extra = (
        '\n[sites.t.sms_templates."BANCO/TARJETAS"]\n'
        'promise = "{{ first_name }}, anotamos su pago de ${{ promised_amount | money }} {{ currency }} '
        'el {{ promised_date | day }}."\n'
    )
    assert promised(tmp_path, open_node, extra) == ["Ana, anotamos su pago de $1.250.000,50 COP el 30/11/2026."]


def test_no_confirmation_when_the_site_turns_them_off(tmp_path: Path, open_node: Callable[..., Node]) -> None:
    assert promised(tmp_path, open_node, campaign="promise_sms = false") == []


def test_a_promise_field_outside_the_promise_template_is_a_config_error(tmp_path: Path) -> None:
    path = write_sites(tmp_path, extra='\n[sites.t.sms_templates.default]\nreminder = "{{ promised_amount }}"\n')
    with pytest.raises(ConfigError) as caught:
        Node.open(path, "t", load_plugins(entry_points=False))
    message = str(caught.value)
    assert "key 'sms_templates.default'" in message
    assert "template 'reminder': 'promised_amount' is a field of the 'promise' template only" in message
