"""An account is (portfolio, ref): a reference naming accounts of two creditors is refused with its candidates
(exit 2) on every path, a qualified one reaches its own debtor only; two sites sharing a PostgreSQL store each
hold their own copy of a portfolio they both work; and one allow-list for refs, at import and on search."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

import pytest
from sqlalchemy import select

from cartera.core.errors import NotFound, UsageError
from cartera.core.hooks import load_plugins
from cartera.core.models import AssignmentAction, AssignmentBatch, AssignmentRow, Channel
from cartera.core.store.schema import Account, AuditEntry, ContactAttempt, ContactHours, QuarantinedRow
from cartera.node import Node
from cartera.recordings.access import SearchFilters
from tests.conftest import SITE_TOML, run_site, write_sites
from tests.peers.net import free_port

pytestmark = pytest.mark.abuse

#: (creditor, portfolio, phone) of the two accounts with ref R-1 at site t
BANCO = ("BANCO", "TARJETAS", "3001234567")
OTRO = ("OTRO", "CUENTAS", "3157654321")


def batch(*rows: tuple[str, str, str, str], source: str = "test") -> AssignmentBatch:
    """(creditor, portfolio, ref, phone) rows, each a new assignment."""
    items = [
        AssignmentRow(line, creditor, portfolio, ref, f"Deudor {creditor}", (phone,), Decimal(1000), "COP")
        for line, (creditor, portfolio, ref, phone) in enumerate(rows, 2)
    ]
    digest = hashlib.sha256(repr(rows).encode()).hexdigest()
    return AssignmentBatch(source, digest, items)


@dataclass(frozen=True)
class Twice:
    node: Node
    config: Path

    def account_id(self, portfolio: str) -> int:
        """The id of R-1 in ``portfolio``."""
        with self.node.db.session() as session:
            query = select(Account.id).where(Account.ref == "R-1", Account.portfolio.has(code=portfolio))
            return session.scalars(query).one()


@pytest.fixture
def twice(tmp_path: Path) -> Iterator[Twice]:
    """Site ``t`` with account ref R-1 in BANCO/TARJETAS and in OTRO/CUENTAS."""
    config = write_sites(tmp_path)
    node = Node.open(config, "t", load_plugins(entry_points=False))
    try:
        report = node.importer.import_batch(batch((*BANCO[:2], "R-1", BANCO[2]), (*OTRO[:2], "R-1", OTRO[2])), "t")
        assert report.new == 2
        yield Twice(node, config)
    finally:
        node.close()


@pytest.mark.parametrize(
    "command",
    [
        ("call", "--account", "R-1", "--wait", "1", "3001234567"),
        ("sms", "--account", "R-1", "3001234567", "hola"),
        ("explain", "--account", "R-1"),
        ("contact-prefs", "show", "--account", "R-1"),
        ("contact-prefs", "hours", "--account", "R-1", "--hours", "mon-fri=18:00-19:00"),
        ("sms-template", "preview", "--account", "R-1"),
        ("recordings", "search", "--account", "R-1"),
    ],
    ids=lambda command: " ".join(command[:2]),
)
def test_an_ambiguous_account_is_refused_listing_the_candidates(twice: Twice, command: tuple[str, ...]) -> None:
    answer = run_site(twice.config, *command)
    assert answer.returncode == 2, answer.stdout + answer.stderr
    assert "account 'R-1' is ambiguous at site 't': BANCO/TARJETAS/R-1, OTRO/CUENTAS/R-1" in answer.stderr
    with twice.node.db.session() as session:
        assert session.scalars(select(ContactAttempt)).all() == []
        assert session.scalars(select(ContactHours)).all() == []


def test_a_qualified_reference_reaches_its_own_debtor_only(twice: Twice) -> None:
    calls, explainer = twice.node.calls, twice.node.explainer
    with pytest.raises(UsageError, match="BANCO/TARJETAS/R-1, OTRO/CUENTAS/R-1"):
        calls.place_call(phone=None, account="R-1", actor="test")
    for reference in ("CUENTAS/R-1", "OTRO/CUENTAS/R-1"):
        _, subject = explainer.explain(
            phone=None, account=reference, channel=Channel.CALL, at=twice.node.clock.now(), actor="test"
        )
        assert (subject.portfolio, subject.phone) == ("OTRO/CUENTAS", "+573157654321")
    request = calls.place_call(phone=None, account="OTRO/CUENTAS/R-1", actor="test")
    assert request.phone == "+573157654321"
    otro = twice.account_id("CUENTAS")
    with twice.node.db.session() as session:
        assert session.get_one(ContactAttempt, request.attempt_id).account_id == otro
        decided = session.scalars(select(AuditEntry).where(AuditEntry.action == "compliance.allow")).one()
        assert (decided.details["account"], decided.details["portfolio"]) == ("R-1", "OTRO/CUENTAS")
    with pytest.raises(NotFound, match="no account 'BANCO/CUENTAS/R-1'"):
        calls.place_call(phone=None, account="BANCO/CUENTAS/R-1", actor="test")
    with pytest.raises(UsageError, match="CREDITOR/PORTFOLIO/REF"):
        calls.place_call(phone=None, account="A/B/C/R-1", actor="test")


def test_contact_prefs_of_a_qualified_reference_land_on_that_account(twice: Twice) -> None:
    hours = ("contact-prefs", "hours", "--account", "TARJETAS/R-1", "--hours", "mon-fri=18:00-19:00")
    answer = run_site(twice.config, *hours)
    assert answer.returncode == 0, answer.stderr
    banco = twice.account_id("TARJETAS")
    with twice.node.db.session() as session:
        assert session.scalars(select(ContactHours.account_id)).all() == [banco]


def test_cli_search_takes_a_qualified_account(twice: Twice) -> None:
    answer = run_site(twice.config, "recordings", "search", "--account", "OTRO/CUENTAS/R-1")
    assert answer.returncode == 0, answer.stderr
    assert answer.stdout.strip() == "no recordings match"


def test_an_account_ref_outside_the_allow_list_is_quarantined_and_refused_by_search(tmp_path: Path) -> None:
    config = write_sites(tmp_path)
    node = Node.open(config, "t", load_plugins(entry_points=False))
    try:
        bad = ("BCO 1", "BCO/1", "-BCO", "é1", "x" * 65, "BCO\n1")
        rows = [("BANCO", "TARJETAS", ref, "3001234567") for ref in ("BCO-1", *bad)]
        rows.append(("BAN CO", "TARJETAS", "BCO-9", "3001234567"))
        report = node.importer.import_batch(batch(*rows), "t")
        assert report.new == 1
        assert [(e.line, e.field) for e in report.quarantined] == [(line, "account_ref") for line in range(3, 9)] + [
            (9, "creditor")
        ]
        assert "[A-Za-z0-9._@-]" in report.quarantined[0].reason
        with node.db.session() as session:
            assert session.scalars(select(Account.ref)).all() == ["BCO-1"]
            assert len(session.scalars(select(QuarantinedRow)).all()) == 7
        for ref in (r for r in bad if "/" not in r):  # a slash qualifies a reference: PORTFOLIO/REF
            with pytest.raises(UsageError, match="account"):
                node.library.search(SearchFilters(account=ref), actor="test")
        assert node.library.search(SearchFilters(account="BCO-1"), actor="test") == []
    finally:
        node.close()


def two_sites(directory: Path, database: str) -> Path:
    """Sites ``a`` and ``c`` on one store, each with its own data directory and creditor folders. The debtor of
    the batch does not answer: after a conversation at one site, Ley 2300 holds the other to the debtor's one
    contact a day (tests/test_cluster.py)."""
    path = directory / "sites.toml"
    text = "".join(
        SITE_TOML.format(start="2026-11-23T09:00:00-05:00", database=f'database = "{database}"', web_port=free_port())
        .replace("seed = 7", 'seed = 7\nscripted = { "+573001234567" = "busy" }')
        .replace("[sites.t", f"[sites.{name}")
        .replace('data_dir = "var/t"', f'data_dir = "var/{name}"')
        .replace('inbox = "inbox"', f'inbox = "inbox_{name}"')
        .replace('outbox = "exports"', f'outbox = "exports_{name}"')
        for name in ("a", "c")
    )
    path.write_text(text, encoding="utf-8")
    return path


@pytest.mark.postgres
def test_two_sites_on_one_store_each_hold_their_own_copy_of_a_portfolio(tmp_path: Path, postgres_url: str) -> None:
    config = two_sites(tmp_path, postgres_url)
    nodes = {name: Node.open(config, name, load_plugins(entry_points=False)) for name in ("a", "c")}
    try:
        assigned = batch(("BANCO", "P", "R", "3001234567"))
        reports = {name: node.importer.import_batch(assigned, "test") for name, node in nodes.items()}
        assert (reports["a"].new, reports["c"].new, reports["c"].unchanged) == (1, 1, 0)
        for name, node in nodes.items():
            _, subject = node.explainer.explain(
                phone=None, account="R", channel=Channel.CALL, at=node.clock.now(), actor="test"
            )
            assert subject.portfolio == "BANCO/P", name
            request = node.calls.place_call(phone=None, account="BANCO/P/R", actor="test")
            assert node.calls.wait_for_call(request.attempt_id, timeout=30) is not None
        with nodes["a"].db.session() as session:
            attempts = session.execute(
                select(ContactAttempt.site, Account.portfolio_id).join(Account).order_by(ContactAttempt.site)
            ).all()
        assert [site for site, _ in attempts] == ["a", "c"]
        assert attempts[0][1] != attempts[1][1], "each site calls its own copy of the account"
        withdrawal = AssignmentRow(2, "BANCO", "P", "R", "", (), Decimal(0), "COP", action=AssignmentAction.WITHDRAW)
        withdrawn = AssignmentBatch("w", "w" * 64, [withdrawal])
        assert nodes["c"].importer.import_batch(withdrawn, "test").withdrawn == 1
        with nodes["a"].db.session() as session:
            statuses = session.execute(select(Account.status).order_by(Account.id)).scalars().all()
        assert statuses == ["active", "withdrawn"], "site c's withdrawal leaves site a's assignment alone"
    finally:
        for node in nodes.values():
            node.close()
