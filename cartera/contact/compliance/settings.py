"""The ``[sites.X.compliance]`` section: the site's law pack, authorised channels, stricter local rules and
test numbers, validated against the law packs by :func:`cartera.contact.compliance.validate`."""

from __future__ import annotations

from datetime import time
from typing import Literal

import phonenumbers
from pydantic import BaseModel, ConfigDict, field_validator, model_validator

from cartera.contact.compliance.packs import ChannelName, LocalRule, WindowRule


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class ContactWindow(_Section):
    """The site's own contact hours in the debtor's local time, on the listed weekdays (within the law's)."""

    start: time = time(8, 0)
    end: time = time(19, 0)
    days: tuple[Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"], ...] = (
        "mon",
        "tue",
        "wed",
        "thu",
        "fri",
        "sat",
    )

    @model_validator(mode="after")
    def _ordered(self) -> ContactWindow:
        if self.start >= self.end:
            raise ValueError("start must be before end")
        return self

    def as_rule(self) -> WindowRule:
        interval = f"{self.start:%H:%M}-{self.end:%H:%M}"
        return WindowRule(kind="window", hours=dict.fromkeys(self.days, interval), summary="the site's window")


class PortfolioCompliance(_Section):
    """One portfolio's law pack and authorised channels, when they differ from the site's."""

    law_pack: str | None = None
    authorised_channels: tuple[ChannelName, ...] | None = None


class ComplianceConfig(_Section):
    """The law pack portfolios get (default: the site country's), what debtors authorised, stricter local
    rules, and the only bypass: test numbers for IT checks (E.164), each use audited as such."""

    law_pack: str | None = None
    authorised_channels: tuple[ChannelName, ...] | None = None
    contact_window: ContactWindow | None = None
    rules: tuple[LocalRule, ...] = ()
    portfolios: dict[str, PortfolioCompliance] = {}
    test_numbers: tuple[str, ...] = ()

    @field_validator("test_numbers")
    @classmethod
    def _e164(cls, numbers: tuple[str, ...]) -> tuple[str, ...]:
        for number in numbers:
            try:
                parsed = phonenumbers.parse(number)
            except phonenumbers.NumberParseException:
                parsed = None
            e164 = phonenumbers.PhoneNumberFormat.E164
            if (
                parsed is None
                or not phonenumbers.is_valid_number(parsed)
                or phonenumbers.format_number(parsed, e164) != number
            ):
                raise ValueError(f"{number!r} is not a valid number in E.164 form, like '+573001234567'")
        return numbers
