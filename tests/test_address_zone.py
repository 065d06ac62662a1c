"""Red-team M3: the creditor's address zone is used only when it is plausible for the debtor.

A creditor pushed ``"timezone": "Asia/Tokyo"`` for a Colombian mobile: the gate read Ley 2300's 07:00-19:00 in
Tokyo and allowed a call at 03:00 in Bogotá. The import now quarantines a zone that is not one of the
portfolio's (or its law pack's) country, on every path; and the gate, for what is already stored, checks every
zone it cannot rule out (the address's and the number's) when the address's is not one of the number's country.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from zoneinfo import ZoneInfo

import httpx
import pytest

from cartera.contact.compliance import Reason, Subject, build_policy
from cartera.contact.compliance.engine import ComplianceGate
from cartera.core.models import AssignmentBatch, AssignmentRow, Channel
from cartera.node import Node
from cartera.web.app import PLUGIN_PREFIX, build_app
from cartera.web.server import WebServer
from tests.conftest import run_site, write_sites
from tests.plugins.crm_sync.test_http import BCO_TOKEN, batch, http_site, row

pytestmark = pytest.mark.abuse

BOGOTA = ZoneInfo("America/Bogota")
MOBILE = "+573109990001"
AT_3AM = datetime(2026, 11, 24, 3, 0, tzinfo=BOGOTA)  # a Tuesday: 17:00 in Tokyo


def _row(line: int, ref: str, timezone: str | None, *, region: str | None = None) -> AssignmentRow:
    return AssignmentRow(
        line, "BANCO", "TARJETAS", ref, "Deudor", (MOBILE,), Decimal("1000"), "COP", region=region, timezone=timezone
    )


def test_import_quarantines_a_zone_not_of_the_portfolios_country(
    tmp_path: Path, open_node: Callable[..., Node]
) -> None:
    node = open_node(write_sites(tmp_path))
    rows = [
        _row(1, "TZ-1", "Asia/Tokyo"),
        _row(2, "TZ-2", "posixrules"),
        _row(3, "TZ-3", "localtime"),
        _row(4, "TZ-4", "Factory"),
        _row(5, "TZ-5", "America/Bogota"),
        _row(6, "TZ-6", None),
        _row(7, "TZ-7", "Mars/Base"),
        _row(8, "TZ-8", "America/Bogota", region="CL-AP"),
        _row(9, "TZ-9", "America/Bogota", region="CO-DC"),
    ]
    report = node.importer.import_batch(AssignmentBatch("api", "sha-tz", rows), actor="test")
    assert report.new == 3  # TZ-5, TZ-6, TZ-9: nothing else lost
    quarantined = {error.line: error for error in report.quarantined}
    assert sorted(quarantined) == [1, 2, 3, 4, 7, 8]
    assert {error.field for error in report.quarantined} == {"timezone"}
    assert quarantined[1].reason == (
        "time zone 'Asia/Tokyo' is not a zone of the portfolio's country CO (IANA's zones: America/Bogota)"
    )
    assert "'posixrules' is not" in quarantined[2].reason
    assert "'Mars/Base' is not an IANA name" in quarantined[7].reason
    assert "region CL-AP" in quarantined[8].reason


def test_a_zone_of_the_law_packs_country_is_accepted(tmp_path: Path, open_node: Callable[..., Node]) -> None:
    extra = '\n[sites.t.compliance.portfolios."BANCO/MA"]\nlaw_pack = "us-ma"\nauthorised_channels = ["call"]\n'
    config = write_sites(tmp_path)
    text = config.read_text().replace("[sites.t.campaign]", extra + "\n[sites.t.campaign]")
    text = "".join(line for line in text.splitlines(keepends=True) if not line.startswith("contact_window"))
    config.write_text(text)
    node = open_node(config)
    us = "+16175550123"
    rows = [
        AssignmentRow(1, "BANCO", "MA", "MA-1", "D", (us,), Decimal("1"), "USD", timezone="America/New_York"),
        AssignmentRow(2, "BANCO", "MA", "MA-2", "D", (us,), Decimal("1"), "USD", timezone="Asia/Tokyo"),
        AssignmentRow(
            3, "BANCO", "MA", "MA-3", "D", (us,), Decimal("1"), "USD", timezone="America/Los_Angeles", region="CA-BC"
        ),
    ]
    report = node.importer.import_batch(AssignmentBatch("api", "sha-ma", rows), actor="test")
    assert report.new == 1
    assert [(e.line, e.field) for e in report.quarantined] == [(2, "timezone"), (3, "timezone")]
    assert "the portfolio's country US " in report.quarantined[0].reason  # the law pack's, as the site set it


def test_http_push_of_an_implausible_zone_is_rejected_with_its_index(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, open_node: Callable[..., Node]
) -> None:
    node = open_node(http_site(tmp_path, monkeypatch))
    rows = [row("TZ-1", "+573109990001", timezone="Asia/Tokyo"), row("TZ-2", "3101234567", timezone="America/Bogota")]
    port = node.site.section.web.port
    with WebServer(build_app(node.web_services()), "127.0.0.1", port):
        base = f"http://127.0.0.1:{port}{PLUGIN_PREFIX}/crm_sync/v1"
        with httpx.Client(base_url=base, headers={"Authorization": f"Bearer {BCO_TOKEN}"}, timeout=10) as client:
            assert client.post("/batches", json=batch("tz-1", rows, creditor="BANCO")).status_code == 202
            run = node.creditor_sync().run_once()
            assert [report.new for report in run.imports] == [1]
            answer = client.get("/batches/tz-1").json()
    assert answer["status"] == "imported"
    assert [(r["index"], r["field"]) for r in answer["rejected"]] == [(0, "timezone")]
    assert "Asia/Tokyo" in answer["rejected"][0]["reason"]


def test_http_push_of_a_zone_too_long_for_a_file_name_quarantines_only_that_row(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, open_node: Callable[..., Node]
) -> None:
    """Red-team round 17 M5: ZoneInfo raised OSError (ENAMETOOLONG) for a zone over 255 characters; the whole
    batch failed on every run instead of quarantining the row."""
    node = open_node(http_site(tmp_path, monkeypatch))
    rows = [row("TZ-1", "+573109990001", timezone="A" * 300), row("TZ-2", "3101234567", timezone="America/Bogota")]
    port = node.site.section.web.port
    with WebServer(build_app(node.web_services()), "127.0.0.1", port):
        base = f"http://127.0.0.1:{port}{PLUGIN_PREFIX}/crm_sync/v1"
        with httpx.Client(base_url=base, headers={"Authorization": f"Bearer {BCO_TOKEN}"}, timeout=10) as client:
            assert client.post("/batches", json=batch("tz-1", rows, creditor="BANCO")).status_code == 202
            run = node.creditor_sync().run_once()
            assert [report.new for report in run.imports] == [1]
            answer = client.get("/batches/tz-1").json()
    assert answer["status"] == "imported"
    assert [(r["index"], r["field"]) for r in answer["rejected"]] == [(0, "timezone")]


def test_import_file_quarantines_an_implausible_zone(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = http_site(tmp_path, monkeypatch)
    file = tmp_path / "mail.json"
    rows = [row("TZ-1", "+573109990001", timezone="posixrules"), row("TZ-2", "3101234567")]
    file.write_text(json.dumps(batch("mail-tz", rows, creditor="BANCO")), encoding="utf-8")
    result = run_site(config, "import", str(file), env={"CARTERA_TEST_BANCO_TOKEN": BCO_TOKEN})
    assert result.returncode == 0, result.stderr
    assert "1 new" in result.stdout
    assert "1 quarantined" in result.stdout
    assert f"quarantined {file}:1: timezone: time zone 'posixrules' is not" in result.stdout, result.stdout


def _gate() -> ComplianceGate:
    policy = build_policy("co", [], ("call", "sms"))
    return ComplianceGate("t", country="CO", fallback_zone=BOGOTA, default=policy)


def test_gate_checks_every_zone_when_the_address_zone_is_not_the_numbers_country() -> None:
    gate = _gate()
    tokyo = Subject(Channel.CALL, MOBILE, "TZ-1", "active", "BCO/T", "CO", timezone="Asia/Tokyo")
    assert [zone.key for zone in gate.zones(tokyo)] == ["Asia/Tokyo", "America/Bogota"]
    decision = gate.evaluate(tokyo, AT_3AM)
    assert not decision.allowed
    assert decision.reasons == (Reason.OUTSIDE_CONTACT_WINDOW,)
    # 07:00-19:00 in both zones: 17:00-19:00 in Bogotá
    assert decision.next_allowed_at == datetime(2026, 11, 24, 17, 0, tzinfo=BOGOTA)
    stale = Subject(Channel.CALL, MOBILE, "TZ-2", "active", "BCO/T", "CO", timezone="posixrules")
    assert [zone.key for zone in gate.zones(stale)] == ["posixrules", "America/Bogota"]
    assert not gate.evaluate(stale, AT_3AM).allowed
    gone = Subject(Channel.CALL, MOBILE, "TZ-3", "active", "BCO/T", "CO", timezone="Gone/Zone")
    assert [zone.key for zone in gate.zones(gone)] == ["America/Bogota"]
    plausible = Subject(Channel.CALL, MOBILE, "TZ-4", "active", "BCO/T", "CO", timezone="America/Bogota")
    assert [zone.key for zone in gate.zones(plausible)] == ["America/Bogota"]
    assert gate.evaluate(plausible, datetime(2026, 11, 24, 10, 0, tzinfo=BOGOTA)).allowed


def test_explain_says_the_address_zone_was_doubted(tmp_path: Path, open_node: Callable[..., Node]) -> None:
    config = write_sites(tmp_path)
    node = open_node(config)
    report = node.importer.import_batch(AssignmentBatch("api", "sha-1", [_row(1, "TZ-1", None)]), actor="test")
    assert report.new == 1
    node.db.dispose()
    with sqlite3.connect(tmp_path / "var" / "t.db") as db:  # stored before imports checked the zone
        db.execute("update debtors set timezone = 'Asia/Tokyo'")
    result = run_site(config, "explain", "--account", "TZ-1", "--at", "2026-11-24T03:00:00-05:00")
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "debtor's time: Tue 24 Nov 2026 17:00 Asia/Tokyo; Tue 24 Nov 2026 03:00 America/Bogota" in out
    assert "Asia/Tokyo is not a zone of the number's country CO" in out
    assert "decision: DENIED" in out
    assert "(Tue 24 Nov 2026 17:00 America/Bogota)" in out
