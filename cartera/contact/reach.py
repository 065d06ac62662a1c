"""P(reaching the debtor) on a number at an hour of the week, learned from the node's own calls.

Three levels, each a Beta-smoothed rate shrunk toward the one above (empirical Bayes): the site's overall rate;
the site's rate at each local hour of the week (its pattern, which a new list starts from); a number's rate at
an hour, whose prior is the site's rate at that hour times the number's lift (how much more or less often than
the site's pattern predicts the number was reached at all hours, itself shrunk toward 1). A number that never
answers in the morning but does in the evening is called in the evening.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime, tzinfo
from zoneinfo import ZoneInfo

from sqlalchemy import select
from sqlalchemy.orm import Session

from cartera.core.models import CallOutcome
from cartera.core.store.schema import Account, ContactAttempt, Debtor

HOURS_OF_WEEK = 7 * 24
#: Outcomes that say whether someone picks up the number at that hour (not the network's failures).
TELLING = (CallOutcome.ANSWERED, CallOutcome.NO_ANSWER, CallOutcome.BUSY, CallOutcome.REJECTED, CallOutcome.MACHINE)


def hour_of_week(moment: datetime, zone: tzinfo) -> int:
    """0 (Monday 00:00-00:59) to 167 (Sunday 23:00-23:59), in ``zone``."""
    local = moment.astimezone(zone)
    return local.weekday() * 24 + local.hour


def week_hour_label(hour: int) -> str:
    return f"{('Mon', 'Tue', 'Wed', 'Thu', 'Fri', 'Sat', 'Sun')[hour // 24]} {hour % 24:02d}h"


@dataclass
class _Tally:
    tries: int = 0
    reached: int = 0


@dataclass(frozen=True)
class Reach:
    """A number's estimate at an hour, with what it rests on (for ``campaign queue``)."""

    probability: float
    site_rate: float  #: the site's rate at that hour of the week
    lift: float  #: the number's reach relative to the site's pattern (1: like the site, or unknown)
    tries: int  #: the number's calls at that hour of the week
    reached: int  #: of which reached the debtor

    def explain(self) -> str:
        return (
            f"P(contact) {self.probability:.0%} (site {self.site_rate:.0%} at this hour, number x{self.lift:.2f}, "
            f"{self.reached}/{self.tries} here)"
        )


class ReachModel:
    """Counts of calls and debtors reached, by hour of the week, for the site and per number; ``hour_strength`` is
    how many calls the site's overall rate weighs in an hour's rate, ``number_strength`` how many calls the site's
    pattern weighs in a number's (per hour and in its lift)."""

    def __init__(self, *, hour_strength: float = 20.0, number_strength: float = 3.0) -> None:
        self.hour_strength, self.number_strength = hour_strength, number_strength
        self._site = _Tally()
        self._hours = [_Tally() for _ in range(HOURS_OF_WEEK)]
        self._numbers: dict[str, dict[int, _Tally]] = defaultdict(dict)

    def observe(self, phone: str, hour: int, reached: bool) -> None:
        """One call to ``phone`` at ``hour`` of the week, and whether it reached the debtor."""
        for tally in (self._site, self._hours[hour], self._numbers[phone].setdefault(hour, _Tally())):
            tally.tries += 1
            tally.reached += reached

    def site_rate(self, hour: int) -> float:
        overall = (self._site.reached + 1) / (self._site.tries + 2)
        tally = self._hours[hour]
        return (tally.reached + self.hour_strength * overall) / (tally.tries + self.hour_strength)

    def lift(self, phone: str) -> float:
        """Reached over what the site's pattern expected at the hours the number was called, shrunk toward 1."""
        hours = self._numbers.get(phone, {})
        expected = sum(tally.tries * self.site_rate(hour) for hour, tally in hours.items())
        reached = sum(tally.reached for tally in hours.values())
        return (reached + self.number_strength) / (expected + self.number_strength)

    def reach(self, phone: str, hour: int) -> Reach:
        site = self.site_rate(hour)
        lift = self.lift(phone)
        tally = self._numbers.get(phone, {}).get(hour, _Tally())
        prior = min(site * lift, 1.0)
        probability = (tally.reached + self.number_strength * prior) / (tally.tries + self.number_strength)
        return Reach(probability, site, lift, tally.tries, tally.reached)


def learn(session: Session, *, site: str, zone: ZoneInfo, since: datetime, model: ReachModel) -> ReachModel:
    """``model`` fed with the site's finished calls to accounts since ``since``, each at the local hour of the week
    of its debtor (the site's zone when the creditor gave none). Reached: answered, and no disposition saying it
    was not the right party."""
    rows = session.execute(
        select(ContactAttempt.phone, ContactAttempt.requested_at, ContactAttempt.outcome, ContactAttempt.right_party)
        .add_columns(Debtor.timezone)
        .join(Account, ContactAttempt.account_id == Account.id)
        .join(Debtor, Account.debtor_id == Debtor.id)
        .where(
            ContactAttempt.site == site,
            ContactAttempt.state == "finished",
            ContactAttempt.requested_at >= since,
            ContactAttempt.outcome.in_([outcome.value for outcome in TELLING]),
        )
    ).all()
    zones: dict[str | None, tzinfo] = {None: zone}
    for phone, at, outcome, right_party, timezone in rows:
        if timezone not in zones:
            zones[timezone] = ZoneInfo(timezone)
        reached = outcome == CallOutcome.ANSWERED.value and right_party is not False
        model.observe(phone, hour_of_week(at, zones[timezone]), reached)
    return model
