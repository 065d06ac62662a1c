"""The abandonment rate (abandoned / answered by a person, over the campaign's window) as the summary, the KPIs,
the wallboard and ``/metrics`` read it from the store."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa

from cartera.cli.summary import site_summary
from cartera.contact.abandonment import abandonment_rate
from cartera.contact.compliance import Reason
from cartera.core.config import AbandonmentConfig
from cartera.core.errors import ConfigError
from cartera.core.models import CallOutcome, Channel
from cartera.core.store.schema import Account, ContactAttempt
from cartera.node import Node
from cartera.portfolio.identity import PortfolioKey
from cartera.runtime.kpis import daily_kpis
from cartera.web.context import Web
from cartera.web.health import StoreCollector
from cartera.web.wallboard import board
from tests.conftest import write_portfolio, write_sites

ANA = "+573001234567"


@pytest.fixture
def node(tmp_path: Path, open_node: Callable[..., Node]) -> Node:
    """Site ``t`` with account BCO-1 and its calls: today 3 connected, 1 abandoned, 1 unanswered; one abandoned
    31 days ago (outside the 30-day window)."""
    path = write_sites(tmp_path)
    write_portfolio(tmp_path / "inbox", [f"BCO-1;Ana Gómez;{ANA};;1.000.000,00;COP"])
    node = open_node(path)
    node.creditor_sync().run_once()
    now = node.clock.now()
    calls = [(now, CallOutcome.ANSWERED)] * 3 + [(now, CallOutcome.ABANDONED), (now, CallOutcome.NO_ANSWER)]
    calls.append((now - timedelta(days=31), CallOutcome.ABANDONED))
    with node.db.session() as session:
        account_id = session.scalars(sa.select(Account.id).where(Account.ref == "BCO-1")).one()
        session.add_all(
            ContactAttempt(
                site="t", account_id=account_id, phone=ANA, state="finished", requested_at=at, outcome=outcome.value
            )
            for at, outcome in calls
        )
    return node


def rate_at(node: Node, at: datetime, config: AbandonmentConfig, within: set[PortfolioKey] | None = None) -> str:
    with node.db.reading() as session:
        return abandonment_rate(session, "t", at, config, within).describe()


def test_the_rate_counts_the_window_and_the_portfolios(node: Node) -> None:
    now = node.clock.now()
    assert rate_at(node, now, AbandonmentConfig()) == (
        "25.0% (1 of 4 answered by a person) over 30 days: OVER the limit of 3%"
    )
    wider = AbandonmentConfig(limit=0.5, window_days=40)
    assert rate_at(node, now, wider) == "40.0% (2 of 5 answered by a person) over 40 days: within the limit of 50%"
    assert rate_at(node, now, AbandonmentConfig(), {PortfolioKey("BANCO", "OTRA")}).startswith("0.0% (0 of 0")


def test_kpis_wallboard_and_metrics_show_the_abandoned_calls(node: Node) -> None:
    today = node.clock.now().astimezone(node.site.zone).date()
    (kpi,) = daily_kpis(node.db, {"t": None}, node.site.zone, since=today, until=today)
    assert (kpi.attempts, kpi.contacts, kpi.abandoned, kpi.abandon_rate) == (5, 3, 1, 0.25)
    shown = board(Web(node.web_services()), None)
    assert (shown.contacts, shown.abandoned, shown.abandon_rate, shown.abandon_limit) == (3, 1, 0.25, 0.03)
    metrics = {family.name: family for family in StoreCollector(node.web_services()).collect()}
    assert [sample.value for sample in metrics["cartera_abandonment_rate"].samples] == [0.25]
    assert [sample.value for sample in metrics["cartera_abandonment_limit"].samples] == [0.03]


def test_an_abandoned_number_rests_for_the_configured_hours(node: Node) -> None:
    """The gate refuses a call to a number whose call was abandoned within 72 h (the rule is named by explain), and
    names the instant it lifts: 72 h after that call, within the law's hours."""
    with node.db.reading() as session:
        abandoned_at = session.scalars(
            sa.select(sa.func.max(ContactAttempt.requested_at)).where(ContactAttempt.outcome == "abandoned")
        ).one()
    now = abandoned_at + timedelta(minutes=1)
    decision, subject = node.explainer.explain(phone=None, account="BCO-1", channel=Channel.CALL, at=now, actor="t")
    assert Reason.ABANDONED_RECENTLY in decision.reasons
    assert "core.rest_after_abandoned" in decision.rules
    assert sum(contact.abandoned for contact in subject.history.contacts) == 1  # 31 days ago: beyond what it reads
    assert decision.next_allowed_at == abandoned_at + timedelta(hours=72)  # Thursday 09:00 Bogotá: within hours
    later = abandoned_at + timedelta(hours=72)
    decision, _ = node.explainer.explain(phone=None, account="BCO-1", channel=Channel.CALL, at=later, actor="t")
    assert Reason.ABANDONED_RECENTLY not in decision.reasons
    text, _ = node.explainer.explain(phone=None, account="BCO-1", channel=Channel.SMS, at=now, actor="t")
    assert Reason.ABANDONED_RECENTLY not in text.reasons  # a text is not a call


def test_the_rest_is_configured_and_zero_turns_it_off(tmp_path: Path, open_node: Callable[..., Node]) -> None:
    path = write_sites(tmp_path, extra="\n[sites.t.campaign.abandonment]\nredial_after_hours = 0\n")
    assert "rest_after_abandoned" not in " ".join(open_node(path).gate.default.info)
    with pytest.raises(ConfigError, match="redial_after_hours"):
        open_node(write_sites(tmp_path, extra="\n[sites.t.campaign.abandonment]\nredial_after_hours = -1\n"))


def test_the_run_summary_states_the_rate_against_the_limit(node: Node) -> None:
    summary = site_summary(node, node.clock.now(), 0.0)
    assert "  abandoned    25.0% (1 of 4 answered by a person) over 30 days: OVER the limit of 3%" in summary


def test_a_campaign_call_the_simulator_abandons_is_stored_counted_and_rests(
    tmp_path: Path, open_node: Callable[..., Node]
) -> None:
    """One seat, two answered calls at once: one is abandoned; it is stored as such, without an agent or a
    conversation, counted in the rate, and its account is next due once the 72 h rest is over."""
    path = write_sites(tmp_path)
    text = path.read_text().replace("seed = 7", "seed = 7\nagents = 1\ndial_ratio = 2.0\nabandon_after = 2")
    text = text.replace("ring_seconds = [1, 10]", "ring_seconds = [3, 3]\noutcome_weights = { answered = 1 }")
    path.write_text(text.replace("talk_seconds = [5, 30]", "talk_seconds = [60, 60]"))
    write_portfolio(
        tmp_path / "inbox", [f"BCO-1;Ana Gómez;{ANA};;1.000.000,00;COP", "BCO-2;Beto;+573001234568;;5,00;COP"]
    )
    node = open_node(path)
    node.creditor_sync().run_once()
    campaign = node._campaign()
    assert campaign is not None
    assert campaign.tick() == 2
    with node.db.session() as session:
        attempts = session.scalars(sa.select(ContactAttempt)).all()
        ids = [attempt.id for attempt in attempts]
    for attempt_id in ids:
        assert node.calls.wait_for_call(attempt_id, timeout=30) is not None
    with node.db.reading() as session:
        stored = session.execute(
            sa.select(
                ContactAttempt.outcome, ContactAttempt.agent, ContactAttempt.answered_at, ContactAttempt.requested_at
            ).order_by(ContactAttempt.outcome)
        ).all()
        (abandoned,) = [row for row in stored if row.outcome == "abandoned"]
        next_due = session.scalars(
            sa.select(Account.next_contact_at)
            .join(ContactAttempt, ContactAttempt.account_id == Account.id)
            .where(ContactAttempt.outcome == "abandoned")
        ).one()
        rate = abandonment_rate(session, "t", node.clock.now(), AbandonmentConfig())
    assert [row.outcome for row in stored] == ["abandoned", "answered"]
    assert (abandoned.agent, abandoned.answered_at) == (None, None)
    assert (rate.abandoned, rate.answered) == (1, 2)
    assert next_due >= abandoned.requested_at + timedelta(hours=72)


def calls_to_ana(node: Node, calls: list[tuple[datetime, CallOutcome]]) -> None:
    """Finished calls to Ana's number about BCO-1, each requested at its instant, ending as its outcome."""
    with node.db.session() as session:
        account_id = session.scalars(sa.select(Account.id).where(Account.ref == "BCO-1")).one()
        session.add_all(
            ContactAttempt(
                site="t",
                account_id=account_id,
                phone=ANA,
                state="finished",
                requested_at=at,
                answered_at=at if outcome is CallOutcome.ANSWERED else None,
                outcome=outcome.value,
                right_party=True if outcome is CallOutcome.ANSWERED else None,
            )
            for at, outcome in calls
        )


def call_reasons(node: Node, at: datetime) -> tuple[set[Reason], set[str]]:
    decision, _ = node.explainer.explain(phone=None, account="BCO-1", channel=Channel.CALL, at=at, actor="t")
    return set(decision.reasons), set(decision.rules)


@pytest.mark.parametrize("outcome", [CallOutcome.MACHINE, CallOutcome.ABANDONED])
def test_machine_and_abandoned_calls_count_towards_the_daily_limit_of_the_law_pack(
    outcome: CallOutcome, tmp_path: Path, open_node: Callable[..., Node]
) -> None:
    """Colombia's pack: once the debtor was reached directly, one contact a day. A call today that an answering
    machine took, or that was abandoned, is that day's contact (the rest after an abandoned call is off here)."""
    path = write_sites(tmp_path, extra="\n[sites.t.campaign.abandonment]\nredial_after_hours = 0\n")
    write_portfolio(tmp_path / "inbox", [f"BCO-1;Ana Gómez;{ANA};;1.000.000,00;COP"])
    node = open_node(path)
    node.creditor_sync().run_once()
    now = node.clock.now()
    calls_to_ana(node, [(now - timedelta(days=10), CallOutcome.ANSWERED)])
    assert Reason.FREQUENCY_CAP not in call_reasons(node, now)[0]
    calls_to_ana(node, [(now - timedelta(minutes=30), outcome)])
    reasons, rules = call_reasons(node, now)
    assert reasons == {Reason.FREQUENCY_CAP}
    assert "co.ley2300.art3.una_vez_al_dia" in rules


def test_machine_and_abandoned_calls_count_towards_the_weekly_limit_of_the_law_pack(
    tmp_path: Path, open_node: Callable[..., Node]
) -> None:
    """The US pack (Regulation F): at most 7 calls in 7 days per debt. Seven calls over the last six days, each
    taken by an answering machine or abandoned, use them up; six do not."""
    extra = "\n[sites.t.campaign.abandonment]\nredial_after_hours = 0\n"
    path = write_sites(tmp_path, extra=extra)
    text = path.read_text().replace("[sites.t.compliance]", '[sites.t.compliance]\nlaw_pack = "us"')
    path.write_text(text.replace('start = "07:00"', 'start = "09:00"'))  # within the US pack's 08:00-21:00
    write_portfolio(tmp_path / "inbox", [f"BCO-1;Ana Gómez;{ANA};;1.000.000,00;COP"])
    node = open_node(path)
    node.creditor_sync().run_once()
    now = node.clock.now()
    outcomes = [CallOutcome.MACHINE, CallOutcome.ABANDONED] * 3
    calls_to_ana(node, [(now - timedelta(days=day, hours=1), outcome) for day, outcome in enumerate(outcomes)])
    assert Reason.FREQUENCY_CAP not in call_reasons(node, now)[0]
    calls_to_ana(node, [(now - timedelta(hours=2), CallOutcome.MACHINE)])
    reasons, rules = call_reasons(node, now)
    assert Reason.FREQUENCY_CAP in reasons
    assert "us.regf.1006_14_b_2_i_A" in rules


@pytest.mark.parametrize(("mode", "rests"), [("ratio", True), ("predictive", True), ("progressive", False)])
def test_an_abandoned_number_rests_unless_the_campaign_is_progressive(
    mode: str, rests: bool, tmp_path: Path, open_node: Callable[..., Node]
) -> None:
    """Progressive dialling keeps an agent ready for each call it places, so the rest after an abandoned call does
    not hold its calls back; the modes that may dial ahead of their agents rest the number 72 h."""
    path = write_sites(tmp_path)
    path.write_text(path.read_text().replace("[sites.t.campaign]", f'[sites.t.campaign]\nmode = "{mode}"'))
    write_portfolio(tmp_path / "inbox", [f"BCO-1;Ana Gómez;{ANA};;1.000.000,00;COP"])
    node = open_node(path)
    node.creditor_sync().run_once()
    now = node.clock.now()
    calls_to_ana(node, [(now - timedelta(hours=1), CallOutcome.ABANDONED)])
    reasons, rules = call_reasons(node, now)
    assert (Reason.ABANDONED_RECENTLY in reasons) is rests
    assert ("core.rest_after_abandoned" in rules) is rests
