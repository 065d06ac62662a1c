"""A call reads its account once: the campaign hands ``place_call`` the account's id, the command line a
reference (resolved by :func:`cartera.portfolio.identity.resolve_account`); the compliance history then reads the
ids of the debtor's accounts once (:mod:`cartera.contact.compliance.debtor`)."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from cartera.core.store.schema import Account
from cartera.node import Node
from tests.conftest import write_portfolio, write_sites


@contextmanager
def account_reads(node: Node) -> Iterator[list[str]]:
    """The SELECTs that read the accounts table meanwhile on this thread: the call's own. The dialer reports the
    call's connection and end on its own thread whenever the call gets there (the simulator's, a few
    milliseconds later at the test clock's speed), and handling those reports reads the account again."""
    reads: list[str] = []
    caller = threading.get_ident()

    def seen(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        if threading.get_ident() != caller:
            return
        if statement.lstrip().upper().startswith("SELECT") and " accounts" in statement.partition(" WHERE ")[0]:
            reads.append(statement)

    sa.event.listen(node.db.engine, "before_cursor_execute", seen)
    try:
        yield reads
    finally:
        sa.event.remove(node.db.engine, "before_cursor_execute", seen)


def test_a_call_by_account_id_reads_the_account_once(tmp_path: Path, open_node: Callable[..., Node]) -> None:
    path = write_sites(tmp_path)
    write_portfolio(tmp_path / "inbox", ["BCO-1;Ana Gómez;300 123 4567;;1.250.000,50;COP"])
    node = open_node(path)
    node.creditor_sync().run_once()
    with node.db.session() as session:
        account_id = session.scalars(sa.select(Account.id).where(Account.ref == "BCO-1")).one()
    with account_reads(node) as reads:
        request = node.calls.place_call(phone=None, account=account_id, actor="campaign")
    assert len(reads) == 2, reads  # the account, then the ids of the debtor's accounts (compliance/debtor.py)
    assert "accounts.balance" not in reads[1].partition(" FROM ")[0], "the debtor's accounts: their ids alone"
    assert request.account_ref == "BCO-1"
    with account_reads(node) as reads:
        second = node.calls.place_call(phone="310 765 4321", account="BCO-1", actor="os:it")
        assert node.calls.wait_for_call(second.attempt_id, 30) is not None  # its reports read the account meanwhile
    assert len(reads) == 3, reads  # the reference resolved, the account read, the ids of the debtor's accounts
