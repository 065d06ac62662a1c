"""The database going away (#18 item 3): a private PostgreSQL cluster stopped in the middle of a campaign and started
again. While it is down the node places no call and holds the dialer's reports; once it is back the node writes
them, renews its lease and resumes: every call placed is recorded once, with its activity and its recording."""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from pathlib import Path

import pytest
import sqlalchemy as sa

from cartera.core.hooks import Hooks
from cartera.core.store.schema import ActivityRow, ContactAttempt, RecordingRow
from cartera.node import Node
from tests.conftest import write_portfolio, write_sites
from tests.peers.private_postgres import private_postgres
from tests.test_standby import wait_for

pytestmark = [pytest.mark.postgres, pytest.mark.cluster]

OUTAGE_S = 4.0  #: how long the store stays down: shorter than the site's lease (12 s), so the node keeps it


class Events(logging.Handler):
    """The node's events as logged (name, fields, real time), from every thread."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.seen: list[tuple[str, dict[str, object], float]] = []
        self._lock_seen = threading.Lock()

    def emit(self, record: logging.LogRecord) -> None:
        with self._lock_seen:
            self.seen.append((record.getMessage(), dict(getattr(record, "fields", {})), record.created))

    def named(self, name: str) -> list[tuple[dict[str, object], float]]:
        with self._lock_seen:
            return [(fields, at) for event, fields, at in self.seen if event == name]


def test_a_node_holds_the_dialers_reports_through_a_postgresql_restart_and_resumes(
    tmp_path: Path, hooks: Hooks
) -> None:
    events = Events()
    cartera_log = logging.getLogger("cartera")
    cartera_log.addHandler(events)
    level = cartera_log.level
    cartera_log.setLevel(logging.INFO)
    try:
        with private_postgres() as cluster:
            (tmp_path / "site").mkdir()
            path = write_sites(tmp_path / "site", database=cluster.url)
            path.write_text(
                path.read_text()
                .replace("speed = 600", "speed = 10")  # calls last a second or two: some end while the store is down
                .replace("[sites.t.web]", "[sites.t.web]\nenabled = false")
                .replace("retry_after_minutes = 60", "retry_after_minutes = 600")  # each account dialled once
            )
            rows = [f"BCO-{n};Deudor {n};300 {n:07d};;1.000,00;COP" for n in range(1, 2001)]
            write_portfolio(tmp_path / "site" / "inbox", rows)
            node = Node.open(path, "t", hooks)
            try:
                node.creditor_sync().run_once()
                run = threading.Thread(target=node.run, name="node")
                run.start()
                try:
                    wait_for("calls end", lambda: len(events.named("call.finished")) >= 10, 120)
                    down = time.time()
                    cluster.stop()
                    time.sleep(OUTAGE_S)
                    up = time.time()
                    cluster.start()
                    wait_for("the held reports written", lambda: bool(events.named("store.reports_written")), 60)
                    wait_for("calls placed again", lambda: len(placed_after(events, up)) >= 5, 60)
                    wait_for("the lease renewed", lambda: bool(events.named("lease.renewed")), 30)
                finally:
                    node.stop()
                    run.join(120)
                assert not run.is_alive()
                assert_nothing_lost_or_doubled(node, events, down, up)
            finally:
                node.close()
    finally:
        cartera_log.removeHandler(events)
        cartera_log.setLevel(level)


def placed_after(events: Events, moment: float) -> list[object]:
    return [fields["attempt"] for fields, at in events.named("call.placing") if at > moment]


def assert_nothing_lost_or_doubled(node: Node, events: Events, down: float, up: float) -> None:
    held = events.named("store.reports_held")
    assert held, "no report arrived while the store was down: the outage tested nothing"
    assert [f for f, at in events.named("call.placing") if down + 0.5 < at < up] == []  # no call while down
    assert events.named("lease.renew_failed")
    assert not events.named("lease.lost")  # the node kept its site
    assert not events.named("store.reports_lost")

    placed = Counter(fields["attempt"] for fields, _ in events.named("call.placing"))
    finished = Counter(fields["attempt"] for fields, _ in events.named("call.finished"))
    assert [a for a, n in placed.items() if n > 1] == []
    assert [a for a, n in finished.items() if n > 1] == []  # each call's end recorded once
    assert set(finished) == set(placed)  # and none lost
    with node.db.session() as session:
        attempts = session.execute(
            sa.select(ContactAttempt.id, ContactAttempt.account_id, ContactAttempt.state, ContactAttempt.outcome)
        ).all()
        activities = Counter(
            session.scalars(sa.select(ActivityRow.account_id).where(ActivityRow.kind == "call_attempt"))
        )
        recorded = Counter(session.scalars(sa.select(RecordingRow.attempt_id)))
    assert {a.id for a in attempts} == set(placed)
    assert [a.id for a in attempts if a.state != "finished"] == []
    assert [n for n in Counter(a.account_id for a in attempts).values() if n > 1] == []  # no account dialled twice
    assert [n for n in activities.values() if n > 1] == []  # no activity doubled
    unanswered = {a.account_id for a in attempts if a.outcome != "answered"}
    assert unanswered <= set(activities), unanswered - set(activities)  # none lost
    answered = {a.id for a in attempts if a.outcome == "answered"}
    assert answered <= set(recorded), answered - set(recorded)  # every answered call's recording catalogued
    assert [n for n in recorded.values() if n > 1] == []
    print(f"{len(placed)} calls, {len(held)} outage(s) held reports, {len(answered)} answered")
