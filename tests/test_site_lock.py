"""One node per site: a second ``run`` of a running site exits 2 and touches none of its calls in flight."""

from __future__ import annotations

import contextlib
import os
import socket
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from cartera.core.store.schema import ContactAttempt
from cartera.core.store.site_lock import SiteAlreadyRunning, hold_site
from cartera.node import Node
from tests.conftest import REPO, placing, run_site, run_site_process, write_portfolio, write_sites

pytestmark = pytest.mark.abuse


def _talking_for_an_hour(tmp_path: Path) -> Path:
    site = write_sites(tmp_path)
    site.write_text(
        site.read_text()
        .replace("seed = 7", "seed = 7\noutcome_weights = { answered = 1 }")
        .replace("talk_seconds = [5, 30]", "talk_seconds = [3600, 3600]")
    )
    write_portfolio(tmp_path / "inbox", [f"BCO-{n};Deudor {n};300 555 {n:04d};;1.000,00;COP" for n in range(1, 9)])
    return site


def test_a_second_run_of_a_running_site_exits_2_and_changes_none_of_its_calls(tmp_path: Path) -> None:
    site = _talking_for_an_hour(tmp_path)
    first = subprocess.Popen(
        [sys.executable, str(REPO / "run_site.py"), "--config", str(site), "--site", "t", "run"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        stdin=subprocess.DEVNULL,
        cwd=site.parent,
    )
    try:
        deadline = time.monotonic() + 90
        in_flight: list[int] = []
        while len(in_flight) < 3:
            with contextlib.suppress(sqlite3.OperationalError):
                in_flight = placing(site)
            assert first.poll() is None
            assert time.monotonic() < deadline
            time.sleep(0.1)

        second = run_site_process(site, "run", "--duration", "3")  # the lock held by another process

        assert second.returncode == 2, second.stderr
        assert f"site 't' is already running (pid {first.pid} on host {socket.gethostname()})" in second.stderr
        with sqlite3.connect(tmp_path / "var" / "t.db", timeout=5) as db:
            unknown = db.execute("select count(*) from contact_attempts where outcome = 'unknown'").fetchone()
            reconciled = db.execute("select count(*) from audit_log where action = 'call.reconcile'").fetchone()
        assert (unknown, reconciled) == ((0,), (0,))  # the live node's calls end as the live node reports them
        assert first.poll() is None
    finally:
        first.kill()
        first.wait()
    again = run_site(site, "run", "--duration", "1")  # a killed node's lock went with its process
    assert again.returncode == 0, again.stderr
    assert placing(site) == []


def test_the_lock_is_held_until_released_and_can_be_taken_again(tmp_path: Path, open_node: Callable[..., Node]) -> None:
    node = open_node(write_sites(tmp_path))
    with (
        hold_site(node.db, "t"),
        pytest.raises(SiteAlreadyRunning, match=f"pid {os.getpid()}"),
        hold_site(node.db, "t"),
    ):
        pass
    with hold_site(node.db, "t"), hold_site(node.db, "u"):  # per site
        pass


@pytest.mark.postgres
def test_two_nodes_of_one_site_on_one_postgresql_database_are_refused(
    tmp_path: Path, postgres_url: str, open_node: Callable[..., Node]
) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    running = open_node(write_sites(tmp_path / "a", database=postgres_url))
    second = open_node(write_sites(tmp_path / "b", database=postgres_url))
    with running.db.session() as session:
        attempt = ContactAttempt(site="t", phone="+573005550001", state="placing", requested_at=running.clock.now())
        session.add(attempt)
    with hold_site(running.db, "t"):
        with pytest.raises(SiteAlreadyRunning, match=rf"site 't' is already running \(pid {os.getpid()} on host "):
            second.run(duration=1)
        with second.db.session() as session:
            assert session.get_one(ContactAttempt, attempt.id).state == "placing"
    with hold_site(second.db, "t"):  # released with the first's connection
        pass
