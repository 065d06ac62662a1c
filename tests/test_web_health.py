"""``/healthz`` and ``/metrics``: served by ``run`` on the node's port, no sign-in, read from the node and store;
``/healthz`` details only for a signed-in admin or a local request."""

from __future__ import annotations

import json
import re
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

from cartera.node import Node
from tests.browser.seed import seed
from tests.conftest import write_sites
from tests.test_web_server import serving


def fetch(url: str, headers: dict[str, str] | None = None) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(urllib.request.Request(url, headers=headers or {}), timeout=10) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


def health_once_checked(base: str) -> tuple[int, dict[str, Any]]:
    """``/healthz`` once the node's first vendor check has run."""
    for _ in range(200):
        status, body = fetch(f"{base}/healthz")
        health = json.loads(body)
        if set(health["checks"]) - {"scheduler", "store"}:
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
    assert health["checks"] == {
        "scheduler": "ok",
        "store": "ok",
        "dialer simulator": "ok",
        "recording localdir": "ok",
        "sms outbox": "ok",
        "crm_sync csv": "ok",
        "creditor sync": "ok",
        "recordings": "ok",
    }
    assert health["detail"]["store"]["detail"] == node.db.display_url  # asked from loopback: the detail
    assert all(check["ok"] for check in health["detail"].values())
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


def test_healthz_fails_when_a_vendor_check_fails_telling_strangers_only_that(
    tmp_path: Path, open_node: Callable[..., Node]
) -> None:
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
        proxied = [
            fetch(f"{base}/healthz", {name: value})
            for name, value in (("X-Forwarded-For", "203.0.113.9"), ("Forwarded", "for=203.0.113.9"))
        ]
    finally:
        node.stop()
        runner.join(30)
    assert healthy == 200
    health = json.loads(body)  # asked from loopback: with the detail
    assert status == 503
    assert health["status"] == "fail"
    assert health["checks"]["sms outbox"] == "fail"
    assert "not writable" in health["detail"]["sms outbox"]["detail"]
    assert health["checks"]["dialer simulator"] == "ok"
    for status, body in proxied:  # through a proxy: ok or fail per check, no path, URL or vendor text
        assert status == 503
        assert json.loads(body) == {"status": "fail", "checks": health["checks"]}
        for told in (str(tmp_path), "sqlite", "not writable", "outbox.jsonl"):
            assert told not in body


def test_healthz_fails_when_the_scheduler_is_not_running(tmp_path: Path, open_node: Callable[..., Node]) -> None:
    from fastapi.testclient import TestClient

    from cartera.web.app import build_app

    node = open_node(quiet_site(tmp_path))
    answer = TestClient(build_app(node.web_services())).get("/healthz")
    assert answer.status_code == 503
    assert answer.json() == {"status": "fail", "checks": {"scheduler": "fail", "store": "ok"}}


def test_healthz_detail_for_a_signed_in_admin_of_the_site(tmp_path: Path, open_node: Callable[..., Node]) -> None:
    from fastapi.testclient import TestClient

    from cartera.users.directory import Grant, Role, UserDirectory
    from cartera.web.app import build_app
    from tests.browser.seed import PASSWORD
    from tests.test_web_pages import sign_in

    node = open_node(quiet_site(tmp_path))
    users = UserDirectory(node.db)
    users.add("ana", PASSWORD, Role.SUPERVISOR, [Grant("t")])
    users.add("dora", PASSWORD, Role.ADMIN, [Grant("t")])
    users.add("elsa", PASSWORD, Role.ADMIN, [Grant("lima")])
    app = build_app(node.web_services())
    anonymous = TestClient(app).get("/healthz").json()
    seen = {name: sign_in(TestClient(app), name).get("/healthz").json() for name in ("ana", "dora", "elsa")}
    assert set(anonymous) == set(seen["ana"]) == set(seen["elsa"]) == {"status", "checks"}
    assert seen["dora"]["detail"]["store"] == {"ok": True, "detail": node.db.display_url}
    assert seen["dora"]["site"] == "t"
