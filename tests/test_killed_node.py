"""A node killed (kill -9) with calls in flight: its next start settles every call it left ``placing``."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

from plugins.dialers.simulator.plugin import SIMULATION_LOST
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
