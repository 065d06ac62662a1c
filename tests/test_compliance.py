"""The core compliance gate: contact window in the debtor's local time, account status, do-not-contact."""

from __future__ import annotations

from datetime import datetime, time
from zoneinfo import ZoneInfo

import pytest

from core.compliance import (
    AccountStatusRule,
    ComplianceGate,
    ContactWindowRule,
    DoNotContactRule,
    Reason,
    Subject,
)
from core.config import ContactWindow
from core.models import Channel

BOGOTA = ZoneInfo("America/Bogota")
MEXICO = ZoneInfo("America/Mexico_City")
NEW_YORK = ZoneInfo("America/New_York")
CO_MOBILE = "+573001234567"
MX_CDMX = "+525512345678"
US_NYC = "+12125550123"
US_TOLL_FREE = "+18005550199"  # rings in every US zone

WINDOW = ContactWindow(start=time(7), end=time(19), days=("mon", "tue", "wed", "thu", "fri", "sat"))


def gate() -> ComplianceGate:
    return ComplianceGate("t", [AccountStatusRule(), DoNotContactRule(), ContactWindowRule(WINDOW, BOGOTA)])


def call(phone: str, **kwargs: object) -> Subject:
    return Subject(channel=Channel.CALL, phone=phone, **kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("local", "allowed"),
    [
        (datetime(2026, 11, 23, 6, 59, tzinfo=BOGOTA), False),
        (datetime(2026, 11, 23, 7, 0, tzinfo=BOGOTA), True),
        (datetime(2026, 11, 23, 18, 59, tzinfo=BOGOTA), True),
        (datetime(2026, 11, 23, 19, 0, tzinfo=BOGOTA), False),
        (datetime(2026, 11, 28, 10, 0, tzinfo=BOGOTA), True),  # Saturday
        (datetime(2026, 11, 29, 10, 0, tzinfo=BOGOTA), False),  # Sunday
    ],
)
def test_window_is_applied_in_debtor_local_time(local: datetime, allowed: bool) -> None:
    assert gate().evaluate(call(CO_MOBILE), local).allowed is allowed


def test_window_follows_the_number_not_the_site() -> None:
    # 19:30 in Bogotá is 18:30 in Mexico City: the Mexican debtor may still be called.
    at = datetime(2026, 11, 23, 19, 30, tzinfo=BOGOTA)
    assert not gate().evaluate(call(CO_MOBILE), at).allowed
    assert gate().evaluate(call(MX_CDMX), at).allowed


def test_denial_names_the_reason_and_the_next_allowed_time() -> None:
    decision = gate().evaluate(call(CO_MOBILE), datetime(2026, 11, 28, 19, 5, tzinfo=BOGOTA))  # Saturday evening
    assert decision.reasons == (Reason.OUTSIDE_CONTACT_WINDOW,)
    assert decision.next_allowed_at == datetime(2026, 11, 30, 7, 0, tzinfo=BOGOTA)  # Monday, skipping Sunday
    assert "outside_contact_window" in decision.explain()


def test_number_in_several_zones_takes_the_most_restrictive_reading() -> None:
    # 07:30 in New York is 04:30 in Los Angeles: a toll-free number may ring in either.
    at = datetime(2026, 11, 23, 7, 30, tzinfo=NEW_YORK)
    assert gate().evaluate(call(US_NYC), at).allowed
    decision = gate().evaluate(call(US_TOLL_FREE), at)
    assert not decision.allowed
    assert decision.next_allowed_at is not None
    assert gate().evaluate(call(US_TOLL_FREE), decision.next_allowed_at).allowed


def test_window_holds_across_a_dst_change() -> None:
    # 2026-03-08 02:00 New York clocks jump to 03:00; 07:00 EDT is 11:00 UTC, not 12:00.
    sunday_rule = ContactWindowRule(ContactWindow(start=time(7), end=time(19), days=("sun",)), BOGOTA)
    just_before = datetime(2026, 3, 8, 10, 59, tzinfo=ZoneInfo("UTC"))
    verdict = sunday_rule.evaluate(call(US_NYC), just_before)
    assert verdict.next_allowed_at == datetime(2026, 3, 8, 7, 0, tzinfo=NEW_YORK)
    assert verdict.next_allowed_at.astimezone(ZoneInfo("UTC")).hour == 11


def test_unknown_zone_falls_back_to_the_site_zone() -> None:
    rule = ContactWindowRule(WINDOW, BOGOTA)
    assert rule.zones_for("+80012345678") == (BOGOTA,)


@pytest.mark.parametrize("status", ["withdrawn", "paid"])
def test_inactive_account_is_denied_for_good(status: str) -> None:
    decision = gate().evaluate(call(CO_MOBILE, account_status=status), datetime(2026, 11, 23, 10, tzinfo=BOGOTA))
    assert decision.reasons == (Reason.ACCOUNT_NOT_ACTIVE,)
    assert decision.next_allowed_at is None


def test_do_not_contact_combines_with_other_reasons() -> None:
    decision = gate().evaluate(call(CO_MOBILE, do_not_contact=True), datetime(2026, 11, 23, 22, tzinfo=BOGOTA))
    assert set(decision.reasons) == {Reason.DO_NOT_CONTACT, Reason.OUTSIDE_CONTACT_WINDOW}
    assert decision.next_allowed_at is None
