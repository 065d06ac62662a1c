"""Promises' life (pending, then kept or broken from the creditor's payments with grace days; a broken one puts
its account at the front of the next day's list), callbacks offered to their agent then to anyone, the workspace
section of ``sites.toml``, and agents added with their dialer extension."""

from __future__ import annotations

from collections.abc import Callable
from datetime import date, datetime, time, timedelta
from decimal import Decimal
from pathlib import Path

import pytest
import sqlalchemy as sa

from cartera.core.errors import ConfigError
from cartera.core.hooks import load_plugins
from cartera.core.store.database import Database
from cartera.core.store.schema import Account, AuditEntry, PromiseRow, WebUser
from cartera.node import Node
from cartera.users.directory import UserDirectory
from cartera.workspace import callbacks
from cartera.workspace.errors import WorkspaceError
from cartera.workspace.promises import Instalment, PromiseState, judge
from cartera.workspace.service import CallbackRequest
from tests.conftest import run_site, write_sites
from tests.test_workspace_dispositions import Desk, one, open_desk

D = date(2026, 12, 1)
PLAN = (Instalment(Decimal(100), D), Instalment(Decimal(50), D + timedelta(days=30)))


@pytest.mark.parametrize(
    ("payments", "today", "state"),
    [
        ([], D + timedelta(days=3), PromiseState.PENDING),  # within the grace days
        ([], D + timedelta(days=4), PromiseState.BROKEN),
        ([(D + timedelta(days=3), Decimal(100))], D + timedelta(days=10), PromiseState.PENDING),  # late, in grace
        ([(D, Decimal("99.99"))], D + timedelta(days=4), PromiseState.BROKEN),
        ([(D, Decimal(100)), (D + timedelta(days=20), Decimal(50))], D + timedelta(days=20), PromiseState.KEPT),
        ([(D, Decimal(100))], D + timedelta(days=34), PromiseState.BROKEN),  # the second instalment missed
        ([(D - timedelta(days=1), Decimal(150))], D, PromiseState.KEPT),  # paid early
        ([(date(2062, 11, 23), Decimal(150))], D, PromiseState.PENDING),  # a payment dated after today: not yet
        ([(D + timedelta(days=2), Decimal(150))], D + timedelta(days=2), PromiseState.KEPT),  # paid today
    ],
)
def test_a_plan_is_judged_by_what_was_paid_by_each_date_plus_grace(
    payments: list[tuple[date, Decimal]], today: date, state: PromiseState
) -> None:
    assert judge(PLAN, payments, today, grace=3) is state


def test_review_keeps_a_paid_promise_and_breaks_a_missed_one(tmp_path: Path, open_node: Callable[..., Node]) -> None:
    desk = open_desk(tmp_path, open_node, "\n[sites.t.workspace]\npromise_grace_days = 0\n")
    service, zone = desk.node.workspace_service, desk.node.site.zone
    due = desk.today()
    desk.post(desk.call(), "promise_to_pay", promise=one("1000", due))
    service.sweep()
    assert [p.state for p in service.promises_of(_account(desk))] == ["pending"]
    with desk.node.db.session() as session:  # the day after the date, nothing paid
        promise = session.scalars(sa.select(PromiseRow)).one()
        promise.made_at -= timedelta(days=2)
        promise.instalments[0].due = due - timedelta(days=1)
    service.sweep()
    [broken] = service.promises_of(_account(desk))
    assert broken.state == "broken"
    with desk.node.db.reading() as session:
        account = session.get_one(Account, _account(desk))
        assert account.next_contact_at == datetime.combine(due + timedelta(days=1), time(), zone)
        assert session.scalars(sa.select(AuditEntry.action).where(AuditEntry.action.like("promise.%"))).all() == [
            "promise.broken"
        ]


def test_a_payment_reported_by_the_creditor_keeps_the_promise(tmp_path: Path, open_node: Callable[..., Node]) -> None:
    desk = open_desk(tmp_path, open_node)
    service = desk.node.workspace_service
    desk.post(desk.call(), "promise_to_pay", promise=one("1000", desk.today() + timedelta(days=2)))
    (desk.tmp_path / "inbox" / "pagos.csv").write_text(  # no payment date: the day of the import counts
        "cuenta;nombre;telefono1;saldo;accion\nBCO-1;;;1.000,00;pago\n", encoding="utf-8"
    )
    report = desk.node.creditor_sync().run_once()
    assert sum(r.payments for r in report.imports) == 1, report
    service.sweep()
    assert [p.state for p in service.promises_of(_account(desk))] == ["kept"]


@pytest.mark.abuse
def test_a_payment_dated_in_the_future_keeps_no_promise(tmp_path: Path, open_node: Callable[..., Node]) -> None:
    desk = open_desk(tmp_path, open_node)
    service = desk.node.workspace_service
    desk.post(desk.call(), "promise_to_pay", promise=one("5", desk.today() + timedelta(days=7)))
    (desk.tmp_path / "inbox" / "pagos.csv").write_text(  # the creditor's typo: 2062 for 2026
        "cuenta;nombre;telefono1;saldo;accion;fecha_pago\nBCO-1;;;5,00;pago;2062-11-23\n", encoding="utf-8"
    )
    (imported,) = desk.node.creditor_sync().run_once().imports
    assert imported.payments == 0
    assert [(e.line, e.field) for e in imported.quarantined] == [(2, "paid_on")]
    assert "2062-11-23" in imported.quarantined[0].reason
    service.sweep()
    assert [p.state for p in service.promises_of(_account(desk))] == ["pending"]


def test_a_callback_is_its_agents_then_anyones_once_overdue(tmp_path: Path, open_node: Callable[..., Node]) -> None:
    desk = open_desk(tmp_path, open_node, "\n[sites.t.workspace]\ncallback_release_minutes = 20\n")
    zone = desk.node.site.zone
    at = datetime.combine(desk.today() + timedelta(days=1), time(10), zone)  # tomorrow: Ley 2300's daily cap
    own = desk.post(desk.call(), "callback_requested", callback=CallbackRequest(at)).callback_id
    anyone = desk.post(desk.call(), "callback_requested", callback=CallbackRequest(at, for_anyone=True)).callback_id

    def due(minutes: int) -> list[tuple[int, bool]]:
        """The callbacks due ``minutes`` after their time, each with whether any agent may take it then."""
        now = at + timedelta(minutes=minutes)
        with desk.node.db.reading() as session:
            found = callbacks.due_callbacks(session, site="t", now=now)
        return [(c.id, c.for_anyone(now, timedelta(minutes=20))) for c in found]

    assert due(-1) == []
    assert due(0) == [(own, False), (anyone, True)]
    assert due(19) == [(own, False), (anyone, True)]
    assert due(20) == [(own, True), (anyone, True)]  # overdue by the release time: anyone's
    with desk.node.db.reading() as session:
        assert session.get_one(Account, _account(desk)).next_contact_at == at  # anyone's: the campaign calls then
        assert callbacks.due_callbacks(session, site="t", now=desk.node.clock.now()) == []  # not due yet


def _account(desk: Desk) -> int:
    with desk.node.db.reading() as session:
        return session.scalars(sa.select(Account.id).where(Account.ref == "BCO-1")).one()


def test_per_portfolio_codes_come_from_sites_toml(tmp_path: Path, open_node: Callable[..., Node]) -> None:
    extra = (
        '\n[[sites.t.workspace.portfolios."BANCO/TARJETAS".codes]]\n'
        'code = "paga_hoy"\nlabel_es = "Paga hoy"\nlabel_en = "Pays today"\n'
        'flags = ["human", "right_party", "promise"]\n'
    )
    desk = open_desk(tmp_path, open_node, extra)
    assert [c.code for c in desk.node.workspace_service.codes(_account(desk))] == ["paga_hoy"]
    saved = desk.post(desk.call(), "paga_hoy", promise=one("10", desk.today()))
    assert saved.promise_id is not None
    with pytest.raises(WorkspaceError, match="this portfolio's: paga_hoy"):
        desk.post(desk.call(), "promise_to_pay")


@pytest.mark.parametrize(
    ("codes", "message"),
    [
        ('flags = ["promise"]', "flag 'promise' needs 'right_party'"),
        ('flags = ["right_party", "third_party"]', "flags 'right_party' and 'third_party' contradict"),
        ('flags = ["sometimes"]', "sometimes"),
    ],
)
def test_a_bad_code_list_is_a_config_error_naming_the_key(tmp_path: Path, codes: str, message: str) -> None:
    extra = f'\n[[sites.t.workspace.codes]]\ncode = "x"\nlabel_es = "X"\nlabel_en = "X"\n{codes}\n'
    path = write_sites(tmp_path, extra=extra)
    with pytest.raises(ConfigError) as caught:
        Node.open(path, "t", load_plugins(entry_points=False))
    assert "workspace" in str(caught.value)
    assert message in str(caught.value)


def test_users_add_an_agent_with_its_extension(tmp_path: Path) -> None:
    config = write_sites(tmp_path)
    env = {"CARTERA_USER_PASSWORD": "una clave larga"}
    added = run_site(config, "users", "add", "ana", "--role", "agent", "--extension", "PJSIP/agent1", env=env)
    assert added.returncode == 0, added.stderr
    listed = run_site(config, "users", "list").stdout.splitlines()[1].split()
    assert listed[:3] == ["ana", "agent", "(PJSIP/agent1)"]
    missing = run_site(config, "users", "add", "beto", "--role", "agent", env=env)
    assert missing.returncode == 2
    assert "--extension: an agent needs --extension" in missing.stderr
    not_agent = run_site(config, "users", "add", "carla", "--role", "supervisor", "--extension", "x", env=env)
    assert not_agent.returncode == 2
    taken = run_site(config, "users", "add", "dora", "--role", "agent", "--extension", "PJSIP/agent1", env=env)
    assert taken.returncode == 2
    assert "extension 'PJSIP/agent1' is user 'ana''s already" in taken.stderr
    db = Database(f"sqlite:///{tmp_path / 'var' / 't.db'}")
    with db.reading() as session:
        assert session.execute(sa.select(WebUser.name, WebUser.extension)).all() == [("ana", "PJSIP/agent1")]
    assert UserDirectory(db).by_extension("PJSIP/agent1") is not None
    db.dispose()
