"""The campaign's list: callbacks at their time to their agent, broken promises next, then expected value with
P(contact) learned by hour of the week (cartera.contact.listing, cartera.contact.reach)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
import sqlalchemy as sa

from cartera.contact.listing import Candidate, Priority, rank
from cartera.contact.reach import ReachModel, hour_of_week, week_hour_label
from cartera.core.store.schema import Account, CallbackRow, ContactAttempt, DispositionRow, PromiseRow
from cartera.node import Node
from tests.conftest import run_site, write_portfolio, write_sites

BOGOTA = ZoneInfo("America/Bogota")
MONDAY_10 = datetime(2026, 11, 23, 10, tzinfo=BOGOTA)
MONDAY_19 = datetime(2026, 11, 23, 19, tzinfo=BOGOTA)


def test_the_hour_that_answers_is_preferred() -> None:
    model = ReachModel()
    for week in range(4):
        model.observe("+573001110001", hour_of_week(MONDAY_10 + timedelta(weeks=week), BOGOTA), reached=False)
        model.observe("+573001110001", hour_of_week(MONDAY_19 + timedelta(weeks=week), BOGOTA), reached=True)
    morning = model.reach("+573001110001", hour_of_week(MONDAY_10, BOGOTA))
    evening = model.reach("+573001110001", hour_of_week(MONDAY_19, BOGOTA))
    assert evening.probability > 0.7
    assert morning.probability < 0.3
    assert (evening.tries, evening.reached) == (4, 4)


def test_a_new_number_starts_from_the_site_pattern() -> None:
    model = ReachModel()
    for debtor in range(40):
        phone = f"+5730011{debtor:05d}"
        model.observe(phone, hour_of_week(MONDAY_10, BOGOTA), reached=debtor % 10 == 0)  # 10% in the morning
        model.observe(phone, hour_of_week(MONDAY_19, BOGOTA), reached=debtor % 2 == 0)  # 50% in the evening
    new = "+573009999999"
    morning = model.reach(new, hour_of_week(MONDAY_10, BOGOTA))
    evening = model.reach(new, hour_of_week(MONDAY_19, BOGOTA))
    assert (morning.tries, morning.lift, evening.lift) == (0, 1.0, 1.0)
    assert morning.probability == pytest.approx(morning.site_rate)
    assert morning.site_rate < 0.2
    assert evening.probability == pytest.approx(evening.site_rate)
    assert evening.site_rate > 0.4


def test_a_number_that_never_answers_is_worth_less_at_every_hour() -> None:
    model = ReachModel()
    for debtor in range(20):
        model.observe(f"+5730011{debtor:05d}", hour_of_week(MONDAY_10, BOGOTA), reached=debtor % 2 == 0)
    for day in range(5):
        model.observe("+573002220000", hour_of_week(MONDAY_10 + timedelta(days=day), BOGOTA), reached=False)
    hour = hour_of_week(MONDAY_19, BOGOTA)  # an hour the number was never called
    assert model.lift("+573002220000") < 0.7
    assert model.reach("+573002220000", hour).probability < model.reach("+573009999999", hour).probability


def test_broken_promises_come_first_then_expected_value() -> None:
    model = ReachModel()
    for week in range(6):
        model.observe("+573000000002", hour_of_week(MONDAY_19 + timedelta(weeks=week), BOGOTA), reached=True)
        model.observe("+573000000003", hour_of_week(MONDAY_19 + timedelta(weeks=week), BOGOTA), reached=False)

    def candidate(n: int, balance: int, *, broken: bool = False) -> Candidate:
        phone = f"+57300000000{n}"
        return Candidate(n, f"C-{n}", Decimal(balance), "COP", (phone,), BOGOTA, broken_promise=broken)

    # C-3 owes more, but its number does not answer at 19h; C-1's promise broke.
    picks = rank([candidate(3, 300_000), candidate(2, 100_000), candidate(1, 10, broken=True)], model, MONDAY_19)
    assert [pick.ref for pick in picks] == ["C-1", "C-2", "C-3"]
    assert picks[0].priority is Priority.BROKEN_PROMISE
    assert picks[0].why.startswith("broken promise")
    assert picks[1].value > picks[2].value


# --- on a node: the simulator, the store, the campaign --------------------------------------------------------

ROWS = ["C-1;Ana Uno;300 111 0001;;100.000,00;COP", "C-2;Beto Dos;300 111 0002;;900.000,00;COP"]


def _node(tmp_path: Path, open_node: Callable[..., Node]) -> Node:
    path = write_sites(tmp_path)
    scripted = 'scripted = { "+573001110001" = "answered", "+573001110002" = "no_answer" }'
    path.write_text(path.read_text().replace("seed = 7", f"seed = 7\n{scripted}"))
    write_portfolio(tmp_path / "inbox", ROWS)
    node = open_node(path)
    node.creditor_sync().run_once()
    return node


def _account(node: Node, ref: str) -> int:
    with node.db.session() as session:
        return session.scalars(sa.select(Account.id).where(Account.ref == ref)).one()


def _dispositioned_call(node: Node, account_id: int, at: datetime, agent: str) -> int:
    """A past answered call of the account with a disposition by ``agent``: the callback's and promise's origin."""
    with node.db.session() as session:
        attempt = ContactAttempt(
            site="t",
            account_id=account_id,
            phone="+573001110001",
            state="finished",
            requested_at=at,
            outcome="answered",
        )
        session.add(attempt)
        session.flush()
        row = DispositionRow(
            site="t", attempt_id=attempt.id, account_id=account_id, code="x", flags=[], agent=agent, note="", at=at
        )
        session.add(row)
        session.flush()
        return row.id


def _callback(node: Node, ref: str, at: datetime, agent: str | None, phone: str = "+573001110001") -> None:
    account_id = _account(node, ref)
    disposition = _dispositioned_call(node, account_id, at - timedelta(days=1), agent or "ana")
    with node.db.session() as session:
        session.add(
            CallbackRow(
                site="t",
                account_id=account_id,
                disposition_id=disposition,
                phone=phone,
                at=at,
                agent=agent,
                state="pending",
            )
        )
        session.get_one(Account, account_id).next_contact_at = at + timedelta(minutes=15)  # as the workspace sets it


def test_a_callback_is_placed_at_its_time_to_its_agent(tmp_path: Path, open_node: Callable[..., Node]) -> None:
    node = _node(tmp_path, open_node)
    now = node.clock.now()
    _callback(node, "C-1", now + timedelta(hours=1), agent="ana")
    due = [(_account(node, "C-2"), "C-2")]
    listing = node.call_list

    assert [pick.ref for pick in listing.order(due, now)] == ["C-2"]  # not its time yet
    later = now + timedelta(hours=1, minutes=1)
    waiting = listing.order(due, later)[0]
    assert (waiting.ref, waiting.waiting, waiting.agent) == ("C-1", True, None)  # ana has not said she is ready

    node.workspace.roster.sign_in("ana", "agent-03")
    node.workspace.roster.ready("ana")
    first, second = listing.order(due, later)
    assert (first.ref, first.priority, first.agent, first.phone, first.waiting) == (
        "C-1",
        Priority.CALLBACK,
        "agent-03",
        "+573001110001",
        False,
    )
    assert second.ref == "C-2"

    released = listing.order(due, now + timedelta(hours=1, minutes=16))[0]  # 15 minutes overdue: anyone's
    assert (released.ref, released.agent, released.waiting) == ("C-1", None, False)
    assert "released to anyone" in released.why


def test_the_campaign_connects_the_callback_to_its_agent(tmp_path: Path, open_node: Callable[..., Node]) -> None:
    node = _node(tmp_path, open_node)
    _callback(node, "C-1", node.clock.now() - timedelta(minutes=1), agent="ana")
    node.workspace.roster.sign_in("ana", "agent-03")
    node.workspace.roster.ready("ana")
    campaign = node._campaign()
    assert campaign is not None
    ticked = node.clock.now()
    assert campaign.tick() == 2
    with node.db.session() as session:
        first = session.scalars(
            sa.select(ContactAttempt).where(ContactAttempt.requested_at >= ticked).order_by(ContactAttempt.id)
        ).first()
        assert first is not None
        attempt_id, account_id = first.id, first.account_id
    assert account_id == _account(node, "C-1")  # the callback first, before C-2's larger balance
    result = node.calls.wait_for_call(attempt_id, timeout=10)
    assert result is not None
    assert result.agent == "agent-03"
    with node.db.session() as session:
        assert session.get_one(ContactAttempt, attempt_id).agent == "agent-03"
    assert [pick.ref for pick in node.call_list.order([], node.clock.now())] == []  # tried since its time


def test_a_broken_promise_is_called_first(tmp_path: Path, open_node: Callable[..., Node]) -> None:
    node = _node(tmp_path, open_node)
    account_id = _account(node, "C-1")
    made = node.clock.now() - timedelta(days=10)
    disposition = _dispositioned_call(node, account_id, made, "ana")
    with node.db.session() as session:
        session.add(
            PromiseRow(
                site="t",
                account_id=account_id,
                disposition_id=disposition,
                state="broken",
                total=Decimal(50_000),
                currency="COP",
                agent="ana",
                made_at=made,
                settled_at=node.clock.now() - timedelta(hours=1),
            )
        )
    due = [(_account(node, "C-2"), "C-2"), (account_id, "C-1")]  # C-2 longer due, and owes 9 times more
    picks = node.call_list.order(due, node.clock.now())
    assert [(pick.ref, pick.priority) for pick in picks] == [("C-1", Priority.BROKEN_PROMISE), ("C-2", Priority.VALUE)]


def test_the_fifo_order_keeps_the_longest_due_first(tmp_path: Path, open_node: Callable[..., Node]) -> None:
    path = write_sites(tmp_path, extra='\n[sites.t.campaign.listing]\norder = "fifo"\n')
    write_portfolio(tmp_path / "inbox", ROWS)
    node = open_node(path)
    node.creditor_sync().run_once()
    due = [(_account(node, "C-1"), "C-1"), (_account(node, "C-2"), "C-2")]
    assert [pick.ref for pick in node.call_list.order(due, datetime.now(UTC))] == ["C-1", "C-2"]


def test_campaign_queue_prints_the_next_accounts_and_why(tmp_path: Path, open_node: Callable[..., Node]) -> None:
    node = _node(tmp_path, open_node)
    _callback(node, "C-1", node.clock.now() - timedelta(minutes=1), agent="ana")
    at = node.clock.now()  # the command's node has a simulated clock of its own
    result = run_site(tmp_path / "sites.toml", "campaign", "queue", "--top", "5", "--at", at.isoformat())
    assert result.returncode == 0, result.stderr
    first, second = result.stdout.splitlines()
    assert first.split()[:4] == ["1", "C-1", "callback", "waiting"]
    assert first.endswith("for ana: waits until the agent is ready")
    assert second.split()[:4] == ["2", "C-2", "value", "600,000.00"]  # the one call so far answered: 67%
    hour = week_hour_label(hour_of_week(at, BOGOTA))
    assert f"P(contact) 67% (site 67% at this hour, number x1.00, 0/0 here) at {hour} on +573001110002" in second
    refused = run_site(tmp_path / "sites.toml", "campaign", "queue", "--top", "0")
    assert refused.returncode == 2
    assert "--top: 1 to 10000, not 0" in refused.stderr


def test_the_pool_is_the_best_of_all_due_accounts_not_the_longest_due(
    tmp_path: Path, open_node: Callable[..., Node]
) -> None:
    node = _node(tmp_path, open_node)
    now = node.clock.now()
    small, large = _account(node, "C-1"), _account(node, "C-2")
    with node.db.session() as session:  # C-1 (100,000) due for a day, C-2 (900,000) just now
        session.get_one(Account, small).next_contact_at = now - timedelta(days=1)
        session.get_one(Account, large).next_contact_at = now
    [best] = node.call_list.pool(now, now - timedelta(hours=1), limit=1)
    assert best.ref == "C-2"
    longest = node.call_list.queue(now, 2, max_attempts_per_day=3)
    assert [pick.ref for pick in longest] == ["C-2", "C-1"]


def test_an_agent_gets_one_callback_at_a_time(tmp_path: Path, open_node: Callable[..., Node]) -> None:
    node = _node(tmp_path, open_node)
    now = node.clock.now()
    _callback(node, "C-1", now - timedelta(minutes=2), agent="ana")
    _callback(node, "C-2", now - timedelta(minutes=1), agent="ana", phone="+573001110002")
    node.workspace.roster.sign_in("ana", "agent-03")
    node.workspace.roster.ready("ana")
    first, second = node.call_list.order([], now)
    assert [(pick.ref, pick.agent, pick.waiting) for pick in (first, second)] == [
        ("C-1", "agent-03", False),
        ("C-2", None, True),
    ]
    node.call_list.placed(first)  # ringing: ana is still ready, but her callback's call is not over
    with node.db.session() as session:
        call = ContactAttempt(
            site="t", account_id=first.account_id, phone="+573001110001", state="placing", requested_at=now
        )
        session.add(call)
        session.flush()
        call_id = call.id
    [waiting] = node.call_list.order([], now)
    assert (waiting.ref, waiting.waiting) == ("C-2", True)
    with node.db.session() as session:
        session.get_one(ContactAttempt, call_id).state = "finished"
    [next_one] = node.call_list.order([], now)
    assert (next_one.ref, next_one.agent, next_one.waiting) == ("C-2", "agent-03", False)
