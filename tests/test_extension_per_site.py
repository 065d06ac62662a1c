"""An agent's extension is its seat at one site's dialer: sites sharing a store may each have a seat of the same
name, and a user of another site holding it neither owns this site's calls on it nor blocks this site's agent."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import sqlalchemy as sa

from cartera.core.errors import UsageError
from cartera.core.store.schema import AuditEntry, DispositionRow, PromiseRow
from cartera.node import Node
from cartera.users.directory import Grant, Role, UserDirectory
from cartera.workspace.errors import NotYourCall
from tests.test_agent_owns_disposition import report_promise
from tests.test_workspace_dispositions import ROBOT, open_desk

PASSWORD = "correct horse battery"


@pytest.mark.abuse
def test_another_sites_user_on_this_sites_seat_leaves_the_dialers_promise_stored(
    tmp_path: Path, open_node: Callable[..., Node]
) -> None:
    desk = open_desk(tmp_path, open_node)
    UserDirectory(desk.node.db).add("otra", PASSWORD, Role.AGENT, [Grant("x")], extension=ROBOT)
    attempt = desk.call(connected_to=ROBOT, ended=False)
    report_promise(desk, attempt, ROBOT)
    with desk.node.db.reading() as session:
        stored = session.execute(sa.select(DispositionRow.code, DispositionRow.agent)).all()
        promises = session.scalar(sa.select(sa.func.count()).select_from(PromiseRow))
        ignored = session.scalar(
            sa.select(sa.func.count()).where(AuditEntry.action == "call.dialer_disposition_ignored")
        )
    assert stored == [("promise_to_pay", ROBOT)]
    assert (promises, ignored) == (1, 0)


@pytest.mark.abuse
def test_another_sites_user_on_this_sites_seat_cannot_disposition_its_call(
    tmp_path: Path, open_node: Callable[..., Node]
) -> None:
    desk = open_desk(tmp_path, open_node)
    UserDirectory(desk.node.db).add("otra", PASSWORD, Role.AGENT, [Grant("x")], extension=ROBOT)
    attempt = desk.call(connected_to=ROBOT)
    before = desk.stored()
    with pytest.raises(NotYourCall):
        desk.post(attempt, "right_party_contact", agent="otra")
    assert desk.stored() == before


def test_an_extension_is_unique_among_the_users_of_each_site_it_is_granted(
    tmp_path: Path, open_node: Callable[..., Node]
) -> None:
    desk = open_desk(tmp_path, open_node)
    users = UserDirectory(desk.node.db)
    users.add("otra", PASSWORD, Role.AGENT, [Grant("x")], extension="agent-01")
    users.add("tomas", PASSWORD, Role.AGENT, [Grant("t")], extension="agent-01")  # site t's own seat agent-01
    with pytest.raises(UsageError, match="extension 'agent-01' is user 'tomas''s already at site 't'"):
        users.add("lucia", PASSWORD, Role.AGENT, [Grant("t")], extension="agent-01")
    with pytest.raises(UsageError, match="extension 'agent-01' is user 'otra''s already at site 'x'"):
        users.grant("tomas", "x", [Grant("x")])
    assert [grant.site for grant in users.grant("otra", "z", [Grant("z")]).grants] == ["x", "z"]
