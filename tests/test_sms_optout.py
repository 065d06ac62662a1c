"""Inbound texts and opt-out: STOP / BAJA / ALTO stops texts to that number at once (audited, stored), and
delivery reports move a message's state forward only."""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa

from cartera.contact.compliance.model import Reason
from cartera.contact.optout import opt_out_keyword
from cartera.contact.targets import Denied
from cartera.core.models import Channel, DeliveryReport, InboundSms, SmsState
from cartera.core.store.schema import AuditEntry, InboundSmsRow, Phone, SmsOptOut, SmsRow
from cartera.node import Node
from tests.conftest import write_portfolio, write_sites

ANA = "+573001234567"


@pytest.mark.parametrize(
    ("text", "keyword"),
    [
        ("STOP", "STOP"),
        ("stop ", "STOP"),
        ("baja.", "BAJA"),
        ("Alto!", "ALTO"),
        ("¡Baja!", "BAJA"),
        ("BÁJA", "BAJA"),
        ("  Stop!!! \n", "STOP"),
        ("«alto»", "ALTO"),
        ("\tbaja 🙏", "BAJA"),
        ("Baja por favor", None),
        ("stopping", None),
        ("No me den de baja", None),
        ("", None),
        ("...", None),
        ("B A J A", None),
    ],
)
def test_opt_out_keywords(text: str, keyword: str | None) -> None:
    assert opt_out_keyword(text) == keyword


@pytest.fixture
def node(tmp_path: Path, open_node: Callable[..., Node]) -> Node:
    path = write_sites(tmp_path)
    write_portfolio(tmp_path / "inbox", ["BCO-1;Ana Gómez;300 123 4567;;1.000,00;COP"])
    node = open_node(path)
    node.creditor_sync().run_once()
    return node


def _mo(node: Node, text: str, gateway_id: str | None, phone: str = ANA) -> None:
    node.texts.on_inbound(InboundSms(phone, text, node.clock.now(), gateway_id))


def test_baja_opts_the_number_out_at_once_and_is_audited(node: Node) -> None:
    node.texts.send_sms(phone=None, text="Recordatorio de pago", account="BCO-1", actor="test")
    _mo(node, "  Bája. ", "mo-1", phone="300 123 4567")  # national form, as some SMSCs give it
    with node.db.session() as session:
        assert session.scalars(sa.select(Phone.do_not_text).where(Phone.e164 == ANA)).all() == [True]
        stored = session.scalars(sa.select(InboundSmsRow)).one()
        assert (stored.phone, stored.text, stored.gateway_id, stored.opt_out) == (ANA, "  Bája. ", "mo-1", "BAJA")
        opt_out = session.get_one(SmsOptOut, ANA)
        assert (opt_out.keyword, opt_out.site, opt_out.inbound_id) == ("BAJA", "t", stored.id)
        actions = session.scalars(sa.select(AuditEntry).order_by(AuditEntry.id)).all()
        entry = next(a for a in actions if a.action == "sms.opt_out")
        assert (entry.actor, entry.subject) == ("phone:300 123 4567", ANA)
        assert entry.details == {"keyword": "BAJA", "inbound_id": stored.id, "phones_flagged": 1}
        assert [a.action for a in actions][-2:] == ["sms.inbound", "sms.opt_out"]
    for phone, account in ((None, "BCO-1"), (ANA, None), ("300 123 4567", "BCO-1")):
        with pytest.raises(Denied) as denied:
            node.texts.send_sms(phone=phone, text="Otro aviso", account=account, actor="test")
        assert Reason.DEBTOR_OPT_OUT in denied.value.decision.reasons
    with node.db.session() as session:
        assert session.scalar(sa.select(sa.func.count()).select_from(SmsRow)) == 1
    call, _ = node.explainer.explain(phone=ANA, account=None, channel=Channel.CALL, at=node.clock.now(), actor="t")
    assert Reason.DEBTOR_OPT_OUT not in call.reasons  # texts only: calls stay allowed


def test_an_ordinary_reply_is_stored_and_opts_nothing_out(node: Node) -> None:
    _mo(node, "¿Cuánto debo? Quiero pagar", "mo-1")
    with node.db.session() as session:
        stored = session.scalars(sa.select(InboundSmsRow)).one()
        assert (stored.text, stored.opt_out) == ("¿Cuánto debo? Quiero pagar", None)
        assert session.scalars(sa.select(Phone.do_not_text)).all() == [False]
        assert session.scalars(sa.select(SmsOptOut)).all() == []
    node.texts.send_sms(phone=None, text="Con gusto: su saldo es $1.000", account="BCO-1", actor="test")


def test_the_same_mo_delivered_twice_is_handled_once(node: Node) -> None:
    for _ in range(2):
        _mo(node, "STOP", "mo-7")
    _mo(node, "STOP", None)  # no gateway id: cannot tell, stored again, the opt-out stays one
    with node.db.session() as session:
        assert session.scalar(sa.select(sa.func.count()).select_from(InboundSmsRow)) == 2
        assert session.scalar(sa.select(sa.func.count()).select_from(SmsOptOut)) == 1
        opt_outs = session.scalars(sa.select(AuditEntry).where(AuditEntry.action == "sms.opt_out")).all()
        assert [e.details["phones_flagged"] for e in opt_outs] == [1, 0]


def test_a_number_no_debtor_has_yet_stays_opted_out_after_it_is_assigned(node: Node, tmp_path: Path) -> None:
    _mo(node, "alto", "mo-1", phone="+573109876543")
    write_portfolio(tmp_path / "inbox", ["BCO-2;Luis Pérez;310 987 6543;;500,00;COP"], name="nueva.csv")
    node.creditor_sync().run_once()
    with node.db.session() as session:
        assert session.scalars(sa.select(Phone.do_not_text).where(Phone.e164 == "+573109876543")).all() == [False]
    with pytest.raises(Denied) as denied:
        node.texts.send_sms(phone=None, text="Aviso", account="BCO-2", actor="test")
    assert Reason.DEBTOR_OPT_OUT in denied.value.decision.reasons


@pytest.mark.parametrize("sender", ["MOVISTAR", "INFO-" + "X" * 27, "99999999999"])
def test_a_sender_that_is_no_phone_number_is_stored_as_given_and_opts_nothing_out(
    node: Node, sender: str, caplog: pytest.LogCaptureFixture
) -> None:
    """No text goes to a sender that is no number: its BAJA has nothing to stop. A 32-character one went into the
    opt-out list, whose numbers are 20 characters at most: PostgreSQL refused it and the message was lost. The
    log and the audit say that the keyword opted nothing out (round 21 C-F11: it was logged ``opt_out=BAJA``)."""
    caplog.set_level(logging.INFO, "cartera.contacts")
    _mo(node, "BAJA", "mo-1", phone=sender)
    with node.db.session() as session:
        stored = session.scalars(sa.select(InboundSmsRow)).one()
        assert (stored.phone, stored.opt_out) == (sender, "BAJA")
        assert session.scalars(sa.select(SmsOptOut)).all() == []
        assert session.scalars(sa.select(Phone.do_not_text)).all() == [False]
        [entry] = session.scalars(sa.select(AuditEntry).where(AuditEntry.action == "sms.opt_out_not_applied"))
        assert entry.subject == sender
        assert entry.details == {"keyword": "BAJA", "inbound_id": stored.id, "reason": "the sender is no phone number"}
    fields = {r.getMessage(): getattr(r, "fields", {}) for r in caplog.records}
    assert fields["sms.inbound"]["opt_out"] is None
    assert fields["sms.opt_out_not_applied"] == {
        "phone": sender,
        "keyword": "BAJA",
        "reason": "the sender is no phone number",
    }


@pytest.mark.parametrize(
    ("sender", "e164"),
    [
        ("525512345678", "+525512345678"),  # a Mexican mobile, as an SMSC gives it with TON 0 (no valid CO number)
        ("12125551234", "+12125551234"),
        ("573001234567", ANA),  # a Colombian one either way
        ("3001234567", ANA),
    ],
)
def test_a_foreign_sender_without_plus_is_read_as_international_and_its_baja_opts_it_out(
    node: Node, sender: str, e164: str
) -> None:
    """Round 21 C-F11: the sender's digits were read only as a national number of the site's country; a foreign
    debtor's BAJA from an SMSC giving TON 0 (or Kannel, passing the sender as received) opted nothing out."""
    _mo(node, "BAJA", "mo-1", phone=sender)
    with node.db.session() as session:
        assert session.scalars(sa.select(InboundSmsRow.phone)).all() == [e164]
        assert session.scalars(sa.select(SmsOptOut.e164)).all() == [e164]
        assert session.scalars(sa.select(AuditEntry).where(AuditEntry.action == "sms.opt_out_not_applied")).all() == []


def test_delivery_reports_never_move_a_final_state_back(node: Node) -> None:
    result = node.texts.send_sms(phone=None, text="Aviso", account="BCO-1", actor="test")
    later = node.clock.now() + timedelta(seconds=5)

    def state() -> str:
        with node.db.session() as session:
            return session.get_one(SmsRow, result.message_id).state

    assert state() == SmsState.DELIVERED  # the outbox reports delivery when it wrote the line
    report = DeliveryReport(SmsState.SUBMITTED, result.gateway_id, later, message_id=None, raw_status="type 8")
    node.texts.on_delivery(report)
    assert state() == SmsState.DELIVERED
    node.texts.on_delivery(DeliveryReport(SmsState.EXPIRED, result.gateway_id, later, raw_status="EXPIRED"))
    assert state() == SmsState.EXPIRED
