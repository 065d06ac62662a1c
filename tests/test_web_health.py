"""``/healthz`` and ``/metrics``: served by ``run`` on the node's port, no sign-in, read from the node and store."""

from __future__ import annotations

import json
import re
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

from core.node import Node
from tests.browser.seed import seed
from tests.conftest import write_sites
from tests.test_web_server import serving


def fetch(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


def health_once_checked(base: str) -> tuple[int, dict[str, Any]]:
    """``/healthz`` once the node's first vendor check has run."""
    for _ in range(200):
        status, body = fetch(f"{base}/healthz")
        health = json.loads(body)
        if health["checks"]:
            return status, health
        time.sleep(0.05)
    raise AssertionError("the node never checked its vendors")


def quiet_site(tmp_path: Path) -> Path:
    config = write_sites(tmp_path)
    config.write_text(config.read_text().replace("[sites.t.campaign]\n", "[sites.t.campaign]\nenabled = false\n"))
    return config


def test_healthz_and_metrics_while_the_node_runs(tmp_path: Path, open_node: Callable[..., Node]) -> None:
    node = open_node(quiet_site(tmp_path))
    seed(node, tmp_path / "spool")
    runner = serving(node)
    base = node.site.section.web.base_url
    try:
        status, health = health_once_checked(base)
        metrics_status, metrics = fetch(f"{base}/metrics")
    finally:
        node.stop()
        runner.join(30)
    assert status == 200, health
    assert health["status"] == "ok"
    assert health["scheduler"] == {"running": True}
    assert health["store"]["ok"] is True
    assert set(health["checks"]) == {
        "dialer simulator",
        "recording localdir",
        "sms outbox",
        "crm_sync csv",
        "recordings",
    }
    assert all(check["ok"] for check in health["checks"].values())
    assert metrics_status == 200
    assert 'cartera_calls{outcome="answered"} 3.0' in metrics
    assert 'cartera_calls{outcome="no_answer"} 1.0' in metrics
    recordings = dict(re.findall(r'^cartera_recordings\{state="(\w+)"\} ([\d.]+)$', metrics, re.MULTILINE))
    # The running node may archive the seeded pending recording before /metrics is read.
    assert sum(float(n) for n in recordings.values()) == 4.0, recordings
    assert float(recordings["verified"]) >= 3.0, recordings
    assert "cartera_archival_lag_seconds " in metrics
    assert "cartera_creditor_import_batches 0.0" in metrics
    assert not node.scheduler_running


def test_healthz_fails_when_a_vendor_check_fails(tmp_path: Path, open_node: Callable[..., Node]) -> None:
    config = quiet_site(tmp_path)
    config.write_text(config.read_text().replace("[sites.t.web]\n", "[sites.t.web]\ncheck_seconds = 0.2\n"))
    node = open_node(config)
    outbox = tmp_path / "sms" / "outbox.jsonl"
    runner = serving(node)
    base = node.site.section.web.base_url
    try:
        healthy, _ = health_once_checked(base)
        outbox.unlink(missing_ok=True)
        outbox.mkdir()  # a directory where the outbox file should be: the gateway cannot write
        for _ in range(200):
            status, body = fetch(f"{base}/healthz")
            if status != 200:
                break
            time.sleep(0.05)
    finally:
        node.stop()
        runner.join(30)
    assert healthy == 200
    health = json.loads(body)
    assert status == 503
    assert health["status"] == "fail"
    assert health["checks"]["sms outbox"]["ok"] is False
    assert "not writable" in health["checks"]["sms outbox"]["detail"]
    assert health["checks"]["dialer simulator"]["ok"] is True


def test_healthz_fails_when_the_scheduler_is_not_running(tmp_path: Path, open_node: Callable[..., Node]) -> None:
    from fastapi.testclient import TestClient

    from core.web.app import build_app

    node = open_node(quiet_site(tmp_path))
    answer = TestClient(build_app(node)).get("/healthz")
    assert answer.status_code == 503
    assert answer.json()["scheduler"] == {"running": False}
