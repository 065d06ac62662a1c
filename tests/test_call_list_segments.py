"""Segments by days past due (tramos de mora) and their quotas in the campaign's list: every account's segment in
why it is called, and each segment with a quota given its share of the value-ordered calls."""

from __future__ import annotations

from collections.abc import Callable
from datetime import date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from pydantic import ValidationError

from cartera.contact.listing import Candidate, rank
from cartera.contact.reach import ReachModel
from cartera.contact.segments import Segment, by_quota, segment_of
from cartera.core.config import ListingConfig
from cartera.node import Node
from tests.conftest import write_sites

BOGOTA = ZoneInfo("America/Bogota")
MONDAY_10 = datetime(2026, 11, 23, 10, tzinfo=BOGOTA)


@pytest.mark.parametrize(
    ("days", "segment"),
    [
        *[(None, None), (-5, None), (0, None), (1, "1-30"), (30, "1-30"), (31, "31-60"), (60, "31-60")],
        *[(61, "61-90"), (90, "61-90"), (91, "91-180"), (180, "91-180"), (181, "180+"), (5000, "180+")],
    ],
)
def test_the_segment_of_days_past_due(days: int | None, segment: Segment | None) -> None:
    assert segment_of(days) == segment


def test_quotas_interleave_the_segments_each_in_its_own_order() -> None:
    items: list[tuple[str, Segment | None]] = [
        ("a", "180+"),
        ("b", "180+"),
        ("c", "180+"),
        ("d", "1-30"),
        ("e", None),
        ("f", "1-30"),
    ]

    def segment(item: tuple[str, Segment | None]) -> Segment | None:
        return item[1]

    def names(found: list[tuple[str, Segment | None]]) -> str:
        return "".join(name for name, _ in found)

    assert names(by_quota(items, segment, {})) == "abcdef"  # no quotas: as given
    # half the places to 1-30; 180+ and the account of no segment share the other half, in value order
    assert names(by_quota(items, segment, {"1-30": 0.5})) == "adbfce"
    # 1-30 takes all the places it can: the others follow once it ran out
    assert names(by_quota(items, segment, {"1-30": 1.0})) == "dfabce"
    # a quarter each: the account of no segment is owed the other half, so it comes first
    assert names(by_quota(items, segment, {"180+": 0.25, "1-30": 0.25})) == "eadbfc"


def test_quotas_are_shares_of_the_calls_on_known_segments() -> None:
    assert ListingConfig.model_validate({"segment_quotas": {"1-30": 0.6, "180+": 0.4}}).segment_quotas["1-30"] == 0.6
    with pytest.raises(ValidationError, match=r"add up to 1\.1: at most 1"):
        ListingConfig.model_validate({"segment_quotas": {"1-30": 0.6, "180+": 0.5}})
    with pytest.raises(ValidationError, match="segment '31-60': a quota is a share of the calls, above 0"):
        ListingConfig.model_validate({"segment_quotas": {"31-60": 0}})
    with pytest.raises(ValidationError, match="segment_quotas"):
        ListingConfig.model_validate({"segment_quotas": {"1-29": 0.5}})


def _candidate(n: int, balance: int, due_on: date | None) -> Candidate:
    return Candidate(n, f"C-{n}", Decimal(balance), "COP", (f"+57300000000{n}",), BOGOTA, due_on=due_on)


def test_rank_says_the_days_past_due_and_gives_each_segment_its_quota() -> None:
    today = MONDAY_10.date()
    old, older, recent = today - timedelta(days=200), today - timedelta(days=400), today - timedelta(days=45)
    candidates = [_candidate(1, 900_000, old), _candidate(2, 800_000, older), _candidate(3, 1_000, recent)]
    by_value = rank(candidates, ReachModel(), MONDAY_10)
    assert [pick.ref for pick in by_value] == ["C-1", "C-2", "C-3"]
    assert by_value[0].why.endswith("; 200 days past due (tramo 180+)")
    assert [pick.segment for pick in by_value] == ["180+", "180+", "31-60"]
    quota = rank(candidates, ReachModel(), MONDAY_10, ListingConfig(segment_quotas={"31-60": 0.5}))
    assert [pick.ref for pick in quota] == ["C-1", "C-3", "C-2"]
    not_due = rank([_candidate(4, 10, today + timedelta(days=3))], ReachModel(), MONDAY_10)[0]
    assert (not_due.segment, not_due.why.endswith("; 0 days past due")) == (None, True)


def test_rank_weighs_each_account_by_its_segments_chance_of_payment() -> None:
    """P(payment | segment): 900,000 at 200 days past due (7%) is worth less than 300,000 at 10 days (40%); an
    account not past due counts at the mean chance given; without the setting, balance alone orders them."""
    today = MONDAY_10.date()
    recent, old = (
        _candidate(1, 300_000, today - timedelta(days=10)),
        _candidate(2, 900_000, today - timedelta(days=200)),
    )
    not_due = _candidate(3, 100_000, None)
    config = ListingConfig(payment_by_segment={"1-30": 0.4, "180+": 0.07})
    assert [pick.ref for pick in rank([old, recent, not_due], ReachModel(), MONDAY_10)] == ["C-2", "C-1", "C-3"]
    ranked = rank([old, recent, not_due], ReachModel(), MONDAY_10, config)
    assert [pick.ref for pick in ranked] == ["C-1", "C-2", "C-3"]
    per_peso = {pick.ref: pick.value / balance for pick, balance in zip(ranked, (3e5, 9e5, 1e5), strict=True)}
    assert per_peso["C-2"] / per_peso["C-1"] == pytest.approx(0.07 / 0.4)
    assert per_peso["C-3"] / per_peso["C-1"] == pytest.approx((0.4 + 0.07) / 2 / 0.4)
    assert "x P(payment) 0.40; 10 days past due (tramo 1-30)" in ranked[0].why
    with pytest.raises(ValidationError, match="segment '31-60': a chance of payment is above 0 and at most 1"):
        ListingConfig.model_validate({"payment_by_segment": {"31-60": 1.5}})


def test_the_campaign_queue_works_the_segments_by_their_quotas(tmp_path: Path, open_node: Callable[..., Node]) -> None:
    """Days past due from the creditor's file, the segment's quota in the site's config, the queue's order."""
    path = write_sites(tmp_path, extra='\n[sites.t.campaign.listing]\nsegment_quotas = { "1-30" = 0.5 }\n')
    (tmp_path / "inbox" / "asignacion.csv").write_text(
        "cuenta;nombre;telefono1;saldo;dias_mora\n"
        "V-1;Ana Uno;3001110001;900000;200\n"
        "V-2;Beto Dos;3001110002;800000;400\n"
        "R-1;Caro Tres;3001110003;1000;12\n",
        encoding="utf-8",
    )
    node = open_node(path)
    node.creditor_sync().run_once()
    now = node.clock.now()
    picks = node.call_list.queue(now, 2, max_attempts_per_day=3)
    assert [pick.ref for pick in picks] == ["V-1", "R-1"]  # without the quota: V-1, V-2
    assert picks[1].why.endswith("; 12 days past due (tramo 1-30)")
