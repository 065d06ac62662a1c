"""One creditor row applied to a chunk's picture of its accounts: its checks (identity, free text, country,
phones, region and zone) and what it does (new, update, withdrawal, payment), idempotent: a row that changes
nothing is ``unchanged``, a payment reported again is not applied twice."""

from __future__ import annotations

import enum
from collections.abc import Callable
from datetime import date, timedelta
from decimal import Decimal

import phonenumbers

from cartera.contact.compliance.calendar import check_address_zone, check_region, check_zone
from cartera.contact.phones import InvalidPhone
from cartera.core.control_characters import control_problem
from cartera.core.models import PAYMENT_REF_MAX, AssignmentAction, AssignmentRow, RowError
from cartera.portfolio.chunk_state import AccountState, ChunkState, Payment, PortfolioInfo
from cartera.portfolio.files.phones import PhoneNormalizer
from cartera.portfolio.identity import code_problem

CENT = Decimal("0.01")
#: The longest region and time zone a row may give: what the store keeps (``debtors.region``, ``debtors.timezone``);
#: a longer value quarantines its row unchecked, its value neither repeated in the reason nor cached.
REGION_MAX = 8
TIMEZONE_MAX = 64
#: The most (region, time zone) answers :class:`RowChecks` keeps: full, it starts over (a creditor's unique values
#: cannot grow the node-lifetime importer without end).
PLACES_LIMIT = 10_000


class Applied(enum.Enum):
    """What an applied row did, as the import's report counts it."""

    NEW = "new"
    UPDATED = "updated"
    UNCHANGED = "unchanged"
    WITHDRAWN = "withdrawn"
    PAYMENT = "payments"


class RowChecks:
    """The checks of a row's phones and place, their answers kept per value (at most :data:`PLACES_LIMIT` places);
    ``law_country`` gives the country of the law pack a portfolio (``CREDITOR/PORTFOLIO``, its country) is held to."""

    def __init__(self, law_country: Callable[[str, str], str | None] | None) -> None:
        self.law_country = law_country
        self._phones: dict[str, PhoneNormalizer] = {}
        self._places: dict[
            tuple[str | None, str | None, tuple[str, ...]], tuple[str | None, str | None] | RowError
        ] = {}
        self._countries: dict[int, tuple[str, ...]] = {}

    def phones(self, country: str) -> PhoneNormalizer:
        normalizer = self._phones.get(country)
        if normalizer is None:
            normalizer = self._phones[country] = PhoneNormalizer(country)
        return normalizer

    def countries(self, portfolio: PortfolioInfo) -> tuple[str, ...]:
        """The countries whose zones a debtor of ``portfolio`` may be in: its own, and its law pack's."""
        found = self._countries.get(portfolio.id)
        if found is None:
            law = (
                self.law_country(f"{portfolio.creditor}/{portfolio.code}", portfolio.country)
                if self.law_country
                else None
            )
            found = self._countries[portfolio.id] = tuple(sorted({portfolio.country, law or portfolio.country}))
        return found

    def place(self, row: AssignmentRow, countries: tuple[str, ...]) -> tuple[str | None, str | None] | RowError:
        """The row's checked (region, time zone), or the error of the first bad one (cached per value pair): the
        zone must be a real one of ``countries`` (and of the region's country), never ``posixrules``..."""
        for name, value, most in (("region", row.region, REGION_MAX), ("timezone", row.timezone, TIMEZONE_MAX)):
            if value is not None and len(value) > most:
                return RowError(0, name, f"a {name} of {len(value)} characters: at most {most}")
        key = (row.region, row.timezone, countries)
        found = self._places.get(key)
        if found is None:
            try:
                region = check_region(row.region)
            except ValueError as exc:
                found = RowError(0, "region", str(exc))
            else:
                try:
                    found = (region, check_address_zone(check_zone(row.timezone), countries, region))
                except ValueError as exc:
                    found = RowError(0, "timezone", str(exc))
            if len(self._places) >= PLACES_LIMIT:
                self._places.clear()
            self._places[key] = found
        return found


def identified(item: AssignmentRow | RowError) -> AssignmentRow | RowError:
    """The row, or its error when its creditor, portfolio or account ref breaks
    :data:`cartera.portfolio.identity.CODE_PATTERN`
    (what searches and references accept), or its free text (name, currency, payment ref) holds a control
    character, bidi override or invisible format character (:func:`cartera.portfolio.files.values.control_problem`),
    or its ``country`` (how its phones read) is no country phonenumbers knows, or its payment ref is longer than
    :data:`cartera.core.models.PAYMENT_REF_MAX` (what the store keeps, whole): every import path gets them all."""
    if isinstance(item, RowError):
        return item
    for name, value in (("creditor", item.creditor), ("portfolio", item.portfolio), ("account_ref", item.account_ref)):
        problem = code_problem(value)
        if problem is not None:
            return RowError(item.line, name, problem)
    if item.payment_ref is not None and len(item.payment_ref) > PAYMENT_REF_MAX:
        reason = f"a payment reference of {len(item.payment_ref)} characters: at most {PAYMENT_REF_MAX}"
        return RowError(item.line, "payment_ref", reason)
    free_text = (("debtor_name", item.debtor_name), ("currency", item.currency), ("payment_ref", item.payment_ref))
    for name, text_value in free_text:
        problem = control_problem(text_value) if text_value else None
        if problem is not None:
            return RowError(item.line, name, problem)
    if item.country is not None and item.country not in phonenumbers.SUPPORTED_REGIONS:
        return RowError(item.line, "country", f"unknown country {item.country!r} (use an ISO 3166 code like CO)")
    return item


def apply_row(
    row: AssignmentRow, portfolio: PortfolioInfo, state: ChunkState, checks: RowChecks, today: date
) -> Applied | RowError:
    """Apply ``row`` (of ``portfolio``) to ``state`` on the import's day ``today`` (days past due count back from
    it, a payment may not be dated after it; a payment or balance must be in the account's currency): what it did, or
    why it is quarantined."""
    account = state.accounts.get((portfolio.id, row.account_ref))
    if row.action is AssignmentAction.WITHDRAW:
        if account is None:
            return RowError(row.line, "account_ref", f"withdrawal of unknown account {row.account_ref!r}")
        if account.status == "withdrawn":
            return Applied.UNCHANGED
        account.status, account.dirty = "withdrawn", True
        return Applied.WITHDRAWN
    if row.action is AssignmentAction.PAYMENT:
        if account is None or row.payment_amount is None:
            return RowError(row.line, "account_ref", f"payment for unknown account {row.account_ref!r}")
        if row.paid_on is not None and row.paid_on > today:
            return RowError(row.line, "paid_on", f"payment dated {row.paid_on}, after the day of import {today}")
        if row.currency != account.currency:
            return _other_currency(row, account)
        return _pay(row, row.payment_amount.quantize(CENT), account, state)
    if account is None and row.action is AssignmentAction.UPDATE:
        return RowError(row.line, "account_ref", f"update of unknown account {row.account_ref!r}")
    if account is not None and row.currency != account.currency:
        return _other_currency(row, account)
    phones = _phones(row, checks.phones(row.country or portfolio.country))
    if isinstance(phones, RowError):
        return phones
    place = checks.place(row, checks.countries(portfolio))
    if isinstance(place, RowError):
        return RowError(row.line, place.field, place.reason)
    region, zone = place
    balance = row.balance.quantize(CENT)
    due_on = row.due_on
    if due_on is None and row.days_past_due is not None:
        due_on = today - timedelta(days=row.days_past_due)
    if account is None:
        account = AccountState(
            None,
            portfolio,
            row.account_ref,
            None,
            row.debtor_name,
            region,
            zone,
            balance,
            row.currency,
            "active",
            phones,
            due_on,
            row.risk_score,
        )
        state.accounts[(portfolio.id, row.account_ref)] = account
        state.created.append(account)
        return Applied.NEW
    due_on = account.due_on if due_on is None else due_on  # a file without the column keeps the stored day
    score = account.risk_score if row.risk_score is None else row.risk_score
    wanted = (row.debtor_name, region, zone, balance, row.currency, "active", phones, due_on, score)
    if (
        account.name,
        account.region,
        account.timezone,
        account.balance,
        account.currency,
        account.status,
        account.phones,
        account.due_on,
        account.risk_score,
    ) == wanted:
        return Applied.UNCHANGED
    account.phones_changed = account.phones_changed or account.phones != phones
    account.name, account.region, account.timezone, account.balance, account.currency, account.status = wanted[:6]
    account.phones, account.due_on, account.risk_score = phones, due_on, score
    account.dirty = True
    return Applied.UPDATED


def _pay(row: AssignmentRow, amount: Decimal, account: AccountState, state: ChunkState) -> Applied:
    key = _payment_key(row, amount)
    if key is not None and not row.payment_ref:  # the n-th of its day and amount in this file: the n-th payment
        seen = (account.portfolio.id, account.ref, key)
        count = state.unreferenced[seen] = state.unreferenced.get(seen, 0) + 1
        key = key if count == 1 else f"{key}#{count}"
    if key is not None and key in account.payment_keys:
        return Applied.UNCHANGED
    if key is not None:
        account.payment_keys.add(key)
    account.balance -= amount
    if account.balance <= 0:
        account.status = "paid"
    account.dirty = True
    state.payments.append(Payment(account, row, amount, key))
    return Applied.PAYMENT


def _other_currency(row: AssignmentRow, account: AccountState) -> RowError:
    """A payment or balance in another currency than the account's: never applied as the account's (100 USD is not
    100 COP), nor does a row change an account's currency; no rate is guessed."""
    reason = f"an amount in {row.currency} for an account in {account.currency}: not applied (no conversion is guessed)"
    return RowError(row.line, "currency", reason)


def _phones(row: AssignmentRow, normalize: PhoneNormalizer) -> list[str] | RowError:
    """The row's phones in E.164, each once, in the row's order; at least one."""
    phones: list[str] = []
    for position, raw in enumerate(row.phones, 1):
        try:
            e164 = normalize(raw)
        except InvalidPhone as exc:
            return RowError(row.line, f"phone{position}", str(exc))
        if e164 not in phones:
            phones.append(e164)
    if not phones:
        return RowError(row.line, "phones", "no phone number")
    return phones


def _payment_key(row: AssignmentRow, amount: Decimal) -> str | None:
    """What recognises the payment when it is reported again (``reported_payments.key``, 128 characters): its whole
    reference, never cut (two references sharing a prefix are two payments), else its day and amount (numbered
    by :func:`_pay` when one file holds several: two installments of one day are two payments)."""
    if row.payment_ref:
        if len(row.payment_ref) > PAYMENT_REF_MAX:  # identified() quarantines such a row before it is applied
            raise ValueError(f"a payment reference of {len(row.payment_ref)} characters: at most {PAYMENT_REF_MAX}")
        return f"ref:{row.payment_ref}"
    if row.paid_on is not None:
        return f"day:{row.paid_on.isoformat()}:{amount}"
    return None
