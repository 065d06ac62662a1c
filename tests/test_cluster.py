"""A debtor's limits across accounts, nodes and sites (#18 item 1): every node and site of one store counts the
debtor's contacts keyed as the law counts them, and decisions about one debtor are serialized across nodes."""

from __future__ import annotations

import multiprocessing
import subprocess
import sys
from collections.abc import Callable
from datetime import datetime, timedelta
from decimal import Decimal
from multiprocessing.queues import Queue
from multiprocessing.synchronize import Barrier
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
import sqlalchemy as sa

from cartera.contact.compliance import Reason
from cartera.contact.targets import Denied
from cartera.core.hooks import load_plugins
from cartera.core.models import AssignmentBatch, AssignmentRow, CallOutcome, Channel
from cartera.core.store.schema import Account, ContactAttempt
from cartera.node import Node
from tests.conftest import REPO

BOGOTA = ZoneInfo("America/Bogota")
ROUNDS = 1000

SITE = """
[sites.{name}]
timezone = "America/Bogota"
country = "CO"
data_dir = "var/{name}"
{database}

[sites.{name}.clock]
mode = "simulated"
start = 2026-11-23T09:00:00-05:00
speed = 60

[sites.{name}.compliance]
authorised_channels = ["call", "sms"]

[sites.{name}.dialer]
plugin = "simulator"
seed = 7
record = false
outcome_weights = {{ {outcome} = 1 }}
disposition_weights = {{ right_party_contact = 1 }}

[sites.{name}.sms]
plugin = "outbox"
path = "sms/{name}.jsonl"
{extra}
"""
#: A site's own limit per debt (Regulation F's key): one call a day about each debt.
ONE_CALL_A_DAY_PER_DEBT = """
[[sites.{name}.compliance.rules]]
kind = "frequency"
channels = ["call"]
max = 1
days = 1
scope = "account"
"""


def sites(directory: Path, *names: str, database: str | None = None, outcome: str = "busy", extra: str = "") -> Path:
    """A sites.toml of Colombian sites ``names`` on one store (``database``; default: each its own SQLite);
    ``extra`` is added to each site (``{name}``: the site's name)."""
    path = directory / "sites.toml"
    line = f'database = "{database}"' if database else ""
    path.write_text(
        "".join(SITE.format(name=name, database=line, outcome=outcome, extra=extra.format(name=name)) for name in names)
    )
    return path


def number(debtor: int) -> str:
    """A Colombian mobile of debtor ``debtor``, as a creditor writes it."""
    return f"300 {1_000_000 + debtor:07d}"


def assign(node: Node, *accounts: tuple[str, str, str]) -> None:
    """Import ``(creditor, account ref, phone)`` accounts into the node's site, portfolio TARJETAS."""
    rows = [
        AssignmentRow(line, creditor, "TARJETAS", ref, "Ana Gómez", (phone,), Decimal("1000000"), "COP")
        for line, (creditor, ref, phone) in enumerate(accounts, 2)
    ]
    report = node.importer.import_batch(AssignmentBatch("test", f"sha-{len(rows)}-{rows[0].account_ref}", rows), "t")
    assert not report.quarantined, report


def talked_yesterday(node: Node, refs: list[str]) -> None:
    """A conversation with the debtor of each of ``refs`` yesterday (Sunday), recorded by ``node``'s site: from
    then on Ley 2300 allows the debtor one contact a day."""
    at = datetime(2026, 11, 22, 10, 0, tzinfo=BOGOTA)
    with node.db.session() as session:
        accounts = session.execute(sa.select(Account.id, Account.ref).where(Account.ref.in_(refs))).all()
        session.add_all(
            ContactAttempt(
                site=node.site.name,
                account_id=account.id,
                phone=f"+57{number(int(account.ref.rsplit('-', 1)[1])).replace(' ', '')}",
                state="finished",
                requested_at=at,
                answered_at=at,
                outcome="answered",
                disposition="right_party_contact",
            )
            for account in accounts
        )


def contender(round_: int, worker: int) -> dict[str, str | None]:
    """What worker ``worker`` asks for in round ``round_``: both the same account, two accounts of the debtor, or
    an account and the debtor's number without one."""
    mode = round_ % 3
    if worker == 0 or mode == 0:
        return {"phone": None, "account": f"A-{round_}"}
    if mode == 1:
        return {"phone": None, "account": f"B-{round_}"}
    return {"phone": number(round_), "account": None}


def decide_rounds(config: str, worker: int, barrier: Barrier, results: Queue[list[str]]) -> None:
    """One node (a separate process): in each round, wait for the other node, then ask for the round's call. Its
    answers go to ``results`` however it ends; a failure breaks the barrier, so the other node stops too."""
    answers: list[str] = []
    try:
        node = Node.open(Path(config), "t", load_plugins(entry_points=False))
        try:
            for round_ in range(ROUNDS):
                barrier.wait(timeout=60)
                try:
                    node.calls.place_call(**contender(round_, worker), actor=f"node-{worker}")
                    answers.append("allowed")
                except Denied as denied:
                    answers.append(",".join(denied.decision.reasons))
        finally:
            node.close()
    except BaseException:
        barrier.abort()
        raise
    finally:
        results.put(answers)


@pytest.mark.postgres
@pytest.mark.cluster
def test_two_nodes_deciding_at_the_same_instant_allow_one_contact(
    tmp_path: Path, open_node: Callable[..., Node], postgres_url: str
) -> None:
    path = sites(tmp_path, "t", database=postgres_url)
    setup = open_node(path)
    debtors = range(ROUNDS)
    assign(setup, *(("BANCO", f"A-{n}", number(n)) for n in debtors))
    assign(setup, *(("OTRO", f"B-{n}", number(n)) for n in debtors))
    talked_yesterday(setup, [f"A-{n}" for n in debtors])

    spawn = multiprocessing.get_context("spawn")
    barrier = spawn.Barrier(2)
    results: Queue[list[str]] = spawn.Queue()
    nodes = [spawn.Process(target=decide_rounds, args=(str(path), worker, barrier, results)) for worker in (0, 1)]
    for node in nodes:
        node.start()
    answers = [results.get(timeout=900), results.get(timeout=900)]
    for node in nodes:
        node.join(60)
        assert node.exitcode == 0
    assert len(answers[0]) == len(answers[1]) == ROUNDS
    both = list(zip(*answers, strict=True))
    twice = [n for n, pair in enumerate(both) if pair.count("allowed") != 1]
    assert not twice, f"rounds without exactly one contact allowed: {twice[:20]} ({len(twice)} of {ROUNDS})"
    assert {answer for pair in both for answer in pair} == {"allowed", Reason.FREQUENCY_CAP.value}
    with setup.db.session() as session:
        today = datetime(2026, 11, 23, tzinfo=BOGOTA)
        placed = session.scalar(sa.select(sa.func.count()).where(ContactAttempt.requested_at >= today))
        debtors_called = session.scalar(
            sa.select(sa.func.count(sa.distinct(ContactAttempt.phone))).where(ContactAttempt.requested_at >= today)
        )
    assert placed == debtors_called == ROUNDS


@pytest.mark.postgres
@pytest.mark.cluster
def test_the_second_site_is_refused_and_explain_names_the_first(
    tmp_path: Path, open_node: Callable[..., Node], postgres_url: str
) -> None:
    path = sites(tmp_path, "t", "b", database=postgres_url, outcome="answered")
    first, second = open_node(path, "t"), open_node(path, "b")
    assign(first, ("BANCO", "A-7", number(7)))
    assign(second, ("OTRO", "B-7", number(7)))
    talked_yesterday(first, ["A-7"])
    request = first.calls.place_call(phone=None, account="A-7", actor="test")
    result = first.calls.wait_for_call(request.attempt_id, timeout=30)
    assert result is not None
    assert result.outcome is CallOutcome.ANSWERED

    with pytest.raises(Denied) as denied:
        second.calls.place_call(phone=None, account="B-7", actor="test")
    assert denied.value.decision.reasons == (Reason.FREQUENCY_CAP,)
    assert denied.value.decision.rules == ("co.ley2300.art3.una_vez_al_dia",)
    assert denied.value.decision.next_allowed_at == datetime(2026, 11, 24, 7, 0, tzinfo=BOGOTA)

    at = second.clock.now().astimezone(BOGOTA).isoformat()  # whole: cut to the minute, it preceded today's call
    command = [sys.executable, str(REPO / "run_site.py"), "--config", str(path), "--site", "b", "explain"]
    explained = subprocess.run(
        [*command, "--account", "B-7", "--at", at],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
        cwd=tmp_path,
    )
    assert explained.returncode == 0, explained.stdout + explained.stderr
    out = explained.stdout
    assert "decision: DENIED" in out, out
    assert "DENY  co.ley2300.art3.una_vez_al_dia (frequency_cap)" in out, out
    assert "history: 2 calls and 0 texts counted" in out, out
    today = f"Mon 23 Nov 2026 {request_time(first, request.attempt_id)} America/Bogota"
    assert f"  call {today} to +573001000007 (another account or none, a conversation) by site t" in out, out
    assert "  call Sun 22 Nov 2026 10:00 America/Bogota to +573001000007" in out, out


@pytest.mark.postgres
@pytest.mark.cluster
def test_a_limit_per_debt_counts_the_debt_at_every_site_and_no_other_debt(
    tmp_path: Path, open_node: Callable[..., Node], postgres_url: str
) -> None:
    path = sites(tmp_path, "t", "b", database=postgres_url, extra=ONE_CALL_A_DAY_PER_DEBT)
    first, second = open_node(path, "t"), open_node(path, "b")
    assign(first, ("BANCO", "A-8", number(8)))
    assign(second, ("BANCO", "A-8", number(8)), ("BANCO", "C-8", number(8)))  # the same debt, and another one
    first.calls.place_call(phone=None, account="A-8", actor="test")
    with pytest.raises(Denied) as denied:
        second.calls.place_call(phone=None, account="A-8", actor="test")
    assert denied.value.decision.rules == ("site.rules.1",)
    second.calls.place_call(phone=None, account="C-8", actor="test")  # no conversation yet: Ley 2300 allows it


def request_time(node: Node, attempt_id: int) -> str:
    with node.db.session() as session:
        return f"{session.get_one(ContactAttempt, attempt_id).requested_at.astimezone(BOGOTA):%H:%M}"


def test_one_debtor_with_two_accounts_at_one_site_is_counted_together(
    tmp_path: Path, open_node: Callable[..., Node]
) -> None:
    node = open_node(sites(tmp_path, "t"))
    assign(node, ("BANCO", "A-3", number(3)), ("BANCO", "B-3", number(3)), ("BANCO", "A-4", number(4)))
    talked_yesterday(node, ["A-3", "A-4"])
    node.calls.place_call(phone=None, account="A-3", actor="test")
    with pytest.raises(Denied) as denied:
        node.calls.place_call(phone=None, account="B-3", actor="test")
    assert denied.value.decision.rules == ("co.ley2300.art3.una_vez_al_dia",)
    with pytest.raises(Denied):
        node.calls.place_call(phone=number(3), account=None, actor="test")
    with pytest.raises(Denied) as texted:
        node.texts.send_sms(phone=None, account="B-3", text="Recuerde su pago", actor="test")
    assert set(texted.value.decision.reasons) == {Reason.FREQUENCY_CAP, Reason.ONE_CHANNEL_AFTER_CONTACT}
    node.calls.place_call(phone=None, account="A-4", actor="test")  # another debtor: their own count
    tomorrow = node.clock.now() + timedelta(days=1)
    decision, _ = node.explainer.explain(phone=None, account="B-3", channel=Channel.CALL, at=tomorrow, actor="t")
    assert decision.allowed
