"""The compliance engine, pack by pack, on explicit calendar cases in the debtor's local time."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from cartera.contact.compliance import (
    ComplianceGate,
    Contact,
    Decision,
    History,
    LineType,
    Purpose,
    Reason,
    Subject,
    build_policy,
)
from cartera.contact.compliance.packs import AnyRule, FrequencyRule
from cartera.core.models import Channel

BOGOTA = ZoneInfo("America/Bogota")
MEXICO = ZoneInfo("America/Mexico_City")
TIJUANA = ZoneInfo("America/Tijuana")
LIMA = ZoneInfo("America/Lima")
SANTIAGO = ZoneInfo("America/Santiago")
NEW_YORK = ZoneInfo("America/New_York")
UTC = ZoneInfo("UTC")

CO_MOBILE = "+573001234567"
MX_CDMX = "+525512345678"
MX_TIJUANA = "+526641234567"
PE_LIMA = "+5114123456"
CL_SANTIAGO = "+56221234567"
US_NYC = "+12125550123"
US_TOLL_FREE = "+18005550199"  # rings in every NANP zone, Guam to Newfoundland


def gate(
    pack: str = "co",
    authorised: tuple[str, ...] | None = ("call", "sms"),
    local: Sequence[tuple[str, AnyRule]] = (),
    test_numbers: Sequence[str] = (),
    portfolios: dict[str, str] | None = None,
) -> ComplianceGate:
    return ComplianceGate(
        "t",
        country="CO",
        fallback_zone=BOGOTA,
        default=build_policy(pack, local, authorised),
        portfolios={name: build_policy(p, local, authorised) for name, p in (portfolios or {}).items()},
        local=list(local),
        authorised=authorised,
        test_numbers=test_numbers,
    )


def subject(phone: str = CO_MOBILE, channel: Channel = Channel.CALL, **fields: object) -> Subject:
    fields.setdefault("account_ref", "A-1")
    fields.setdefault("account_status", "active")
    return Subject(channel=channel, phone=phone, **fields)  # type: ignore[arg-type]


def history(*contacts: tuple[datetime, Channel, bool], phone: str = CO_MOBILE, promise: date | None = None) -> History:
    """``(when, channel, conversation)`` contacts of the subject's account, in any order."""
    rows = sorted(
        (Contact(when.timestamp(), channel, phone, True, talked) for when, channel, talked in contacts),
        key=lambda c: -c.ts,
    )
    conversations = [c.ts for c in rows if c.conversation]
    return History(tuple(rows), max(conversations) if conversations else None, promise)


def denied(decision: Decision, *reasons: Reason, until: datetime | None) -> None:
    assert not decision.allowed
    assert set(decision.reasons) == set(reasons), decision.violations
    assert decision.next_allowed_at == until


CALL, SMS = Channel.CALL, Channel.SMS


# --- Colombia: Ley 2300 de 2023 --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("local", "allowed"),
    [
        (datetime(2026, 11, 23, 6, 59, tzinfo=BOGOTA), False),  # Monday
        (datetime(2026, 11, 23, 7, 0, tzinfo=BOGOTA), True),
        (datetime(2026, 11, 23, 18, 59, tzinfo=BOGOTA), True),
        (datetime(2026, 11, 23, 19, 0, tzinfo=BOGOTA), False),
        (datetime(2026, 11, 28, 7, 59, tzinfo=BOGOTA), False),  # Saturday: 08:00-15:00
        (datetime(2026, 11, 28, 8, 0, tzinfo=BOGOTA), True),
        (datetime(2026, 11, 28, 14, 59, tzinfo=BOGOTA), True),
        (datetime(2026, 11, 28, 15, 0, tzinfo=BOGOTA), False),
        (datetime(2026, 11, 29, 10, 0, tzinfo=BOGOTA), False),  # Sunday
    ],
)
def test_colombia_hours(local: datetime, allowed: bool) -> None:
    assert gate().evaluate(subject(), local).allowed is allowed
    assert gate().evaluate(subject(channel=SMS), local).allowed is allowed


def test_colombia_saturday_afternoon_waits_for_monday() -> None:
    decision = gate().evaluate(subject(), datetime(2026, 11, 28, 15, 0, tzinfo=BOGOTA))
    denied(decision, Reason.OUTSIDE_CONTACT_WINDOW, until=datetime(2026, 11, 30, 7, 0, tzinfo=BOGOTA))
    assert decision.rules == ("co.ley2300.art3.horario",)
    assert decision.explain() == "denied: outside_contact_window (next allowed 2026-11-30T07:00-05:00)"


def test_colombia_public_holidays_are_closed() -> None:
    immaculate_conception = datetime(2026, 12, 8, 10, 0, tzinfo=BOGOTA)  # a Tuesday
    denied(
        gate().evaluate(subject(), immaculate_conception),
        Reason.PUBLIC_HOLIDAY,
        until=datetime(2026, 12, 9, 7, 0, tzinfo=BOGOTA),
    )
    # Saturday 10 January 2026 after 15:00: Sunday closed, Monday 12 is Epiphany (moved to Monday).
    saturday = datetime(2026, 1, 10, 16, 0, tzinfo=BOGOTA)
    denied(
        gate().evaluate(subject(), saturday),
        Reason.OUTSIDE_CONTACT_WINDOW,
        until=datetime(2026, 1, 13, 7, 0, tzinfo=BOGOTA),
    )


def test_colombia_window_follows_the_debtors_number() -> None:
    at = datetime(2026, 11, 23, 19, 30, tzinfo=BOGOTA)  # 18:30 in Mexico City
    assert not gate().evaluate(subject(), at).allowed
    assert gate().evaluate(subject(MX_CDMX), at).allowed


def test_colombia_only_authorised_channels() -> None:
    decision = gate(authorised=("call",)).evaluate(subject(channel=SMS), datetime(2026, 11, 23, 10, tzinfo=BOGOTA))
    denied(decision, Reason.CHANNEL_NOT_AUTHORISED, until=None)
    assert decision.rules == ("co.ley2300.art3.canales",)
    unstated = gate(authorised=None).evaluate(subject(), datetime(2026, 11, 23, 10, tzinfo=BOGOTA))
    denied(unstated, Reason.CHANNEL_NOT_AUTHORISED, until=None)


def test_colombia_limits_start_with_a_direct_contact() -> None:
    monday = datetime(2026, 11, 23, 9, 0, tzinfo=BOGOTA)
    unanswered = history((monday, CALL, False), (monday + timedelta(hours=1), CALL, False))
    assert gate().evaluate(subject(history=unanswered), monday + timedelta(hours=2)).allowed
    reached = history((monday, CALL, True))
    # one contact a day: the next call waits for Tuesday's window
    decision = gate().evaluate(subject(history=reached), monday + timedelta(hours=2))
    denied(decision, Reason.FREQUENCY_CAP, until=datetime(2026, 11, 24, 7, 0, tzinfo=BOGOTA))
    assert gate().evaluate(subject(history=reached), datetime(2026, 11, 24, 7, 0, tzinfo=BOGOTA)).allowed
    # one channel a week: a text waits until the call leaves the 7 days, Monday the 30th
    text = gate().evaluate(subject(channel=SMS, history=reached), datetime(2026, 11, 24, 10, 0, tzinfo=BOGOTA))
    denied(text, Reason.ONE_CHANNEL_AFTER_CONTACT, until=datetime(2026, 11, 30, 7, 0, tzinfo=BOGOTA))


def test_colombia_saturday_contact_then_sunday_then_monday() -> None:
    saturday = datetime(2026, 11, 28, 9, 0, tzinfo=BOGOTA)
    decision = gate().evaluate(subject(history=history((saturday, CALL, True))), saturday + timedelta(hours=2))
    # the daily cap lifts at Sunday 00:00, the window then keeps it closed until Monday 07:00
    denied(decision, Reason.FREQUENCY_CAP, until=datetime(2026, 11, 30, 7, 0, tzinfo=BOGOTA))


# --- Mexico: CONDUSEF -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("local", "allowed"),
    [
        (datetime(2026, 11, 23, 6, 59, tzinfo=MEXICO), False),
        (datetime(2026, 11, 23, 7, 0, tzinfo=MEXICO), True),
        (datetime(2026, 11, 23, 21, 59, tzinfo=MEXICO), True),
        (datetime(2026, 11, 23, 22, 0, tzinfo=MEXICO), False),
        (datetime(2026, 11, 29, 10, 0, tzinfo=MEXICO), True),  # Sunday: no day restriction
        (datetime(2026, 9, 16, 10, 0, tzinfo=MEXICO), True),  # Independence Day: no holiday restriction
    ],
)
def test_mexico_hours(local: datetime, allowed: bool) -> None:
    assert gate("mx").evaluate(subject(MX_CDMX), local).allowed is allowed


def test_mexico_tijuana_keeps_its_own_clock() -> None:
    at = datetime(2026, 11, 23, 22, 30, tzinfo=MEXICO)  # 20:30 in Tijuana (Pacific time)
    assert not gate("mx").evaluate(subject(MX_CDMX), at).allowed
    assert gate("mx").evaluate(subject(MX_TIJUANA), at).allowed
    late = gate("mx").evaluate(subject(MX_TIJUANA), datetime(2026, 11, 23, 22, 0, tzinfo=TIJUANA))
    denied(late, Reason.OUTSIDE_CONTACT_WINDOW, until=datetime(2026, 11, 24, 7, 0, tzinfo=TIJUANA))


# --- Peru: Ley 29571 art. 62(b) ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("local", "allowed"),
    [
        (datetime(2026, 11, 27, 6, 59, tzinfo=LIMA), False),  # Friday
        (datetime(2026, 11, 27, 7, 0, tzinfo=LIMA), True),
        (datetime(2026, 11, 27, 19, 59, tzinfo=LIMA), True),
        (datetime(2026, 11, 27, 20, 0, tzinfo=LIMA), False),
        (datetime(2026, 11, 28, 10, 0, tzinfo=LIMA), False),  # Saturday
        (datetime(2026, 11, 29, 10, 0, tzinfo=LIMA), False),  # Sunday
    ],
)
def test_peru_hours(local: datetime, allowed: bool) -> None:
    assert gate("pe").evaluate(subject(PE_LIMA), local).allowed is allowed


def test_peru_fiestas_patrias() -> None:
    monday_evening = datetime(2026, 7, 27, 20, 0, tzinfo=LIMA)  # 28 and 29 July are feriados
    decision = gate("pe").evaluate(subject(PE_LIMA), monday_evening)
    denied(decision, Reason.OUTSIDE_CONTACT_WINDOW, until=datetime(2026, 7, 30, 7, 0, tzinfo=LIMA))
    denied(
        gate("pe").evaluate(subject(PE_LIMA), datetime(2026, 7, 28, 10, tzinfo=LIMA)),
        Reason.PUBLIC_HOLIDAY,
        until=datetime(2026, 7, 30, 7, 0, tzinfo=LIMA),
    )


# --- Chile: Ley 19.496 art. 37 (Ley 21.320) --------------------------------------------------------


@pytest.mark.parametrize(
    ("local", "allowed"),
    [
        (datetime(2026, 11, 28, 7, 59, tzinfo=SANTIAGO), False),  # Saturday
        (datetime(2026, 11, 28, 8, 0, tzinfo=SANTIAGO), True),
        (datetime(2026, 11, 28, 19, 59, tzinfo=SANTIAGO), True),
        (datetime(2026, 11, 28, 20, 0, tzinfo=SANTIAGO), False),
        (datetime(2026, 11, 29, 12, 0, tzinfo=SANTIAGO), False),  # Sunday
    ],
)
def test_chile_hours(local: datetime, allowed: bool) -> None:
    assert gate("cl").evaluate(subject(CL_SANTIAGO), local).allowed is allowed


def test_chile_fiestas_patrias_and_the_start_of_summer_time() -> None:
    thursday = datetime(2026, 9, 17, 20, 0, tzinfo=SANTIAGO)  # 18 and 19 September are holidays
    denied(
        gate("cl").evaluate(subject(CL_SANTIAGO), thursday),
        Reason.OUTSIDE_CONTACT_WINDOW,
        until=datetime(2026, 9, 21, 8, 0, tzinfo=SANTIAGO),
    )
    # Clocks go from 24:00 Saturday 5 to 01:00 Sunday 6 September: Monday 08:00 is 11:00 UTC, not 12:00.
    saturday = datetime(2026, 9, 5, 20, 30, tzinfo=SANTIAGO)
    decision = gate("cl").evaluate(subject(CL_SANTIAGO), saturday)
    assert decision.next_allowed_at == datetime(2026, 9, 7, 11, 0, tzinfo=UTC)


def test_chile_regional_holiday_needs_the_region() -> None:
    at = datetime(2027, 6, 7, 10, 0, tzinfo=SANTIAGO)  # a Monday; Arica y Parinacota's regional holiday
    assert gate("cl").evaluate(subject(CL_SANTIAGO), at).allowed
    assert gate("cl").evaluate(subject(CL_SANTIAGO, region="CL-RM"), at).allowed
    arica = gate("cl").evaluate(subject(CL_SANTIAGO, region="CL-AP"), at)
    denied(arica, Reason.PUBLIC_HOLIDAY, until=datetime(2027, 6, 8, 8, 0, tzinfo=SANTIAGO))


def test_chile_one_call_a_week_and_two_spaced_texts() -> None:
    monday = datetime(2026, 11, 23, 9, 0, tzinfo=SANTIAGO)
    called = history((monday, CALL, False), phone=CL_SANTIAGO)
    tuesday = monday + timedelta(days=1)
    denied(
        gate("cl").evaluate(subject(CL_SANTIAGO, history=called), tuesday),
        Reason.FREQUENCY_CAP,
        until=datetime(2026, 11, 30, 8, 0, tzinfo=SANTIAGO),
    )
    assert gate("cl").evaluate(subject(CL_SANTIAGO, channel=SMS, history=called), tuesday).allowed
    texted = history((monday, SMS, False), phone=CL_SANTIAGO)
    denied(
        gate("cl").evaluate(subject(CL_SANTIAGO, channel=SMS, history=texted), tuesday),
        Reason.MIN_INTERVAL,
        until=monday + timedelta(hours=48),
    )
    twice = history((monday, SMS, False), (monday + timedelta(days=2), SMS, False), phone=CL_SANTIAGO)
    thursday = monday + timedelta(days=4)
    decision = gate("cl").evaluate(subject(CL_SANTIAGO, channel=SMS, history=twice), thursday)
    denied(decision, Reason.FREQUENCY_CAP, until=datetime(2026, 11, 30, 8, 0, tzinfo=SANTIAGO))


# --- United States: FDCPA, Regulation F; Massachusetts ----------------------------------------------


@pytest.mark.parametrize(
    ("local", "allowed"),
    [
        (datetime(2026, 11, 23, 7, 59, tzinfo=NEW_YORK), False),
        (datetime(2026, 11, 23, 8, 0, tzinfo=NEW_YORK), True),
        (datetime(2026, 11, 23, 20, 59, tzinfo=NEW_YORK), True),
        (datetime(2026, 11, 23, 21, 0, tzinfo=NEW_YORK), False),
        (datetime(2026, 11, 26, 10, 0, tzinfo=NEW_YORK), True),  # Thanksgiving: no holiday rule
    ],
)
def test_us_hours(local: datetime, allowed: bool) -> None:
    assert gate("us").evaluate(subject(US_NYC), local).allowed is allowed


def test_us_hours_across_both_dst_changes() -> None:
    # 8 March 2026: 02:00 EST becomes 03:00 EDT, so 08:00 is 12:00 UTC; 1 November: 08:00 EST is 13:00 UTC.
    spring = gate("us").evaluate(subject(US_NYC), datetime(2026, 3, 8, 11, 30, tzinfo=UTC))
    denied(spring, Reason.OUTSIDE_CONTACT_WINDOW, until=datetime(2026, 3, 8, 12, 0, tzinfo=UTC))
    autumn = gate("us").evaluate(subject(US_NYC), datetime(2026, 11, 1, 12, 30, tzinfo=UTC))
    denied(autumn, Reason.OUTSIDE_CONTACT_WINDOW, until=datetime(2026, 11, 1, 13, 0, tzinfo=UTC))


def test_us_number_in_many_zones_takes_the_most_restrictive_reading() -> None:
    at = datetime(2026, 11, 23, 12, 0, tzinfo=NEW_YORK)  # 03:00 next day in Guam, 07:00 in Honolulu
    assert gate("us").evaluate(subject(US_NYC), at).allowed
    decision = gate("us").evaluate(subject(US_TOLL_FREE), at)
    assert not decision.allowed
    assert decision.next_allowed_at is not None
    assert gate("us").evaluate(subject(US_TOLL_FREE), decision.next_allowed_at).allowed
    assert not gate("us").evaluate(subject(US_TOLL_FREE), decision.next_allowed_at - timedelta(seconds=1)).allowed


def test_next_allowed_time_rereads_zones_that_agreed_until_a_dst_change() -> None:
    # A Colombian number at an address in New York: on Sunday 8 March 2026 at 00:00 UTC both zones read UTC-5,
    # by Monday morning New York is on EDT (UTC-4). Monday opens at 07:00 in Bogotá (12:00 UTC), which is
    # 08:00 in New York, not New York's 07:00 (11:00 UTC, 06:00 in Bogotá).
    debtor = subject(CO_MOBILE, timezone="America/New_York")
    decision = gate("co").evaluate(debtor, datetime(2026, 3, 8, 0, 0, tzinfo=UTC))
    denied(decision, Reason.OUTSIDE_CONTACT_WINDOW, until=datetime(2026, 3, 9, 7, 0, tzinfo=BOGOTA))
    assert gate("co").evaluate(debtor, datetime(2026, 3, 9, 7, 0, tzinfo=BOGOTA)).allowed


def test_us_address_zone_beats_the_area_code() -> None:
    at = datetime(2026, 11, 23, 21, 30, tzinfo=NEW_YORK)  # 18:30 in Los Angeles
    assert not gate("us").evaluate(subject(US_NYC), at).allowed
    assert gate("us").evaluate(subject(US_NYC, timezone="America/Los_Angeles"), at).allowed


def test_reg_f_seven_calls_in_seven_days() -> None:
    monday = datetime(2026, 11, 23, 10, 0, tzinfo=NEW_YORK)
    calls = history(*[(monday + timedelta(days=d // 2, hours=d % 2), CALL, False) for d in range(7)], phone=US_NYC)
    friday = monday + timedelta(days=4)
    decision = gate("us").evaluate(subject(US_NYC, history=calls), friday)
    # the oldest call (Monday) leaves the 7 consecutive days at the start of the next Monday
    denied(decision, Reason.FREQUENCY_CAP, until=datetime(2026, 11, 30, 8, 0, tzinfo=NEW_YORK))
    six = History(calls.contacts[:6])
    assert gate("us").evaluate(subject(US_NYC, history=six), friday).allowed


def test_reg_f_quiet_week_after_a_conversation() -> None:
    monday = datetime(2026, 11, 23, 10, 0, tzinfo=NEW_YORK)
    talked = history((monday, CALL, True), phone=US_NYC)
    decision = gate("us").evaluate(subject(US_NYC, history=talked), datetime(2026, 11, 29, 20, 0, tzinfo=NEW_YORK))
    # the conversation's date is day 1: Monday to Sunday are quiet
    denied(decision, Reason.QUIET_AFTER_CONVERSATION, until=datetime(2026, 11, 30, 8, 0, tzinfo=NEW_YORK))
    text = subject(US_NYC, channel=SMS, history=talked, text="Reply STOP to opt out")
    assert gate("us").evaluate(text, monday + timedelta(days=1)).allowed


def test_reg_f_texts_need_an_opt_out() -> None:
    at = datetime(2026, 11, 23, 10, 0, tzinfo=NEW_YORK)
    bare = gate("us").evaluate(subject(US_NYC, channel=SMS, text="Please call us about your account"), at)
    denied(bare, Reason.OPT_OUT_NOTICE_MISSING, until=None)
    assert gate("us").evaluate(subject(US_NYC, channel=SMS, text="Pay today. Reply stop to opt out."), at).allowed


US_WORK = "+16175550188"
PERSONAL, WORK = LineType.PERSONAL, LineType.WORK


def test_massachusetts_two_calls_or_texts_a_week_to_personal_numbers() -> None:
    monday = datetime(2026, 11, 23, 10, 0, tzinfo=NEW_YORK)
    two = history((monday, CALL, False), (monday + timedelta(days=1), SMS, False), phone=US_NYC)
    wednesday = monday + timedelta(days=2)
    personal = {US_NYC: PERSONAL}
    assert gate("us").evaluate(subject(US_NYC, history=two), wednesday).allowed
    decision = gate("us-ma").evaluate(subject(US_NYC, history=two, line_types=personal), wednesday)
    # Monday's call leaves the seven-day period at the start of the next Monday: one contact left then
    denied(decision, Reason.FREQUENCY_CAP, until=datetime(2026, 11, 30, 8, 0, tzinfo=NEW_YORK))
    assert decision.rules == ("ma.940cmr.7_04_1_f.personal",)


def test_massachusetts_two_in_thirty_days_to_a_work_number() -> None:
    monday = datetime(2026, 11, 2, 10, 0, tzinfo=NEW_YORK)
    two = history((monday, CALL, False), (monday + timedelta(days=1), CALL, False), phone=US_WORK)
    lines = {US_NYC: PERSONAL, US_WORK: WORK}
    later = monday + timedelta(days=20)
    decision = gate("us-ma").evaluate(subject(US_WORK, history=two, line_types=lines), later)
    # Monday 2 November leaves the 30 local days at the start of 2 December
    denied(decision, Reason.FREQUENCY_CAP, until=datetime(2026, 12, 2, 8, 0, tzinfo=NEW_YORK))
    assert decision.rules == ("ma.940cmr.7_04_1_f.other",)
    # the work calls do not count against the personal number, nor the other way round
    assert gate("us-ma").evaluate(subject(US_NYC, history=two, line_types=lines), later).allowed
    personal_two = history((monday, CALL, False), (monday + timedelta(days=1), CALL, False), phone=US_NYC)
    assert gate("us-ma").evaluate(subject(US_WORK, history=personal_two, line_types=lines), later).allowed


def test_massachusetts_unknown_line_type_gets_both_caps_and_counts_for_both() -> None:
    monday = datetime(2026, 11, 2, 10, 0, tzinfo=NEW_YORK)
    to_unknown = history((monday, CALL, False), (monday + timedelta(days=1), SMS, False), phone=US_NYC)
    later = monday + timedelta(days=20)
    # the number itself, type unknown: the 30-day cap of non-personal numbers holds it
    denied(
        gate("us-ma").evaluate(subject(US_NYC, history=to_unknown), later),
        Reason.FREQUENCY_CAP,
        until=datetime(2026, 12, 2, 8, 0, tzinfo=NEW_YORK),
    )
    # contacts to a number of unknown type count against the debtor's work number too
    lines = {US_WORK: WORK}
    decision = gate("us-ma").evaluate(subject(US_WORK, history=to_unknown, line_types=lines), later)
    assert decision.rules == ("ma.940cmr.7_04_1_f.other",)
    # ... and against a personal number within the week
    tuesday = monday + timedelta(days=1, hours=2)
    decision = gate("us-ma").evaluate(subject(US_WORK, history=to_unknown, line_types={US_WORK: PERSONAL}), tuesday)
    assert decision.rules == ("ma.940cmr.7_04_1_f.personal",)


# --- core rules, policies and the only bypass ------------------------------------------------------

MORNING = datetime(2026, 11, 23, 10, 0, tzinfo=BOGOTA)


@pytest.mark.parametrize(
    ("status", "reason"),
    [("withdrawn", Reason.ACCOUNT_WITHDRAWN), ("paid", Reason.ACCOUNT_PAID), ("frozen", Reason.ACCOUNT_NOT_ACTIVE)],
)
def test_closed_accounts_are_denied_for_good(status: str, reason: Reason) -> None:
    denied(gate().evaluate(subject(account_status=status), MORNING), reason, until=None)


def test_opt_out_is_per_channel() -> None:
    opted = subject(opted_out=frozenset({SMS}))
    assert gate().evaluate(opted, MORNING).allowed
    denied(
        gate().evaluate(subject(channel=SMS, opted_out=frozenset({SMS})), MORNING), Reason.DEBTOR_OPT_OUT, until=None
    )


def test_every_reason_is_listed_and_a_permanent_one_leaves_no_next_time() -> None:
    late = datetime(2026, 11, 23, 22, 0, tzinfo=BOGOTA)
    decision = gate().evaluate(subject(opted_out=frozenset({CALL})), late)
    denied(decision, Reason.DEBTOR_OPT_OUT, Reason.OUTSIDE_CONTACT_WINDOW, until=None)


def test_promise_to_pay_holds_collection_until_its_date_has_passed() -> None:
    promised = subject(history=History(promise_due=date(2026, 11, 30)))
    decision = gate("mx").evaluate(replace_phone(promised, MX_CDMX), datetime(2026, 11, 30, 20, 0, tzinfo=MEXICO))
    denied(decision, Reason.PROMISE_TO_PAY_PENDING, until=datetime(2026, 12, 1, 7, 0, tzinfo=MEXICO))
    confirmation = replace_phone(promised, MX_CDMX, channel=SMS, purpose=Purpose.PROMISE_CONFIRMATION)
    assert gate("mx").evaluate(confirmation, datetime(2026, 11, 23, 10, 0, tzinfo=MEXICO)).allowed


def replace_phone(base: Subject, phone: str, **changes: object) -> Subject:
    from dataclasses import replace

    return replace(base, phone=phone, **changes)  # type: ignore[arg-type]


def test_test_numbers_are_the_only_bypass_and_never_with_an_account() -> None:
    night = datetime(2026, 11, 29, 23, 0, tzinfo=BOGOTA)  # Sunday night
    it_check = gate(test_numbers=[CO_MOBILE])
    decision = it_check.evaluate(subject(account_ref=None, account_status=None), night)
    assert decision.allowed
    assert decision.test_number
    assert decision.explain() == "allowed (test number)"
    assert not it_check.evaluate(subject(), night).allowed  # about an account: the law applies
    assert not gate().evaluate(subject(account_ref=None, account_status=None), night).allowed


def test_portfolio_selects_its_pack_and_another_country_gets_its_own() -> None:
    two_in_a_week = history(
        (MORNING - timedelta(days=1), CALL, False), (MORNING - timedelta(hours=1), CALL, False), phone=US_NYC
    )
    us_gate = gate("us", portfolios={"BANK/MA-2026": "us-ma"})
    at = datetime(2026, 11, 23, 12, 0, tzinfo=NEW_YORK)
    assert us_gate.evaluate(subject(US_NYC, history=two_in_a_week), at).allowed
    ma = us_gate.evaluate(subject(US_NYC, history=two_in_a_week, portfolio="BANK/MA-2026"), at)
    assert ma.pack == "us-ma"
    assert not ma.allowed
    saturday = datetime(2026, 11, 28, 10, 0, tzinfo=LIMA)
    peruvian = gate().evaluate(subject(PE_LIMA, country="PE"), saturday)
    assert peruvian.pack == "pe"
    assert not peruvian.allowed
    assert gate().evaluate(subject(PE_LIMA), saturday).allowed  # the site's Colombian pack allows Saturday
    nowhere = gate().evaluate(subject(country="EC"), MORNING)
    denied(nowhere, Reason.NO_LAW_PACK, until=None)


def test_site_rules_only_add_to_the_law() -> None:
    three_a_day = FrequencyRule(kind="frequency", channels=("call",), max=2, days=1)
    strict = gate(local=[("site.two_calls_a_day", three_a_day)])
    calls = history((MORNING - timedelta(hours=2), CALL, False), (MORNING - timedelta(hours=1), CALL, False))
    assert gate().evaluate(subject(history=calls), MORNING).allowed
    decision = strict.evaluate(subject(history=calls), MORNING)
    denied(decision, Reason.FREQUENCY_CAP, until=datetime(2026, 11, 24, 7, 0, tzinfo=BOGOTA))
    assert decision.rules == ("site.two_calls_a_day",)


def test_counting_by_number_when_there_is_no_account() -> None:
    other_debt = Contact(MORNING.timestamp() - 3600, CALL, CO_MOBILE, False, False)
    seen = History((other_debt, other_debt))
    cap = FrequencyRule(kind="frequency", channels=("call",), max=2, days=1)
    strict = gate(local=[("site.cap", cap)])
    assert strict.evaluate(subject(history=seen), MORNING).allowed  # another account's debt
    assert not strict.evaluate(subject(account_ref=None, account_status=None, history=seen), MORNING).allowed
    by_phone = FrequencyRule(kind="frequency", channels=("call",), max=2, days=1, scope="phone")
    assert not gate(local=[("site.cap", by_phone)]).evaluate(subject(history=seen), MORNING).allowed
