"""Shared fixtures: a throwaway site using the built-in plugins, and real peers that tests may need."""

from __future__ import annotations

import contextlib
import os
import sqlite3
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping
from datetime import datetime
from pathlib import Path

import pytest
import sqlalchemy as sa
from argon2 import PasswordHasher

from cartera.contact.campaign import Campaign
from cartera.core.hooks import Hooks, load_plugins
from cartera.core.models import CallOutcome
from cartera.core.store.schema import ContactAttempt
from cartera.node import Node
from cartera.users import directory as users
from tests.cli_in_process import run_cli
from tests.peers import unavailable
from tests.peers.net import free_port
from tests.peers.s3 import moto_s3, radosgw, seaweedfs  # noqa: F401  (session-wide S3 endpoints)

REPO = Path(__file__).resolve().parent.parent

SITE_TOML = """
[sites.t]
timezone = "America/Bogota"
country = "CO"
data_dir = "var/t"
{database}

[sites.t.clock]
mode = "simulated"
start = {start}
speed = 600

[sites.t.compliance]
authorised_channels = ["call", "sms"]
contact_window = {{ start = "07:00", end = "19:00", days = ["mon", "tue", "wed", "thu", "fri"] }}

[sites.t.campaign]
tick_seconds = 0.2
retry_after_minutes = 60

[sites.t.archival]
every_seconds = 0.5

[sites.t.sync]
every_seconds = 1

[sites.t.web]
port = {web_port}

[sites.t.dialer]
plugin = "simulator"
seed = 7
ring_seconds = [1, 10]
talk_seconds = [5, 30]

[sites.t.recording]
plugin = "localdir"
path = "archive"

[sites.t.sms]
plugin = "outbox"
path = "sms/outbox.jsonl"

[sites.t.crm_sync]
plugin = "csv"
inbox = "inbox"
outbox = "exports"
settle_seconds = 0  # tests drop a file and sync at once (the default: tests/plugins/crm_sync/test_settle.py)
creditor = "BANCO"
portfolio = "TARJETAS"
"""

PORTFOLIO_HEADER = "cuenta;nombre;telefono1;telefono2;saldo;moneda\n"


def write_sites(
    directory: Path,
    *,
    start: str = "2026-11-23T09:00:00-05:00",
    database: str | None = None,
    extra: str = "",
) -> Path:
    """A sites.toml for site ``t`` under ``directory``; ``extra`` is appended verbatim."""
    path = directory / "sites.toml"
    db_line = f'database = "{database}"' if database else ""
    path.write_text(SITE_TOML.format(start=start, database=db_line, web_port=free_port()) + extra, encoding="utf-8")
    (directory / "inbox").mkdir(exist_ok=True)
    return path


def store_site_calls(node: Node, calls: Iterable[tuple[datetime, CallOutcome]]) -> None:
    """Site ``t``'s earlier calls, finished, about no account: each requested at its instant, ending as its outcome."""
    with node.db.session() as session:
        session.add_all(
            ContactAttempt(site="t", phone="+573009999999", state="finished", requested_at=at, outcome=outcome.value)
            for at, outcome in calls
        )


def write_portfolio(directory: Path, rows: list[str], name: str = "asignacion.csv") -> Path:
    """An assignment file in the creditor's format (``cuenta;nombre;telefono1;telefono2;saldo;moneda``)."""
    path = directory / name
    path.write_text(PORTFOLIO_HEADER + "".join(row + "\n" for row in rows), encoding="utf-8-sig")
    return path


def call_once_unanswered(path: Path, open_node: Callable[[Path], Node], row: str, phone: str) -> Campaign:
    """Site ``path`` with one attempt a day, its simulator leaving ``phone`` unanswered: ``row`` imported, its
    account called once, and the clock past the retry time, so today's attempts are used up. Returns the
    campaign, whose next tick decides about the reminder text."""
    text = path.read_text().replace("seed = 7", f'seed = 7\nscripted = {{ "{phone}" = "no_answer" }}')
    path.write_text(text.replace("retry_after_minutes = 60", "retry_after_minutes = 1\nmax_attempts_per_day = 1"))
    write_portfolio(path.parent / "inbox", [row])
    node = open_node(path)
    node.creditor_sync().run_once()
    campaign = node._campaign()
    assert campaign is not None
    assert campaign.tick() == 1
    with node.db.session() as session:
        attempt = session.scalars(sa.select(ContactAttempt)).one()
    assert node.calls.wait_for_call(attempt.id, timeout=10) is not None
    time.sleep(node.clock.real_seconds(90))
    return campaign


def run_site(config: Path, *args: str, env: Mapping[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """``run_site.py --config CONFIG --site t ARGS`` as an operator runs it, from the config's directory, with
    ``env`` added to the environment (secrets the site refers to as ``${VAR}``); run in this process, as a fresh
    process would run it (:mod:`tests.cli_in_process`)."""
    return run_cli(["--config", str(config), "--site", "t", *args], cwd=config.parent, env=env)


def run_site_process(
    config: Path, *args: str, env: Mapping[str, str] | None = None, timeout: float = 90
) -> subprocess.CompletedProcess[str]:
    """:func:`run_site` as a real process: for what only a process shows (a lock held by another process, the
    node's own exit, its start-up), or where the command waits on a peer and needs ``timeout``."""
    return subprocess.run(
        [sys.executable, str(REPO / "run_site.py"), "--config", str(config), "--site", "t", *args],
        capture_output=True,
        text=True,
        check=False,
        timeout=timeout,
        cwd=config.parent,
        env={**os.environ, **(env or {})},
        stdin=subprocess.DEVNULL,
    )


def placing(config: Path) -> list[int]:
    """The attempts of site ``t`` (SQLite store ``var/t.db`` beside ``config``) still ``placing``."""
    with sqlite3.connect(config.parent / "var" / "t.db", timeout=5) as db:
        return [row[0] for row in db.execute("select id from contact_attempts where state = 'placing' order by id")]


def kill_site_with_calls_in_flight(
    config: Path,
    calls: int,
    *,
    env: Mapping[str, str] | None = None,
    ready: Callable[[], bool] = lambda: True,
    timeout: float = 90,
) -> list[int]:
    """``run_site.py ... run`` until ``calls`` attempts are in flight (and ``ready()``), then kill -9 it, as a power
    cut would; returns the attempts it left ``placing``."""
    process = subprocess.Popen(
        [sys.executable, str(REPO / "run_site.py"), "--config", str(config), "--site", "t", "run"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        stdin=subprocess.DEVNULL,
        cwd=config.parent,
        env={**os.environ, **(env or {})},
    )
    try:
        deadline = time.monotonic() + timeout
        while True:
            with contextlib.suppress(sqlite3.OperationalError):  # the store is still being created
                if len(placing(config)) >= calls and ready():
                    break
            assert process.poll() is None, f"the node exited with {process.returncode}"
            assert time.monotonic() < deadline, f"fewer than {calls} calls in flight within {timeout}s"
            time.sleep(0.1)
    finally:
        process.kill()
        process.wait()
    return placing(config)


@pytest.fixture(scope="session", autouse=True)
def cheap_password_hashes() -> Iterator[None]:
    """argon2id at its smallest cost for in-process hashing: the production cost (64 MiB, 3 passes) was the bulk of
    the web tests' time and proves nothing the algorithm does not; ``run_site.py`` run as a process keeps the real
    cost (tests/test_web_users.py checks it)."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(users, "_hasher", PasswordHasher(time_cost=1, memory_cost=8, parallelism=1))
        yield


@pytest.fixture
def sites_toml(tmp_path: Path) -> Path:
    return write_sites(tmp_path)


@pytest.fixture
def hooks() -> Hooks:
    return load_plugins(entry_points=False)


@pytest.fixture
def open_node(hooks: Hooks) -> Iterator[Callable[[Path], Node]]:
    """Opens nodes on a sites file (site ``t``) and closes them after the test."""
    nodes: list[Node] = []

    def opener(config: Path, site: str = "t", with_hooks: Hooks | None = None) -> Node:
        node = Node.open(config, site, with_hooks or hooks)
        nodes.append(node)
        return node

    yield opener
    for node in nodes:
        node.close()


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """A fresh database on the PostgreSQL server at 127.0.0.1:5432, dropped afterwards."""
    admin_url = os.environ.get("CARTERA_TEST_PG", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres")
    admin = sa.create_engine(admin_url, isolation_level="AUTOCOMMIT")
    name = f"cartera_test_{uuid.uuid4().hex[:10]}"
    try:
        with admin.connect() as conn:
            conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    except sa.exc.OperationalError as exc:
        admin.dispose()
        unavailable(f"PostgreSQL at {admin_url} cannot be reached ({exc.orig})")
    try:
        yield admin_url.rsplit("/", 1)[0] + f"/{name}"
    finally:
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()
