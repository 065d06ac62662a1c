"""Seeded secrets never come out: a site whose every secret holds ``"``, ``\\``, ``#@/`` and non-ASCII runs
``check``, ``run`` (with its health, API and error pages asked) and ``--debug --log-format json`` against vendors
that fail (unreachable, or an AMI peer echoing the login), and every stream, HTTP answer and file the runs leave
is searched for each secret, its encodings and either end of it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import tomllib
import urllib.error
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from urllib.parse import quote

import pytest

from cartera.node import Node
from tests.conftest import REPO, run_site, write_sites
from tests.hostile_ami import echoing_ami
from tests.peers.net import free_port
from tests.recording_spool import spool_watcher
from tests.test_redaction import carried

pytestmark = pytest.mark.abuse

#: Each secret begins and ends with a marker of its own: a half of it printed is found too.
SECRETS = {
    "SEEDED_AMI_SECRET": 'AmiQ7k"pa\\ss#@/wörd€AmiZ9w',
    "SEEDED_S3_ACCESS_KEY": 'S3aQ7k"ac\\ce#@/ñS3aZ9w',
    "SEEDED_S3_SECRET_KEY": 'S3sQ7k"se\\cr#@/ü😀S3sZ9w',
    "SEEDED_SMPP_PASSWORD": 'Sm7q"\\#ñ',  # SMPP allows 8 characters
    "SEEDED_CREDITOR_TOKEN": "TokQ7k+cr/ed~it.or_api-token-TokZ9w",  # a b64token (RFC 6750): no " \\ # @ or non-ASCII
    "SEEDED_WEBHOOK_TOKEN": "HooQ7k+we/bh~k.HooZ9w",
    "SEEDED_DB_PASSWORD": 'DbpQ7k"db\\pw#@/çDbpZ9w',
}
MARKERS = {name: (value[:4], value[-4:]) for name, value in SECRETS.items()}


def leaks(text: str) -> list[str]:
    """Each secret (or encoding, or end of one) found in ``text``."""
    found = []
    for name, secret in SECRETS.items():
        found += [f"{name} {how}" for how, form in carried(secret).items() if form in text]
        found += [f"{name} marker {marker!r}" for marker in MARKERS[name] if marker in text]
    return found


def seeded_site(directory: Path, ami_port: int | None, database: str | None = None) -> Path:
    """Site ``t`` in ``directory``, its every vendor configured with a seeded secret and failing; ``ami_port``
    None: the simulator dials instead (``run`` does not start while AMI refuses the login)."""
    directory.mkdir()
    config = write_sites(directory, database=database)
    text = config.read_text()
    closed = free_port()  # nothing listens there: S3, SMPP and the webhook fail
    dialer = 'plugin = "simulator"'
    if ami_port is not None:
        dialer = f"""plugin = "asterisk_ami"
port = {ami_port}
username = "cartera"
secret = "${{SEEDED_AMI_SECRET}}"
queue = "cobranza"
connect_timeout_s = 1
action_timeout_s = 1"""
    vendors = f"""
[sites.t.dialer]
{dialer}

[sites.t.recording]
plugin = "s3"
endpoint_url = "http://127.0.0.1:{closed}"
bucket = "grabaciones"
access_key_id = "${{SEEDED_S3_ACCESS_KEY}}"
secret_access_key = "${{SEEDED_S3_SECRET_KEY}}"
connect_timeout_s = 1
max_attempts = 1

[sites.t.sms]
plugin = "smpp"
host = "127.0.0.1"
port = {closed}
system_id = "cartera"
password = "${{SEEDED_SMPP_PASSWORD}}"
source_addr = "85432"
response_timeout_s = 1
reconnect_max_s = 1

[sites.t.crm_sync]
plugin = "http"

[sites.t.crm_sync.creditors.BANCO]
token = "${{SEEDED_CREDITOR_TOKEN}}"
webhook_url = "http://127.0.0.1:{closed}/hook"
webhook_token = "${{SEEDED_WEBHOOK_TOKEN}}"
"""
    config.write_text(text[: text.index("[sites.t.dialer]")] + vendors)
    (directory / "spool").mkdir()
    (directory / "spool" / "rec-1.wav").write_bytes(b"RIFF" + bytes(64))  # archival fails on the store
    return config


def _report_the_spool(site: Path, env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    """The spool's recording reaches the catalog as a dialer reports it: archival then fails on the store."""
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    node = Node.open(site, "t")
    try:
        assert spool_watcher(node, site.parent / "spool", quiet_period_s=0).scan() == 1
    finally:
        node.close()


def environment() -> dict[str, str]:
    env = {name: value for name, value in SECRETS.items() if name != "SEEDED_DB_PASSWORD"}
    return env | {"SEEDED_DB_PASSWORD": quote(SECRETS["SEEDED_DB_PASSWORD"], safe="")}  # in a URL: encoded


def ask(url: str, method: str = "GET", body: bytes | None = None, headers: dict[str, str] | None = None) -> str:
    request = urllib.request.Request(url, data=body, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=10) as answer:
            return f"{answer.status} {answer.headers}\n{answer.read().decode('utf-8', 'replace')}"
    except urllib.error.HTTPError as error:
        return f"{error.code} {error.headers}\n{error.read().decode('utf-8', 'replace')}"


def web_answers(base: str) -> Iterator[str]:
    """What the running node answers: health (local, proxied), API errors, pages and error pages."""
    token = SECRETS["SEEDED_CREDITOR_TOKEN"]
    yield ask(f"{base}/healthz")
    yield ask(f"{base}/healthz", headers={"X-Forwarded-For": "203.0.113.9"})
    yield ask(f"{base}/metrics")
    for bearer in (token, token[:-3], quote(token, safe="")):
        auth = {"Authorization": f"Bearer {bearer}", "Content-Type": "application/json"}
        yield ask(f"{base}/plugins/crm_sync/v1/batches", "POST", b'{"rows": "not rows"', auth)
        yield ask(f"{base}/plugins/crm_sync/v1/batches", "POST", json.dumps({"creditor": "BANCO"}).encode(), auth)
        yield ask(f"{base}/plugins/crm_sync/v1/activities?after=x", headers=auth)
    yield ask(f"{base}/login", "POST", b"user=cartera&password=x&csrf=y", {"Accept": "text/html"})
    yield ask(f"{base}/recordings/1", headers={"Accept": "text/html"})
    yield ask(f"{base}/no-such-page", headers={"Accept": "application/json"})


#: Real seconds a loaded machine may take to start the node before its ``--duration`` begins.
NODE_START_S = 120


def run_node(config: Path, seconds: float) -> tuple[subprocess.CompletedProcess[str], list[str]]:
    """``--debug --log-format json run`` for ``seconds``, with the web asked while it runs (however long a loaded
    machine takes to start it: the seconds count from the node's start)."""
    command = [sys.executable, str(REPO / "run_site.py"), "--config", str(config), "--site", "t"]
    command += ["--debug", "--log-format", "json", "run", "--duration", str(seconds)]
    base = f"http://127.0.0.1:{tomllib.loads(config.read_text())['sites']['t']['web']['port']}"
    with subprocess.Popen(
        command,
        cwd=config.parent,
        env={**os.environ, **environment()},
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    ) as process:
        answers: list[str] = []
        deadline = time.monotonic() + seconds + NODE_START_S
        while not answers and time.monotonic() < deadline and process.poll() is None:
            try:
                urllib.request.urlopen(f"{base}/metrics", timeout=1).close()
            except OSError:
                time.sleep(0.1)
                continue
            while '"sms smpp"' not in ask(f"{base}/healthz") and time.monotonic() < deadline:
                time.sleep(0.2)  # until the vendors' first check
            answers = list(web_answers(base))
        stdout, stderr = process.communicate(timeout=seconds + 60)
    return subprocess.CompletedProcess(command, process.returncode, stdout, stderr), answers


def test_no_output_of_a_site_with_seeded_secrets_carries_them(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    env = environment()
    outputs: dict[str, str] = {}
    with echoing_ami() as ami, ThreadPoolExecutor(1) as beside:
        running = beside.submit(run_node, seeded_site(tmp_path / "running", None), 15)  # meanwhile, the CLI runs
        site = seeded_site(tmp_path / "site", ami.port)
        _report_the_spool(site, env, monkeypatch)
        for args in (
            ["check"],
            ["--debug", "--log-format", "json", "check"],
            ["--log-format", "json", "archive"],
            ["--debug", "run", "--duration", "1"],  # AMI refuses the login: the traceback is printed
        ):
            result = run_site(site, *args, env=env)
            assert result.returncode == 1, result.stderr
            outputs[" ".join(args)] = result.stdout + result.stderr
        store = "postgresql+psycopg://cartera:${SEEDED_DB_PASSWORD}" + f"@127.0.0.1:{free_port()}/cartera"
        unreachable = seeded_site(tmp_path / "store", ami.port, database=store)
        result = run_site(unreachable, "--debug", "--log-format", "json", "check", env=env)
        assert result.returncode == 1, result.stderr
        outputs["unreachable store"] = result.stdout + result.stderr
        unencoded = seeded_site(tmp_path / "unencoded", ami.port, database=store)
        result = run_site(
            unencoded, "--debug", "check", env=env | {"SEEDED_DB_PASSWORD": SECRETS["SEEDED_DB_PASSWORD"]}
        )
        assert result.returncode == 2, result.stderr
        assert "percent-encoded" in result.stderr
        outputs["unencoded store"] = result.stdout + result.stderr
        ran, answers = running.result()
        outputs["run"] = ran.stdout + ran.stderr
        outputs |= {f"web answer {n}": answer for n, answer in enumerate(answers)}

    assert "FAIL  dialer asterisk_ami" in outputs["check"]
    assert "Secret: ***" in outputs["check"]  # the AMI peer echoed it: the error paths were taken
    assert "Traceback" in outputs["--debug run --duration 1"]
    assert "node.stopped" in outputs["run"], outputs["run"][-3000:]
    assert len(answers) == 15, answers
    assert any('"detail"' in answer for answer in answers)  # the local health detail was read
    for name, text in outputs.items():
        assert not leaks(text), (name, leaks(text), text[-3000:])
    written = [path for path in tmp_path.rglob("*") if path.is_file()]
    assert any(path.suffix == ".db" for path in written)
    for path in written:
        content = path.read_bytes().decode("utf-8", "replace")
        assert not leaks(content), (path, leaks(content))
