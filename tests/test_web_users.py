"""``run_site.py users``: add (password from the environment or a prompt, never an argument), list, disable."""

from __future__ import annotations

import sqlite3
import subprocess
from pathlib import Path

import pytest
from argon2 import PasswordHasher, extract_parameters
from sqlalchemy import select

from cartera.core.store.database import Database
from cartera.core.store.schema import AuditEntry, WebUser
from tests.conftest import run_site, run_site_process, write_sites


def cli(config: Path, *args: str, password: str | None = None) -> subprocess.CompletedProcess[str]:
    return run_site(config, "users", *args, env=None if password is None else {"CARTERA_USER_PASSWORD": password})


def test_users_add_list_and_disable(tmp_path: Path) -> None:
    config = write_sites(tmp_path)
    ana = ["add", "ana", "--role", "supervisor", "--portfolio", "BANCO/TARJETAS"]
    password = {"CARTERA_USER_PASSWORD": "una clave larga"}
    added = run_site_process(config, "users", *ana, env=password)  # a process: the tests' cheap hashing is not in it
    assert added.returncode == 0, added.stderr
    assert "t:BANCO/TARJETAS" in added.stdout
    assert cli(config, "add", "carla", "--role", "auditor", password="otra clave larga").returncode == 0
    listed = cli(config, "list")
    assert [line.split()[:3] for line in listed.stdout.splitlines()[1:]] == [
        ["ana", "supervisor", "active"],
        ["carla", "auditor", "active"],
    ]
    assert cli(config, "disable", "ana").returncode == 0
    assert "disabled" in cli(config, "list").stdout.splitlines()[1]
    db = Database(f"sqlite:///{tmp_path / 'var' / 't.db'}")
    with db.session() as session:
        stored = dict(session.execute(select(WebUser.name, WebUser.password_hash)).all())
        actions = session.scalars(select(AuditEntry.action).where(AuditEntry.action.startswith("users."))).all()
    db.dispose()
    assert all(value.startswith("$argon2id$") for value in stored.values())
    production, hashed = PasswordHasher(), extract_parameters(stored["ana"])
    assert (hashed.memory_cost, hashed.time_cost) == (production.memory_cost, production.time_cost)
    assert actions == ["users.add", "users.add", "users.disable"]


def test_no_password_argument_and_no_silent_default(tmp_path: Path) -> None:
    config = write_sites(tmp_path)
    as_argument = cli(config, "add", "ana", "--role", "supervisor", "--password", "secreto12345")
    assert as_argument.returncode == 2
    assert "unrecognized arguments" in as_argument.stderr
    no_terminal = cli(config, "add", "ana", "--role", "supervisor")
    assert no_terminal.returncode == 2
    assert "CARTERA_USER_PASSWORD" in no_terminal.stderr
    short = cli(config, "add", "ana", "--role", "supervisor", password="corta")
    assert short.returncode == 2
    assert "at least 10 characters" in short.stderr
    assert cli(config, "add", "ana", "--role", "supervisor", password="una clave larga").returncode == 0
    again = cli(config, "add", "ana", "--role", "admin", password="una clave larga")
    assert again.returncode == 2
    assert "exists already" in again.stderr
    assert cli(config, "disable", "nadie").returncode == 1


@pytest.mark.abuse
def test_an_admin_is_never_restricted_to_portfolios_it_would_not_be_held_to(tmp_path: Path) -> None:
    config = write_sites(tmp_path)
    added = cli(config, "add", "adm2", "--role", "admin", "--portfolio", "BCO/TARJETAS", password="una clave larga")
    assert added.returncode == 2
    assert "every portfolio" in added.stderr
    assert "supervisor or auditor" in added.stderr
    assert cli(config, "list").stdout.strip() == "no users"
    assert cli(config, "add", "adm2", "--role", "admin", password="una clave larga").returncode == 0
    granted = cli(config, "grant", "adm2", "--portfolio", "BCO/TARJETAS")
    assert granted.returncode == 2
    assert "every portfolio" in granted.stderr
    assert "t:*" in cli(config, "list").stdout.splitlines()[1]
    # an admin stored with a portfolio grant (before this refusal) is listed as what it sees: every portfolio
    with sqlite3.connect(tmp_path / "var" / "t.db") as conn:
        conn.execute("UPDATE web_grants SET creditor = 'BCO', portfolio = 'TARJETAS'")
    listed = cli(config, "list").stdout.splitlines()[1]
    assert "t:* (admin: every portfolio; BCO/TARJETAS ignored)" in listed, listed


@pytest.mark.abuse
def test_no_user_name_is_another_users_extension(tmp_path: Path) -> None:
    config = write_sites(tmp_path)
    agent = ("--role", "agent", "--portfolio", "BCO/TARJETAS", "--extension")
    assert cli(config, "add", "caro", *agent, "agent-03", password="una clave larga").returncode == 0
    named = cli(config, "add", "agent-03", *agent, "agent-09", password="una clave larga")
    assert named.returncode == 2
    assert "user name 'agent-03' is the extension of user 'caro'" in named.stderr
    extended = cli(config, "add", "dani", *agent, "caro", password="una clave larga")
    assert extended.returncode == 2
    assert "user 'caro' is named so" in extended.stderr
    assert [line.split()[0] for line in cli(config, "list").stdout.splitlines()[1:]] == ["caro"]
