"""The operator's command line: exit codes, one-line errors, the commands' output. A real process where the test is
about the process (its exit code, SIGTERM, a FIFO that would block it), else run in this process as a fresh one."""

from __future__ import annotations

import getpass
import hashlib
import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest

from tests.cli_in_process import run_cli
from tests.conftest import REPO, write_portfolio, write_sites

#: Real seconds after which a node that never logged its first call is killed: a hang, not a slow start.
NODE_HUNG_S = 900

RECORDING_FIELDS = {
    "id",
    "site",
    "account",
    "phone",
    "agent",
    "started_at",
    "duration_s",
    "size",
    "sha256",
    "location",
    "state",
}


def cartera(config: Path | None, *args: str) -> subprocess.CompletedProcess[str]:
    """``run_site.py [--config CONFIG] ARGS`` from the config's directory, run in this process as a fresh process."""
    return run_cli([*_config_option(config), *args], cwd=config.parent if config else REPO)


def cartera_process(config: Path | None, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """:func:`cartera` as a real process: what ``run_site.py`` exits with, or a command that could block."""
    return subprocess.run(
        [sys.executable, str(REPO / "run_site.py"), *_config_option(config), *args],
        capture_output=True,
        text=True,
        check=False,
        timeout=timeout,
        cwd=config.parent if config else REPO,
    )


def _config_option(config: Path | None) -> list[str]:
    return [] if config is None else ["--config", str(config)]


def assert_one_line_error(result: subprocess.CompletedProcess[str], code: int, *fragments: str) -> None:
    assert result.returncode == code, result.stderr
    assert "Traceback" not in result.stderr
    lines = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert len(lines) == 1, result.stderr
    for fragment in fragments:
        assert fragment in lines[0]


@pytest.fixture
def site(tmp_path: Path) -> Path:
    path = write_sites(tmp_path)
    path.write_text(path.read_text().replace("seed = 7", 'seed = 7\nscripted = { "+573001234567" = "answered" }'))
    return path


def test_plugins_lists_every_kind_without_a_site() -> None:
    result = cartera(None, "plugins")
    assert result.returncode == 0, result.stderr
    rows = {tuple(line.split()[:2]) for line in result.stdout.splitlines()[1:]}
    assert {("dialer", "simulator"), ("recording", "localdir"), ("sms", "outbox"), ("crm_sync", "csv")} <= rows
    assert "built-in" in result.stdout


def test_missing_site_is_a_usage_error(site: Path) -> None:
    assert_one_line_error(cartera_process(site, "check"), 2, "'check' needs --site NAME")  # run_site.py's exit code


def test_bad_config_is_one_line_and_exit_2(site: Path) -> None:
    site.write_text(site.read_text().replace('plugin = "outbox"', 'plugin = "outbx"'))
    assert_one_line_error(cartera(site, "--site", "t", "check"), 2, str(site), "site 't', key 'sms.plugin'", "outbx")


def test_debug_shows_the_traceback(site: Path) -> None:
    result = cartera(site, "--site", "nowhere", "--debug", "check")
    assert result.returncode == 2
    assert "Traceback" in result.stderr


def test_check_reaches_every_vendor(site: Path) -> None:
    result = cartera(site, "--site", "t", "check")
    assert result.returncode == 0, result.stderr
    for what in ("store", "dialer simulator", "recording localdir", "sms outbox", "crm_sync csv"):
        assert f"ok    {what}:" in result.stdout


def test_check_fails_naming_the_broken_vendor(site: Path) -> None:
    shutil.rmtree(site.parent / "inbox")
    result = cartera(site, "--site", "t", "check")
    assert result.returncode == 1
    assert "FAIL  crm_sync csv: inbox" in result.stdout
    assert "check failed: crm_sync csv" in result.stderr


def test_archive_under_a_file_is_a_configuration_error(site: Path) -> None:
    (site.parent / "archive").write_text("not a directory")
    result = cartera(site, "--site", "t", "check")
    assert_one_line_error(result, 2, str(site), "site 't', key 'recording.path'", "is not a directory")


def test_import_is_idempotent_and_reports_quarantine(site: Path) -> None:
    file = write_portfolio(
        site.parent, ["BCO-1;Ana Gómez;300 123 4567;;1.250.000,00;COP", "BCO-2;Luis;12-AB;;9,00;COP"]
    )
    first = cartera(site, "--site", "t", "import", str(file))
    assert first.returncode == 0, first.stderr
    assert "1 new" in first.stdout
    assert "1 quarantined; portfolio BANCO/TARJETAS (read as" in first.stdout
    assert (
        f"quarantined {file.resolve()}:3: phone1:" in first.stdout or f"quarantined {file}:3: phone1:" in first.stdout
    )
    again = cartera(site, "--site", "t", "import", str(file))
    assert again.returncode == 0
    assert "already imported" in again.stdout


def test_import_of_a_file_with_a_wrong_header_loads_nothing(site: Path) -> None:
    file = site.parent / "bad.csv"
    file.write_text("account,name\nX,Y\n")
    result = cartera(site, "--site", "t", "import", str(file))
    assert result.returncode == 1
    assert "nothing was loaded" in result.stderr
    with sqlite3.connect(site.parent / "var" / "t.db") as db:
        assert db.execute("select count(*) from accounts").fetchone() == (0,)


@pytest.mark.abuse
def test_import_of_a_fifo_or_a_directory_is_refused_naming_it(site: Path) -> None:
    fifo = site.parent / "pipe.csv"
    os.mkfifo(fifo)
    result = cartera_process(site, "--site", "t", "import", str(fifo), timeout=30)  # an open() would block
    assert_one_line_error(result, 2, str(fifo), "is not a regular file (a FIFO)")
    result = cartera(site, "--site", "t", "import", str(site.parent))
    assert_one_line_error(result, 2, str(site.parent), "is not a regular file (a directory)")
    result = cartera(site, "--site", "t", "import", str(site.parent / "missing.csv"))
    assert_one_line_error(result, 2, "missing.csv: no such file")


def test_call_and_sms_pass_the_gate(site: Path) -> None:
    # The text first: once the debtor answers, Ley 2300 allows one channel a week.
    sms = cartera(site, "--site", "t", "sms", "3001234567", "Hola, ¿podemos hablar mañana?")
    assert sms.returncode == 0, sms.stderr
    outbox = (site.parent / "sms" / "outbox.jsonl").read_text(encoding="utf-8").splitlines()
    assert json.loads(outbox[-1])["text"] == "Hola, ¿podemos hablar mañana?"
    call = cartera(site, "--site", "t", "call", "300 123 4567")
    assert call.returncode == 0, call.stderr
    assert "answered" in call.stdout


@pytest.mark.abuse
def test_sms_prints_the_gateways_words_escaped(site: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Round 22 C-F2: the SMSC's or smsbox's text (a gateway id, a detail) reached the operator's terminal raw."""
    from cartera.core.models import SmsMessage, SmsState, SmsSubmitResult
    from cartera.plugins.sms.outbox.plugin import OutboxGateway

    def hostile(_gateway: OutboxGateway, message: SmsMessage) -> SmsSubmitResult:
        return SmsSubmitResult(message.message_id, SmsState.SUBMITTED, "id\x1b]0;x\x07", "ok\x1b[2J\u202e")

    monkeypatch.setattr(OutboxGateway, "send", hostile)
    sms = cartera(site, "--site", "t", "sms", "3001234567", "Hola")
    assert sms.returncode == 0, sms.stderr
    assert "\x1b" not in sms.stdout
    assert "\u202e" not in sms.stdout
    assert "(gateway id id\\x1b]0;x\\x07) ok\\x1b[2J" in sms.stdout


def test_call_outside_the_window_is_refused_and_audited(tmp_path: Path) -> None:
    site = write_sites(tmp_path, start="2026-11-23T21:00:00-05:00")
    result = cartera(site, "--site", "t", "call", "3001234567")
    assert result.returncode == 1
    assert "call not placed: denied: outside_contact_window (next allowed 2026-11-24T07:00-05:00)" in result.stderr
    with sqlite3.connect(tmp_path / "var" / "t.db") as db:
        assert db.execute("select action, actor from audit_log").fetchall() == [
            ("compliance.deny", f"os:{getpass.getuser()}")
        ]


def test_run_then_search_and_get_a_recording(site: Path) -> None:
    write_portfolio(
        site.parent / "inbox",
        [f"BCO-{i};Deudor {i};300 555 {i:04d};;1.000.000,00;COP" for i in range(1, 9)],
    )
    run = cartera(site, "--site", "t", "run", "--duration", "4")
    assert run.returncode == 0, run.stderr
    assert "Site t:" in run.stdout
    assert "recordings get" in run.stdout

    search = cartera(site, "--site", "t", "recordings", "search", "--json")
    assert search.returncode == 0, search.stderr
    found = json.loads(search.stdout)
    assert found
    assert all(item.keys() >= RECORDING_FIELDS and item["site"] == "t" for item in found)
    verified = [item for item in found if item["state"] == "verified"]
    assert verified

    target = verified[0]
    by_account = json.loads(
        cartera(site, "--site", "t", "recordings", "search", "--account", target["account"], "--json").stdout
    )
    assert target["id"] in [item["id"] for item in by_account]
    assert all(item["account"] == target["account"] for item in by_account)

    out = site.parent / "call.wav"
    got = cartera(site, "--site", "t", "recordings", "get", str(target["id"]), "-o", str(out))
    assert got.returncode == 0, got.stderr
    assert hashlib.sha256(out.read_bytes()).hexdigest() == target["sha256"]
    with sqlite3.connect(site.parent / "var" / "t.db") as db:
        gets = db.execute("select actor, subject from audit_log where action = 'recordings.get'").fetchall()
    assert gets == [(f"os:{getpass.getuser()}", f"recording:{target['id']}")]

    missing = cartera(site, "--site", "t", "recordings", "get", "999999", "-o", str(out))
    assert_one_line_error(missing, 1, "no recording 999999 at site 't'")


def read_log_until(process: subprocess.Popen[str], name: str) -> list[dict[str, Any]]:
    """The node's JSON log events up to the first one called ``name``: waits on what the node says it did, however
    long a loaded machine takes to start it (fails at once if it exits first)."""
    assert process.stderr is not None
    events: list[dict[str, Any]] = []
    for line in process.stderr:
        if line.startswith("{"):
            events.append(json.loads(line))
            if events[-1]["event"] == name:
                return events
    raise AssertionError(f"the node exited ({process.wait()}) before logging {name}: {events}")


def test_sigterm_finishes_in_flight_work_and_exits_cleanly(site: Path) -> None:
    write_portfolio(site.parent / "inbox", [f"BCO-{i};Deudor {i};300 555 {i:04d};;1.000,00;COP" for i in range(1, 30)])
    process = subprocess.Popen(
        [
            sys.executable,
            str(REPO / "run_site.py"),
            "--config",
            str(site),
            "--site",
            "t",
            "--log-format",
            "json",
            "run",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=site.parent,
    )
    assert process.stdout is not None
    assert process.stderr is not None
    watchdog = threading.Timer(NODE_HUNG_S, process.kill)  # only if the node hangs: no test waits that long
    watchdog.start()
    try:
        before = read_log_until(process, "call.placing")
        process.send_signal(signal.SIGTERM)
        stderr = process.stderr.read()  # the same buffered reader: communicate() would skip what it read ahead
        stdout = process.stdout.read()
        process.wait()
    finally:
        watchdog.cancel()
    assert process.returncode == 0, stderr
    events = before + [json.loads(line) for line in stderr.splitlines() if line.startswith("{")]
    names = [e["event"] for e in events]
    assert "node.signal" in names
    assert names[-1] == "node.stopped"
    assert "Site t:" in stdout
    with sqlite3.connect(site.parent / "var" / "t.db") as db:
        assert db.execute("select count(*) from contact_attempts where state = 'placing'").fetchone() == (0,)
        placed = db.execute("select count(*) from contact_attempts").fetchone()[0]
        pending = db.execute("select count(*) from recordings where state != 'verified'").fetchone()[0]
    assert placed > 0
    assert pending == 0


def test_a_secret_in_an_invalid_value_is_masked_in_the_error(site: Path) -> None:
    secret = "hunter2-not-a-number"
    site.write_text(site.read_text().replace("agents", "x").replace("seed = 7", 'seed = 7\nagents = "${AGENTS}"'))
    result = run_cli(["--config", str(site), "--site", "t", "check"], cwd=REPO, env={"AGENTS": secret})
    assert_one_line_error(result, 2, "key 'dialer.agents'")
    assert secret not in result.stderr + result.stdout
    assert "***" in result.stderr


#: What a hostile smsbox answered in round 23 C-F4: sets the terminal's title, clears it, forges an "ok" line.
HOSTILE_WORDS = "Denied\x1b]0;PWNED-TITLE\x07\x1b[2J\x1b[32m\nok    sms kannel: all fine\x1b[0m\u202e"
HOSTILE_SHOWN = "Denied\\x1b]0;PWNED-TITLE\\x07\\x1b[2J\\x1b[32m\\nok    sms kannel: all fine\\x1b[0m\\u202e"


def _raw(output: str) -> list[str]:
    """What in ``output`` would drive a terminal or forge a line: escapes, bells, bidi marks, a forged ``ok`` line."""
    found = [char for char in ("\x1b", "\x07", "\u202e") if char in output]
    return found + [line for line in output.splitlines() if line.startswith("ok    sms kannel")]


@pytest.mark.abuse
def test_check_prints_the_vendors_words_escaped(site: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Round 23 C-F4: a vendor's detail (an smsbox's refusal body, an AMI peer's message) reached the operator's
    terminal raw: a title set, the screen cleared and a forged ``ok`` line."""
    from cartera.core.models import CheckResult
    from cartera.plugins.sms.outbox.plugin import OutboxGateway

    monkeypatch.setattr(OutboxGateway, "check", lambda _gateway: CheckResult(ok=False, detail=HOSTILE_WORDS))
    result = cartera(site, "--site", "t", "check")
    assert result.returncode == 1
    assert _raw(result.stdout) == []
    assert f": {HOSTILE_SHOWN}" in result.stdout


@pytest.mark.abuse
def test_check_prints_the_lease_holder_escaped(site: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The node holding the site is named as the store has it (another host's words)."""
    from datetime import UTC, datetime, timedelta

    from cartera.core.store.site_lease import LeaseHolder

    holder = LeaseHolder(HOSTILE_WORDS, 7, datetime.now(UTC) + timedelta(days=1))
    monkeypatch.setattr("cartera.node.lease_holder", lambda _db, _site: holder)
    result = cartera(site, "--site", "t", "check")
    assert _raw(result.stdout) == []
    assert f"info  node: active: {HOSTILE_SHOWN}, token 7" in result.stdout


@pytest.mark.abuse
def test_call_prints_the_dialers_cause_escaped(site: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A call's cause is the PBX's or the SIP trunk's words (a reason phrase)."""
    import dataclasses

    from cartera.contact.calls import CallService

    wait = CallService.wait_for_call

    def hostile(service: CallService, attempt_id: int, timeout: float) -> Any:
        result = wait(service, attempt_id, timeout)
        return None if result is None else dataclasses.replace(result, raw_cause=HOSTILE_WORDS)

    monkeypatch.setattr(CallService, "wait_for_call", hostile)
    call = cartera(site, "--site", "t", "call", "300 123 4567")
    assert call.returncode == 0, call.stderr
    assert _raw(call.stdout) == []
    assert f"answered ({HOSTILE_SHOWN})" in call.stdout


@pytest.mark.abuse
def test_an_unexpected_error_is_printed_escaped(site: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """An exception no one expected says what it says: a vendor's library may put the peer's words in it."""
    from cartera.node import Node

    def fails(_node: Node) -> Any:
        raise RuntimeError(HOSTILE_WORDS)

    monkeypatch.setattr(Node, "check", fails)
    result = cartera(site, "--site", "t", "check")
    assert result.returncode == 1
    assert _raw(result.stderr) == []
    assert f"error: RuntimeError: {HOSTILE_SHOWN} (run with --debug for details)" in result.stderr


@pytest.mark.abuse
def test_archive_prints_the_stores_error_escaped(site: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """An unavailable store's error is the S3 peer's words."""
    from cartera.recordings.archival import Archiver, ArchiveRun

    monkeypatch.setattr(
        Archiver, "run_once", lambda _archiver, _bar=None: ArchiveRun(left=1, store_error=HOSTILE_WORDS)
    )
    result = cartera(site, "--site", "t", "archive")
    assert result.returncode == 1
    assert _raw(result.stdout) == []
    assert f"left on local disk for the next run: {HOSTILE_SHOWN}" in result.stdout


@pytest.mark.abuse
def test_a_table_cell_is_printed_escaped(capsys: pytest.CaptureFixture[str]) -> None:
    """A recording's agent comes from the PBX: a table cell is shown escaped, the columns aligned on what shows."""
    from cartera.cli.main import _print_table

    _print_table([("AGENT", "STATE"), (HOSTILE_WORDS, "verified")])
    out = capsys.readouterr().out
    assert _raw(out) == []
    assert out.splitlines() == [f"{'AGENT'.ljust(len(HOSTILE_SHOWN))}  STATE", f"{HOSTILE_SHOWN}  verified"]
