"""The company view (#18 item 4): recordings and KPIs of every site granted to a user, on any node of a site
granted, when sites share one store; a grant of one site never shows another's rows."""

from __future__ import annotations

import hashlib
import json
import random
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from decimal import Decimal
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from cartera.core.hooks import load_plugins
from cartera.core.models import Recording
from cartera.core.store.schema import Account, AuditEntry, ContactAttempt, Creditor, Debtor, Portfolio
from cartera.node import Node
from cartera.plugins.dialers.simulator.audio import RATE, conversation, write_wav
from cartera.portfolio.identity import PortfolioKey
from cartera.users.directory import Grant, Role, UserDirectory
from cartera.web.app import build_app
from tests.browser.seed import DAY, PASSWORD, Seeded, seed
from tests.conftest import run_site, write_sites
from tests.test_web_pages import rows, sign_in

#: Site ``u`` on the same store as ``t``: its own data folder and recording store.
SITE_U = """
[sites.u]
timezone = "America/Bogota"
country = "CO"
data_dir = "var/u"
{database}

[sites.u.compliance]
authorised_channels = ["call"]

[sites.u.recording]
plugin = "localdir"
path = "archive-u"
"""
#: name: grants, beside those of tests.browser.seed (ana: all of t; beto: t's BANCO/VEHICULOS; otro: lima)
COMPANY_USERS = {
    "dora": (Grant("t"), Grant("u")),
    "eva": (Grant("u"),),
    "fede": (Grant("t"), Grant("u", PortfolioKey("BANCO", "VEHICULOS"))),  # u has no VEHICULOS: nothing of u
}


@dataclass
class Company:
    t: Node  #: site t's node, which knows u's store (both in its sites file)
    u: Node
    seeded: Seeded
    u_recording: int  #: u's recording, of its own BANCO/TARJETAS
    u_sha256: str
    config: Path

    def client(self, node: Node | None = None) -> TestClient:
        return TestClient(build_app((node or self.t).web_services()), raise_server_exceptions=False)

    def audits(self, action: str) -> list[AuditEntry]:
        with self.t.db.session() as session:
            return list(session.scalars(select(AuditEntry).where(AuditEntry.action == action).order_by(AuditEntry.id)))


def seed_u(node: Node, spool: Path) -> tuple[int, str]:
    """One answered call of site u's BANCO/TARJETAS (the same creditor and code as t's), archived in u's store."""
    assert node.archiver is not None
    with node.db.session() as session:
        creditor = session.scalars(select(Creditor).where(Creditor.code == "BANCO")).one()
        account = Account(
            portfolio=Portfolio(creditor=creditor, code="TARJETAS", site="u", country="CO"),
            ref="U-5",
            debtor=Debtor(name="Deudora U-5"),
            balance=Decimal(90000),
            currency="COP",
            status="active",
            updated_at=DAY,
        )
        attempt = ContactAttempt(
            site="u",
            account=account,
            phone="+573009990000",
            state="finished",
            requested_at=DAY + timedelta(hours=2),
            outcome="answered",
            started_at=DAY + timedelta(hours=2),
            answered_at=DAY + timedelta(hours=2),
            ended_at=DAY + timedelta(hours=2, seconds=5),
            agent="agent-u1",
            right_party=True,
        )
        session.add(attempt)
        session.flush()
        attempt_id = attempt.id
    path = spool / "u-call.wav"
    write_wav(path, conversation(random.Random(5), 5 * RATE))
    sha256 = hashlib.sha256(path.read_bytes()).hexdigest()
    recording = node.archiver.catalog(Recording(path, attempt_id, DAY + timedelta(hours=2), 5.0, agent="agent-u1"))
    assert node.archiver.run_once().archived == 1
    return recording, sha256


def open_company(directory: Path, database: str) -> Company:
    config = write_sites(directory, database=database, extra=SITE_U)
    config.write_text(config.read_text().replace("{database}", f'database = "{database}"'))
    t = Node.open(config, "t", load_plugins(entry_points=False))
    u = Node.open(config, "u", load_plugins(entry_points=False))
    seeded = seed(t, directory / "spool")
    recording, sha256 = seed_u(u, directory / "spool")
    users = UserDirectory(t.db)
    for name, grants in COMPANY_USERS.items():
        users.add(name, PASSWORD, Role.SUPERVISOR, grants)
    return Company(t, u, seeded, recording, sha256, config)


@pytest.fixture
def company(tmp_path: Path) -> Iterator[Company]:
    opened = open_company(tmp_path, f"sqlite:///{tmp_path / 'company.db'}")
    try:
        yield opened
    finally:
        opened.t.close()
        opened.u.close()


def test_a_user_granted_one_site_never_sees_anothers_rows(company: Company) -> None:
    rid = company.u_recording
    for name in ("ana", "beto", "fede"):  # t only: all of it, one portfolio, or a portfolio u does not have
        client = sign_in(company.client(), name)
        listed = rows(client.get("/recordings").text)
        assert listed, name
        assert str(rid) not in listed, name
        assert rows(client.get("/recordings?account=U-5").text) == [], name
        assert rows(client.get("/recordings?portfolio=BANCO/TARJETAS&agent=agent-u1").text) == [], name
        only_u = client.get("/recordings?site=u")
        assert only_u.status_code == (200 if name == "fede" else 400), name  # fede holds a grant of u
        assert rows(only_u.text) == [], name
        for path in (f"/recordings/{rid}", f"/recordings/{rid}/audio", f"/recordings/{rid}/download"):
            answer = client.get(path)
            assert answer.status_code == 404, (name, path)
            assert "U-5" not in answer.text, (name, path)
        kpi = client.get("/kpi?since=2026-11-20&until=2026-11-30")
        assert kpi.status_code == 200, name
        assert 'data-site="u"' not in kpi.text, name
        assert client.get("/kpi?site=u").status_code == (200 if name == "fede" else 400), name
    eva = sign_in(company.client(company.u), "eva")  # u only, on u's node
    assert rows(eva.get("/recordings").text) == [str(rid)]
    assert eva.get(f"/recordings/{company.seeded.recordings['BCO-1']}").status_code == 404
    assert rows(eva.get("/recordings?account=BCO-1").text) == []
    assert sign_in(company.client(), "eva").get("/recordings").status_code == 403  # on t's node: not granted t
    assert company.audits("recordings.play") == []
    assert company.audits("recordings.download") == []


def test_a_user_granted_two_sites_sees_and_plays_both_on_either_node(company: Company) -> None:
    rid, t_rid = company.u_recording, company.seeded.recordings["BCO-1"]
    for node in (company.t, company.u):
        client = sign_in(company.client(node), "dora")
        page = client.get("/recordings").text
        assert {str(rid), str(t_rid)} <= set(rows(page)), node.site.name
        assert re.search(rf'data-recording="{rid}">\s*<td[^>]*>{rid}</td>\s*<td[^>]*data-site="u"', page)
        assert rows(client.get("/recordings?site=u").text) == [str(rid)]
        assert str(rid) not in rows(client.get("/recordings?site=t").text)
        assert rows(client.get("/recordings?site=u&agent=agent-u1").text) == [str(rid)]
    client = sign_in(company.client(), "dora")  # on t's node, u's recording comes from u's store
    player = client.get(f"/recordings/{rid}")
    assert player.status_code == 200
    assert f'src="/recordings/{rid}/audio"' in player.text
    audio = client.get(f"/recordings/{rid}/audio")
    assert audio.status_code == 200
    assert hashlib.sha256(audio.content).hexdigest() == company.u_sha256
    download = client.get(f"/recordings/{rid}/download")
    assert download.headers["content-disposition"] == f'attachment; filename="u-recording-{rid}.wav"'
    [play] = company.audits("recordings.play")
    assert (play.actor, play.site, play.subject, play.details["recording_site"]) == (
        "web:dora",
        "t",
        f"recording:{rid}",
        "u",
    )
    assert [
        e.details["recording_site"] for e in company.audits("recordings.view") if e.subject == f"recording:{rid}"
    ] == ["u"]
    on_t = [e.details["filters"].get("sites") for e in company.audits("recordings.search") if e.site == "t"]
    assert on_t == ["t:*, u:*", "u:*", None, "u:*"]  # all, site=u, site=t (this site: as before), site=u&agent
    kpi = client.get("/kpi?since=2026-11-20&until=2026-11-30").text
    assert re.search(r'<td data-site="u">u</td><td>2026-11-23</td><td>BANCO/TARJETAS</td><td class="num">1</td>', kpi)
    assert re.search(r'<td data-site="t">t</td><td>2026-11-23</td><td>BANCO/TARJETAS</td><td class="num">3</td>', kpi)
    assert 'data-site="t"' not in client.get("/kpi?since=2026-11-20&until=2026-11-30&site=u").text


def test_a_recording_whose_store_this_node_does_not_know_is_listed_without_a_player(
    company: Company, tmp_path: Path
) -> None:
    alone = tmp_path / "alone"
    alone.mkdir()
    database = company.t.site.database_url
    config = write_sites(alone, database=database)  # site t only: u's store is unknown here
    node = Node.open(config, "t", load_plugins(entry_points=False))
    try:
        client = sign_in(TestClient(build_app(node.web_services()), raise_server_exceptions=False), "dora")
        rid = company.u_recording
        assert str(rid) in rows(client.get("/recordings").text)
        player = client.get(f"/recordings/{rid}")
        assert player.status_code == 200
        assert 'data-elsewhere="u"' in player.text
        assert "<audio" not in player.text
        english = client.get("/lang/en", follow_redirects=False)
        assert english.status_code in (302, 303, 307)
        assert "Available at site u&#39;s node" in client.get(f"/recordings/{rid}").text
        audio = client.get(f"/recordings/{rid}/audio")
        assert audio.status_code == 409
        assert "its site's node" in audio.text or "its site&#39;s node" in audio.text
    finally:
        node.close()
    refused = [e for e in company.audits("web.rejected") if e.details.get("status") == 409]
    assert refused[-1].details["reason"] == f"recording {rid} is kept in site u's store, unknown to this node"
    assert company.audits("recordings.play") == []  # nothing was played


def test_recordings_search_all_sites_on_the_command_line(company: Company) -> None:
    rid, t_rid = company.u_recording, company.seeded.recordings["BCO-1"]
    everything = run_site(company.config, "recordings", "search", "--all-sites", "--json")
    assert everything.returncode == 0, everything.stderr
    found = {item["id"]: item["site"] for item in json.loads(everything.stdout)}
    assert found[rid] == "u"
    assert found[t_rid] == "t"
    assert found[company.seeded.foreign_id] == "lima"
    here = json.loads(run_site(company.config, "recordings", "search", "--json").stdout)
    assert {item["site"] for item in here} == {"t"}
    table = run_site(company.config, "recordings", "search", "--all-sites", "--account", "U-5").stdout
    assert table.splitlines()[0].split()[:2] == ["SITE", "ID"]
    assert table.splitlines()[1].split()[:2] == ["u", str(rid)]
    as_ana = json.loads(
        run_site(company.config, "recordings", "search", "--all-sites", "--user", "ana", "--json").stdout
    )
    assert {item["site"] for item in as_ana} == {"t"}
    as_fede = run_site(company.config, "recordings", "search", "--all-sites", "--user", "fede", "--json")
    assert rid not in [item["id"] for item in json.loads(as_fede.stdout)]
    as_dora = run_site(company.config, "recordings", "search", "--all-sites", "--user", "dora", "--json")
    assert {item["id"] for item in json.loads(as_dora.stdout)} >= {rid, t_rid}
    not_here = run_site(company.config, "recordings", "search", "--user", "eva")
    assert not_here.returncode == 2
    assert "'eva' has no grant for site 't' (granted: u)" in not_here.stderr
    searches = [e for e in company.audits("recordings.search") if e.details["filters"].get("as_user") == "dora"]
    assert searches[0].details["filters"]["sites"] == "t:*, u:*"


@pytest.mark.postgres
def test_the_company_view_on_postgresql(tmp_path: Path, postgres_url: str) -> None:
    opened = open_company(tmp_path, postgres_url)
    try:
        rid = opened.u_recording
        ana = sign_in(opened.client(), "ana")
        assert str(rid) not in rows(ana.get("/recordings").text)
        assert ana.get(f"/recordings/{rid}/audio").status_code == 404
        dora = sign_in(opened.client(), "dora")
        assert rows(dora.get("/recordings?site=u").text) == [str(rid)]
        audio = dora.get(f"/recordings/{rid}/audio", headers={"Range": "bytes=0-9"})
        assert audio.status_code == 206
        assert audio.content.startswith(b"RIFF")
        kpi = dora.get("/kpi?since=2026-11-20&until=2026-11-30").text
        assert 'data-site="u"' in kpi
        assert 'data-site="t"' in kpi
        assert [(e.actor, e.details["recording_site"]) for e in opened.audits("recordings.play")] == [("web:dora", "u")]
    finally:
        opened.t.close()
        opened.u.close()
