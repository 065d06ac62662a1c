"""An agent's disposition through :class:`WorkspaceService`: bad input refused naming the field with nothing stored,
and a saved one feeding the creditor's export, the KPIs, the compliance history, the contact stops, the number's
retirement, the line type, the promise (with its confirmation text) and the callback."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from cartera.contact.compliance import Decision, LineType, Reason
from cartera.core.models import AgentConnected, CallOutcome, CallResult, Channel, Disposition, DispositionCode
from cartera.core.store.schema import (
    Account,
    AccountStop,
    ActivityRow,
    AuditEntry,
    CallbackRow,
    ContactAttempt,
    DispositionRow,
    Phone,
    PhoneLineType,
    PromiseRow,
)
from cartera.node import Node
from cartera.portfolio.identity import PortfolioKey
from cartera.runtime.kpis import daily_kpis
from cartera.users.directory import Grant, Role, UserDirectory
from cartera.workspace.errors import AlreadyDispositioned, CallbackNotAllowed, NotYourCall, WorkspaceError
from cartera.workspace.promises import Instalment
from cartera.workspace.service import CallbackRequest, DispositionInput
from tests.conftest import write_portfolio, write_sites

ANA = "+573001234567"
AGENT, EXTENSION = "ana.agente", "sim-01"
ROBOT = "sim-02"  #: a seat no agent user holds


@dataclass
class Desk:
    node: Node
    tmp_path: Path
    phone: str = ANA

    def call(self, *, connected_to: str | None = EXTENSION, ended: bool = True) -> int:
        """An answered call of account BCO-1 connected to ``connected_to``, ended when ``ended``: its attempt id."""
        now = self.node.clock.now()
        with self.node.db.session() as session:
            account_id = session.scalars(sa.select(Account.id).where(Account.ref == "BCO-1")).one()
            attempt = ContactAttempt(
                site="t", account_id=account_id, phone=self.phone, state="placing", requested_at=now
            )
            session.add(attempt)
            session.flush()
            attempt_id = attempt.id
        if connected_to is not None:
            self.node.calls.on_agent_connected(AgentConnected(attempt_id, connected_to, now))
        if ended:
            self.node.calls.on_call_result(CallResult(attempt_id, CallOutcome.ANSWERED, "16", now, now, now))
        return attempt_id

    def post(
        self,
        attempt_id: int,
        code: str,
        agent: str = AGENT,
        within: frozenset[PortfolioKey] | None = None,
        confirm: bool = True,
        **fields: Any,
    ) -> Any:
        """Post as the agent's page does, after its right-party confirmation (``confirm``: a call not the agent's
        is refused alike by both)."""
        service = self.node.workspace_service
        if confirm:
            with contextlib.suppress(NotYourCall):
                service.confirm_right_party(agent, attempt_id, within=within)
        return service.post_disposition(agent, DispositionInput(attempt_id, code, **fields), within=within)

    def today(self) -> date:
        return self.node.clock.now().astimezone(self.node.site.zone).date()

    def stored(self) -> tuple[object, ...]:
        """Everything a disposition may store or change, to compare before and after a refusal."""
        with self.node.db.reading() as session:
            counts = tuple(
                session.scalar(sa.select(sa.func.count()).select_from(table))
                for table in (DispositionRow, PromiseRow, CallbackRow, ActivityRow, AccountStop, PhoneLineType)
            )
            attempts = session.execute(sa.select(ContactAttempt.disposition, ContactAttempt.right_party)).all()
            account = session.execute(sa.select(Account.next_contact_at, Account.status)).all()
            phones = session.scalars(sa.select(Phone.invalid)).all()
            audited = session.scalar(sa.select(sa.func.count()).where(AuditEntry.action == "call.disposition"))
        return counts, tuple(attempts), tuple(account), tuple(phones), audited

    def texts(self) -> list[str]:
        outbox = self.tmp_path / "sms" / "outbox.jsonl"
        lines = outbox.read_text(encoding="utf-8").splitlines() if outbox.exists() else []
        return [json.loads(line)["text"] for line in lines]


@pytest.fixture
def desk(tmp_path: Path, open_node: Callable[..., Node]) -> Desk:
    return open_desk(tmp_path, open_node)


def open_desk(
    tmp_path: Path, open_node: Callable[..., Node], extra: str = "", law_pack: str = "co", phone: str = ANA
) -> Desk:
    """Site ``t`` (clock at real speed from Monday 09:00 Bogotá, its window from 08:00 as every pack allows) with
    account BCO-1 (balance 1.000.000), agent ``ana.agente`` on extension ``sim-01``; ``law_pack`` held for every
    portfolio; the debtor's ``phone`` (E.164)."""
    path = write_sites(tmp_path, extra=extra)
    text = path.read_text().replace("speed = 600", "speed = 1").replace('start = "07:00"', 'start = "08:00"')
    path.write_text(text.replace("[sites.t.compliance]", f'[sites.t.compliance]\nlaw_pack = "{law_pack}"'))
    write_portfolio(tmp_path / "inbox", [f"BCO-1;Ana Gómez;{phone};;1.000.000,00;COP"])
    node = open_node(path)
    node.creditor_sync().run_once()
    UserDirectory(node.db).add(AGENT, "una clave larga", Role.AGENT, [Grant("t")], extension=EXTENSION)
    return Desk(node, tmp_path, phone)


def refused(desk: Desk, attempt_id: int, code: str, **fields: Any) -> WorkspaceError:
    before = desk.stored()
    with pytest.raises(WorkspaceError) as caught:
        desk.post(attempt_id, code, **fields)
    assert desk.stored() == before, "a refused disposition changed the store"
    return caught.value


def one(amount: str, due: date) -> tuple[Instalment, ...]:
    return (Instalment(Decimal(amount), due),)


def test_a_promise_above_the_balance_is_refused_naming_the_amount(desk: Desk) -> None:
    error = refused(desk, desk.call(), "promise_to_pay", promise=one("1000000.01", desk.today() + timedelta(days=3)))
    assert error.field == "promise.amount"
    assert str(error) == "promise.amount: more than the balance 1000000.00"


def test_a_promise_in_the_past_is_refused_naming_the_date(desk: Desk) -> None:
    yesterday = desk.today() - timedelta(days=1)
    error = refused(desk, desk.call(), "promise_to_pay", promise=one("100", yesterday))
    assert error.field == "promise.date"
    assert f"in the past (today is {desk.today()})" in str(error)


def test_a_promise_beyond_the_portfolios_horizon_is_refused(tmp_path: Path, open_node: Callable[..., Node]) -> None:
    extra = '\n[sites.t.workspace.portfolios."BANCO/TARJETAS"]\npromise_horizon_days = 10\n'
    desk = open_desk(tmp_path, open_node, extra)
    error = refused(desk, desk.call(), "promise_to_pay", promise=one("100", desk.today() + timedelta(days=11)))
    assert error.field == "promise.date"
    assert f"beyond this portfolio's 10-day horizon (at most {desk.today() + timedelta(days=10)})" in str(error)


def test_a_plan_names_the_instalment_at_fault(desk: Desk) -> None:
    start = desk.today() + timedelta(days=5)
    plan = (Instalment(Decimal(100), start), Instalment(Decimal(100), start))
    error = refused(desk, desk.call(), "promise_to_pay", promise=plan)
    assert error.field == "promise.instalments[1].due"
    assert "not after the previous instalment's date" in str(error)


def test_a_promise_code_without_a_promise_and_a_promise_on_another_code_are_refused(desk: Desk) -> None:
    attempt = desk.call()
    assert refused(desk, attempt, "promise_to_pay").field == "promise"
    assert refused(desk, attempt, "refused_to_pay", promise=one("1", desk.today())).field == "promise"


def test_an_unknown_or_system_code_is_refused(desk: Desk) -> None:
    attempt = desk.call()
    error = refused(desk, attempt, "paid_in_cash")
    assert error.field == "code"
    assert "this portfolio's: right_party_contact, promise_to_pay" in str(error)
    assert refused(desk, attempt, "wrap_up_timeout").field == "code"


def test_a_callback_outside_legal_hours_gives_the_gates_next_allowed_time(desk: Desk) -> None:
    attempt = desk.call()
    tonight = datetime.combine(desk.today(), time(21, 0), desk.node.site.zone)
    error = refused(desk, attempt, "callback_requested", callback=CallbackRequest(tonight))
    assert isinstance(error, CallbackNotAllowed)
    assert error.field == "callback.at"
    assert error.next_allowed_at is not None
    assert error.next_allowed_at > tonight
    assert "outside_contact_window" in str(error)
    assert error.next_allowed_at.isoformat(timespec="minutes") in str(error)
    saved = desk.post(attempt, "callback_requested", callback=CallbackRequest(error.next_allowed_at))
    with desk.node.db.reading() as session:
        row = session.get_one(CallbackRow, saved.callback_id)
        assert (row.at, row.agent, row.state) == (error.next_allowed_at, AGENT, "pending")


@pytest.mark.abuse
def test_a_callback_is_no_further_than_the_promise_horizon(desk: Desk) -> None:
    attempt = desk.call()
    zone = desk.node.site.zone
    for far in (datetime(2150, 1, 5, 10, tzinfo=zone), datetime(9999, 12, 31, 23, 59, tzinfo=zone)):
        error = refused(desk, attempt, "callback_requested", callback=CallbackRequest(far))
        assert error.field == "callback.at"
        assert "60-day horizon" in str(error)


def test_a_callback_code_needs_its_time(desk: Desk) -> None:
    assert refused(desk, desk.call(), "callback_requested").field == "callback.at"


def test_a_call_that_is_not_the_agents_is_refused(desk: Desk) -> None:
    UserDirectory(desk.node.db).add("beto", "una clave larga", Role.AGENT, [Grant("t")], extension="sim-02")
    attempt = desk.call()
    error = refused(desk, attempt, "right_party_contact", agent="beto")
    assert isinstance(error, NotYourCall)
    assert str(error) == f"attempt: call {attempt} is not one of beto's calls"
    never_connected = desk.call(connected_to=None)
    assert "is not one of ana.agente's calls" in str(refused(desk, never_connected, "right_party_contact"))
    unknown = refused(desk, 999999, "right_party_contact")  # the same answer: whether it exists is not told
    assert (type(unknown), str(unknown)) == (NotYourCall, "attempt: call 999999 is not one of ana.agente's calls")


@pytest.mark.abuse
def test_a_call_outside_the_agents_grants_is_refused_as_not_theirs_before_its_balance(desk: Desk) -> None:
    attempt = desk.call()
    elsewhere = frozenset({PortfolioKey("OTRO", "TARJETAS")})
    probe = {"promise": (Instalment(Decimal("999999999"), desk.today() + timedelta(days=3)),)}
    errors = [
        refused(desk, attempt, "promise_to_pay", within=elsewhere, **probe),
        refused(desk, attempt, "dispute", within=elsewhere),
        refused(desk, attempt, "dispute", agent="beto"),
    ]
    assert all(isinstance(error, NotYourCall) for error in errors)
    assert str(errors[0]) == str(errors[1])
    assert "balance" not in str(errors[0])


@pytest.mark.abuse
def test_a_name_equal_to_the_calls_extension_is_not_its_agent(desk: Desk) -> None:
    attempt = desk.call()
    assert isinstance(refused(desk, attempt, "cease_contact", agent=EXTENSION), NotYourCall)


@pytest.mark.abuse
def test_a_right_party_code_waits_for_the_agents_confirmation_and_names_no_balance_before_it(
    tmp_path: Path, open_node: Callable[..., Node]
) -> None:
    """Round 16 M2: a promise larger than the balance told the balance, and a promise (with its confirmation text)
    was saved, before the agent confirmed the right party. Every code flagged ``right_party`` is refused first,
    with a fixed text, whatever its promise; once confirmed, the balance may be named."""
    desk = open_desk(tmp_path, open_node, law_pack="mx")  # a text the day of a call allowed: none must go
    attempt = desk.call()
    huge = one("999999999999", desk.today() + timedelta(days=3))
    fine = one("5000", desk.today() + timedelta(days=3))
    errors = [
        refused(desk, attempt, "promise_to_pay", confirm=False, promise=huge),
        refused(desk, attempt, "promise_to_pay", confirm=False, promise=fine),
        *(refused(desk, attempt, code, confirm=False) for code in ("right_party_contact", "refused_to_pay")),
        *(refused(desk, attempt, code, confirm=False) for code in ("dispute", "cease_contact")),
    ]
    assert {error.field for error in errors} == {"right_party"}
    assert str(errors[0]) == (
        "right_party: confirm the right party of the call first: code 'promise_to_pay' says the agent spoke with "
        "the debtor"
    )
    assert str(errors[0]) == str(errors[1])
    assert not any(figure in str(error) for error in errors for figure in ("balance", "1000000", "1.000.000"))
    assert desk.texts() == []
    service = desk.node.workspace_service
    assert not service.right_party_confirmed(AGENT, attempt)
    UserDirectory(desk.node.db).add("beto", "una clave larga", Role.AGENT, [Grant("t")], extension="sim-02")
    with pytest.raises(NotYourCall):  # another agent cannot confirm the call for its agent
        service.confirm_right_party("beto", attempt, within=None)
    assert not service.right_party_confirmed(AGENT, attempt)
    service.confirm_right_party(AGENT, attempt, within=None)
    assert service.right_party_confirmed(AGENT, attempt)
    assert not service.right_party_confirmed("beto", attempt)
    after = refused(desk, attempt, "promise_to_pay", confirm=False, promise=huge)
    assert str(after) == "promise.amount: more than the balance 1000000.00"  # the agent sees the debt now
    saved = desk.post(attempt, "promise_to_pay", confirm=False, promise=fine)
    assert saved.promise_id is not None
    assert len(desk.texts()) == 1
    assert not service.right_party_confirmed(AGENT, attempt)  # spent with the call's disposition


def test_codes_that_do_not_say_the_debtor_was_reached_need_no_confirmation(desk: Desk) -> None:
    """A third party, a wrong number, a callback whoever answered, a machine: saved without the confirmation."""
    tomorrow = datetime.combine(desk.today() + timedelta(days=1), time(10), desk.node.site.zone)
    callback: dict[str, Any] = {"callback": CallbackRequest(tomorrow)}  # whoever answered asked for it
    nothing: dict[str, Any] = {}
    for code, fields in (("callback_requested", callback), ("wrong_party", nothing), ("answering_machine", nothing)):
        assert desk.post(desk.call(), code, confirm=False, **fields).code == code
    assert desk.post(desk.call(), "wrong_number", confirm=False).code == "wrong_number"


def test_the_workspaces_and_the_dialers_own_dispositions_need_no_confirmation(
    tmp_path: Path, open_node: Callable[..., Node]
) -> None:
    desk = open_desk(tmp_path, open_node, law_pack="mx")
    service = desk.node.workspace_service
    attempt = desk.call()
    assert service.system_disposition(AGENT, attempt, "wrap_up_timeout") is not None
    robot = desk.call(connected_to=ROBOT, ended=False)
    now = desk.node.clock.now()
    promise = Disposition(DispositionCode.PROMISE_TO_PAY, Decimal("5000"), desk.today() + timedelta(days=4))
    desk.node.calls.on_call_result(
        CallResult(robot, CallOutcome.ANSWERED, "16", now, now, now, agent=ROBOT, disposition=promise)
    )
    with desk.node.db.reading() as session:
        saved = session.execute(sa.select(DispositionRow.attempt_id, DispositionRow.code)).all()
    assert sorted(saved) == sorted([(attempt, "wrap_up_timeout"), (robot, "promise_to_pay")])


def test_a_double_submit_keeps_the_first(desk: Desk) -> None:
    attempt = desk.call()
    first = desk.post(attempt, "refused_to_pay", note="no quiere")
    error = refused(desk, attempt, "right_party_contact")
    assert isinstance(error, AlreadyDispositioned)
    assert error.saved == first
    assert str(error) == f"attempt: call {attempt} was already dispositioned 'refused_to_pay' by {AGENT}"


def test_a_promise_is_stored_exported_and_confirmed_by_the_portfolios_template(
    tmp_path: Path, open_node: Callable[..., Node]
) -> None:
    desk = open_desk(tmp_path, open_node, law_pack="mx")  # Colombia's Ley 2300 refuses a text the day of a call
    first, second = desk.today() + timedelta(days=3), desk.today() + timedelta(days=33)
    plan = (Instalment(Decimal("250000"), first), Instalment(Decimal("250000.50"), second))
    saved = desk.post(desk.call(), "promise_to_pay", promise=plan)
    assert saved.promise_id is not None
    [promise] = desk.node.workspace_service.promises_of(_account_id(desk))
    assert (promise.state, promise.total, promise.instalments) == ("pending", Decimal("500000.50"), plan)
    with desk.node.db.reading() as session:
        activities = session.execute(
            sa.select(ActivityRow.kind, ActivityRow.outcome, ActivityRow.amount, ActivityRow.due_date)
            .order_by(ActivityRow.seq)
            .where(ActivityRow.kind != "sms")
        ).all()
    assert activities == [
        ("call_attempt", "promise_to_pay", None, None),
        ("promise_to_pay", "promise_to_pay", Decimal("250000.00"), first),
        ("promise_to_pay", "promise_to_pay", Decimal("250000.50"), second),
    ]
    assert desk.texts() == [f"Gracias por su compromiso de pago de $250.000 para el {first:%d/%m/%Y}. Ref. BCO-1."]


def test_a_disposition_during_the_call_names_the_calls_activity(desk: Desk) -> None:
    attempt = desk.call(ended=False)
    desk.post(attempt, "refused_to_pay")
    with desk.node.db.reading() as session:
        assert session.scalars(sa.select(ActivityRow.outcome)).all() == []
    now = desk.node.clock.now()
    desk.node.calls.on_call_result(CallResult(attempt, CallOutcome.ANSWERED, "16", now, now, now))
    with desk.node.db.reading() as session:
        assert session.scalars(sa.select(ActivityRow.outcome)).all() == ["refused_to_pay"]


def test_right_party_feeds_the_kpis_and_the_compliance_history(desk: Desk) -> None:
    zone = desk.node.site.zone
    tomorrow = datetime.combine(desk.today() + timedelta(days=1), time(10), zone)
    desk.post(desk.call(), "wrong_party")
    assert Reason.ONE_CHANNEL_AFTER_CONTACT not in _decision(desk, Channel.SMS, tomorrow).reasons
    desk.post(desk.call(), "right_party_contact")
    assert Reason.ONE_CHANNEL_AFTER_CONTACT in _decision(desk, Channel.SMS, tomorrow).reasons
    [kpi] = daily_kpis(desk.node.db, {"t": None}, zone, since=desk.today(), until=desk.today())
    assert (kpi.attempts, kpi.contacts, kpi.right_party) == (2, 2, 1)


def test_cease_contact_stops_the_account_for_the_gate_and_the_campaign(desk: Desk) -> None:
    desk.post(desk.call(), "cease_contact")
    tomorrow = datetime.combine(desk.today() + timedelta(days=1), time(10), desk.node.site.zone)
    decision = _decision(desk, Channel.CALL, tomorrow)
    assert Reason.CEASE_CONTACT_REQUESTED in decision.reasons
    assert decision.next_allowed_at is None
    with desk.node.db.reading() as session:
        assert session.get_one(AccountStop, _account_id(desk)).status == "ceased"
        actions = session.scalars(sa.select(AuditEntry.action).where(AuditEntry.action == "account.stop")).all()
        exported = session.scalars(sa.select(ActivityRow.outcome).where(ActivityRow.kind == "call_attempt")).all()
    assert actions == ["account.stop"]
    assert exported == ["cease_contact"]  # the creditor's export says why contact stopped


def test_wrong_number_retires_the_number_and_the_line_type_is_kept(desk: Desk) -> None:
    desk.post(desk.call(), "right_party_contact", line_type=LineType.WORK)
    with desk.node.db.reading() as session:
        assert session.scalars(sa.select(PhoneLineType.line_type)).all() == ["work"]
    desk.post(desk.call(), "wrong_number")
    with desk.node.db.reading() as session:
        assert session.scalars(sa.select(Phone.invalid).where(Phone.e164 == ANA)).all() == [True]


def test_a_dialers_reported_disposition_goes_through_the_workspace(
    tmp_path: Path, open_node: Callable[..., Node]
) -> None:
    desk = open_desk(tmp_path, open_node, law_pack="mx")
    attempt = desk.call(connected_to=ROBOT, ended=False)  # a simulated agent's seat: no agent user holds it
    now = desk.node.clock.now()
    promise = Disposition(DispositionCode.PROMISE_TO_PAY, Decimal("5000"), desk.today() + timedelta(days=4))
    desk.node.calls.on_call_result(
        CallResult(attempt, CallOutcome.ANSWERED, "16", now, now, now, agent=ROBOT, disposition=promise)
    )
    with desk.node.db.reading() as session:
        row = session.scalars(sa.select(DispositionRow)).one()
        kinds = session.scalars(
            sa.select(ActivityRow.kind).where(ActivityRow.kind != "sms").order_by(ActivityRow.seq)
        ).all()
    assert (row.attempt_id, row.code, row.agent) == (attempt, "promise_to_pay", ROBOT)
    assert kinds == ["call_attempt", "promise_to_pay"]
    assert len(desk.texts()) == 1


def test_a_call_its_agent_never_dispositioned_is_closed_by_the_sweep(
    tmp_path: Path, open_node: Callable[..., Node]
) -> None:
    desk = open_desk(tmp_path, open_node, "\n[sites.t.workspace]\nwrap_up_seconds = 0.01\ngone_seconds = 0.01\n")
    attempt = desk.call()
    desk.node.clock.sleep(0.05)
    desk.node.workspace_service.sweep()
    with desk.node.db.reading() as session:
        assert session.scalars(sa.select(DispositionRow.code)).all() == ["wrap_up_timeout"]
        assert session.scalars(sa.select(ActivityRow.outcome).where(ActivityRow.kind == "call_attempt")).all() == [
            "wrap_up_timeout"
        ]
    assert desk.node.workspace_service.system_disposition(AGENT, attempt, "browser_closed") is None


def _account_id(desk: Desk) -> int:
    with desk.node.db.reading() as session:
        return session.scalars(sa.select(Account.id).where(Account.ref == "BCO-1")).one()


def _decision(desk: Desk, channel: Channel, at: datetime) -> Decision:
    """What the gate would decide about contacting BCO-1 at ``at`` on ``channel``."""
    decision, _ = desk.node.explainer.explain(channel=channel, phone=None, account=_account_id(desk), at=at, actor="t")
    return decision


def test_a_right_party_conversation_starts_reg_fs_seven_quiet_days(
    tmp_path: Path, open_node: Callable[..., Node]
) -> None:
    desk = open_desk(tmp_path, open_node, law_pack="us", phone="+12127365000")
    desk.post(desk.call(), "refused_to_pay")
    zone = desk.node.site.zone
    for days in (1, 6):
        later = datetime.combine(desk.today() + timedelta(days=days), time(10), zone)
        assert Reason.QUIET_AFTER_CONVERSATION in _decision(desk, Channel.CALL, later).reasons
    a_week_on = datetime.combine(desk.today() + timedelta(days=7), time(10), zone)
    assert Reason.QUIET_AFTER_CONVERSATION not in _decision(desk, Channel.CALL, a_week_on).reasons


def test_the_campaign_no_longer_picks_a_stopped_account(desk: Desk) -> None:
    campaign = desk.node._campaign()
    assert campaign is not None
    account_id = _account_id(desk)

    def due() -> list[int]:
        with desk.node.db.session() as session:  # due now, whatever the call before scheduled
            session.get_one(Account, account_id).next_contact_at = None
        return [picked for picked, _ in campaign._due_accounts(desk.node.clock.now(), 10)[0]]

    assert due() == [account_id]
    desk.post(desk.call(), "dispute")
    assert due() == []
