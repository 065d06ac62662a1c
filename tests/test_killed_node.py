"""A node killed (kill -9) with calls in flight: its next start settles every call it left ``placing``."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable
from pathlib import Path

import pytest
from sqlalchemy import select

from cartera.core.models import CallOutcome, CallResult
from cartera.core.store.schema import ContactAttempt
from cartera.node import Node
from cartera.plugins.dialers.simulator.plugin import SIMULATION_LOST
from cartera.web.i18n import LANGUAGES, translate
from tests.conftest import kill_site_with_calls_in_flight, placing, run_site, write_portfolio, write_sites


def test_the_next_start_records_the_calls_a_killed_simulator_node_left_as_unknown(tmp_path: Path) -> None:
    site = write_sites(tmp_path)
    # Every call answered and talking for an hour of the site's clock (6 real seconds): in flight when killed.
    site.write_text(
        site.read_text()
        .replace("seed = 7", "seed = 7\noutcome_weights = { answered = 1 }")
        .replace("talk_seconds = [5, 30]", "talk_seconds = [3600, 3600]")
    )
    write_portfolio(tmp_path / "inbox", [f"BCO-{n};Deudor {n};300 555 {n:04d};;1.000,00;COP" for n in range(1, 9)])
    left = kill_site_with_calls_in_flight(site, 4)
    assert len(left) >= 4

    again = run_site(site, "--log-format", "json", "run", "--duration", "1")
    assert again.returncode == 0, again.stderr

    assert placing(site) == []
    with sqlite3.connect(tmp_path / "var" / "t.db") as db:
        ended = db.execute(
            f"select outcome, raw_cause from contact_attempts where id in ({','.join(map(str, left))})"
        ).fetchall()
        unknown_activities = db.execute(
            "select count(*) from activities where kind = 'call_attempt' and outcome = 'unknown'"
        ).fetchone()
        audited = db.execute("select details from audit_log where action = 'call.reconcile'").fetchall()
        held = db.execute(  # in flight, an account waits a day; its call's end reschedules it (retry: 60 min)
            "select count(*) from contact_attempts c join accounts a on a.id = c.account_id"
            f" where c.id in ({','.join(map(str, left))}) and a.next_contact_at >= datetime(c.requested_at, '+1 day')"
        ).fetchone()
    assert ended == [("unknown", SIMULATION_LOST)] * len(left)
    assert unknown_activities == (len(left),)
    assert sorted(json.loads(details)["attempt"] for (details,) in audited) == left
    events = [json.loads(line) for line in again.stderr.splitlines() if line.startswith("{")]
    assert [e["attempts"] for e in events if e["event"] == "call.reconciling"] == [left]
    assert f"reconciled   {len(left)} calls a killed run left in flight: {len(left)} unknown" in again.stdout
    assert held == (0,)
    explained = run_site(site, "explain", "--account", "BCO-1")
    assert "history: 1 call and 0 texts counted" in explained.stdout, explained.stdout + explained.stderr


@pytest.mark.postgres
def test_a_node_settles_only_its_own_sites_calls_on_a_store_shared_by_sites(
    tmp_path: Path, postgres_url: str, open_node: Callable[..., Node]
) -> None:
    configs = {}
    for name in ("t", "u"):
        (tmp_path / name).mkdir()
        config = write_sites(tmp_path / name, database=postgres_url)
        config.write_text(config.read_text().replace("[sites.t", f"[sites.{name}"))
        configs[name] = config
    nodes = {name: open_node(config, name) for name, config in configs.items()}
    with nodes["t"].db.session() as session:
        left = {
            name: ContactAttempt(site=name, phone="+573005550001", state="placing", requested_at=node.clock.now())
            for name, node in nodes.items()
        }
        session.add_all(left.values())
        session.flush()
        ids = {name: attempt.id for name, attempt in left.items()}

    assert nodes["u"].calls.reconcile_calls() == [ids["u"]]

    with nodes["t"].db.session() as session:
        rows = {row.site: row for row in session.scalars(select(ContactAttempt))}
    assert (rows["t"].state, rows["t"].outcome) == ("placing", None)
    assert (rows["u"].state, rows["u"].outcome, rows["u"].raw_cause) == ("finished", "unknown", SIMULATION_LOST)


@pytest.mark.postgres
def test_a_raw_cause_of_any_length_ends_the_attempt_and_is_kept_whole(
    tmp_path: Path, postgres_url: str, open_node: Callable[..., Node]
) -> None:
    node = open_node(write_sites(tmp_path, database=postgres_url))
    now = node.clock.now()
    with node.db.session() as session:
        attempt = ContactAttempt(site="t", phone="+573005550001", state="placing", requested_at=now)
        session.add(attempt)
        session.flush()
        attempt_id = attempt.id
    cause = "16 Normal Clearing, dial ANSWER; " + "; ".join(f"note {n} of the dialer" for n in range(9))
    node.calls.on_call_result(CallResult(attempt_id, CallOutcome.FAILED, cause, now, ended_at=now))
    with node.db.session() as session:
        stored = session.get_one(ContactAttempt, attempt_id)
        assert (stored.state, stored.raw_cause) == ("finished", cause)


def test_the_supervisors_page_names_every_outcome_unknown_included() -> None:
    for language in LANGUAGES:
        unnamed = [o.value for o in CallOutcome if translate(language, f"outcome.{o}") == f"outcome.{o}"]
        assert not unnamed, (language, unnamed)
