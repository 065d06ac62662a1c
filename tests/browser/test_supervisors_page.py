"""The supervisors' page in a real headless Chromium (Debian's, chrooted) driven by Playwright, against a
running node: sign in, search, play and seek, download, and another site's user seeing nothing.

Screenshots of the main views go to ``$CARTERA_SCREENSHOTS`` when set (``docs/screenshots`` for the README),
else to the test's temporary directory."""

from __future__ import annotations

import hashlib
import os
import re
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, ViewportSize
from sqlalchemy import select

from cartera.core.hooks import load_plugins
from cartera.core.store.schema import AuditEntry
from cartera.node import Node
from tests.browser.seed import PASSWORD, Seeded, seed
from tests.conftest import write_sites
from tests.test_web_server import serving

pytestmark = pytest.mark.browser
LONG_CALL_S = 300.0  # long enough that seeking near its end needs a new range request
LAPTOP = ViewportSize(width=1280, height=800)
TABLET = ViewportSize(width=820, height=1180)


@dataclass
class Running:
    node: Node
    seeded: Seeded
    base: str
    shots: Path

    def shot(self, page: Page, name: str) -> None:
        page.screenshot(path=str(self.shots / f"{name}.png"), full_page=True)

    def ranges_played(self, recording_id: int) -> list[str]:
        with self.node.db.session() as session:
            entries = session.scalars(
                select(AuditEntry).where(
                    AuditEntry.action == "recordings.play", AuditEntry.subject == f"recording:{recording_id}"
                )
            )
            return [entry.details["range"] for entry in entries]


@pytest.fixture
def running(tmp_path: Path) -> Iterator[Running]:
    config = write_sites(tmp_path)
    config.write_text(config.read_text().replace("[sites.t.campaign]\n", "[sites.t.campaign]\nenabled = false\n"))
    node = Node.open(config, "t", load_plugins(entry_points=False))
    seeded = seed(node, tmp_path / "spool", first_call_seconds=LONG_CALL_S)
    shots = Path(os.environ.get("CARTERA_SCREENSHOTS") or tmp_path / "screenshots")
    shots.mkdir(parents=True, exist_ok=True)
    runner: threading.Thread = serving(node)
    try:
        yield Running(node, seeded, node.site.section.web.base_url, shots)
    finally:
        node.stop()
        runner.join(30)
        node.close()


def sign_in(page: Page, base: str, user: str) -> None:
    page.goto(f"{base}/login")
    page.fill("input[name=user]", user)
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_load_state()


def test_sign_in_search_play_seek_and_download(browser: Browser, running: Running) -> None:
    base, rid = running.base, running.seeded.recordings["BCO-1"]
    context = browser.new_context(viewport=LAPTOP, accept_downloads=True)
    page = context.new_page()
    page.goto(f"{base}/login")
    running.shot(page, "login")
    sign_in(page, base, "ana")
    assert page.url == f"{base}/recordings"
    assert page.locator("tr[data-recording]").count() == 4
    running.shot(page, "search")

    page.fill("input[name=account]", "BCO-1")
    page.click("form[role=search] button[type=submit]")
    page.wait_for_url(re.compile(r"account=BCO-1"))
    assert page.locator("tr[data-recording]").count() == 1
    page.click(f"tr[data-recording='{rid}'] a[href='/recordings/{rid}']")
    page.wait_for_url(f"{base}/recordings/{rid}")

    served: list[int] = []
    page.on("response", lambda response: served.append(response.status) if "/audio" in response.url else None)
    page.wait_for_function("document.querySelector('#player').readyState >= 1", timeout=30_000)
    duration = page.evaluate("document.querySelector('#player').duration")
    assert duration == pytest.approx(LONG_CALL_S, abs=0.5)
    landed = page.evaluate(
        """target => new Promise(resolve => {
            const audio = document.querySelector('#player');
            audio.addEventListener('seeked', () => resolve(audio.currentTime), {once: true});
            audio.currentTime = target;
        })""",
        LONG_CALL_S - 40,
    )
    assert landed == pytest.approx(LONG_CALL_S - 40, abs=0.5)
    page.wait_for_function("document.querySelector('#player').readyState >= 2", timeout=30_000)
    starts = [int(m.group(1)) for r in running.ranges_played(rid) if (m := re.match(r"bytes=(\d+)-", r))]
    assert starts[:1] == [0], "the player's first request asks for a range from the start"
    assert any(start > 0 for start in starts), f"seeking near the end asked for no later range: {starts}"
    assert 206 in served
    running.shot(page, "player")

    with page.expect_download() as download_info:
        page.click(f"a[href='/recordings/{rid}/download']")
    downloaded = Path(download_info.value.path())
    assert download_info.value.suggested_filename == f"t-recording-{rid}.wav"
    assert hashlib.sha256(downloaded.read_bytes()).hexdigest() == running.seeded.sha256[rid]

    page.goto(f"{base}/kpi?since=2026-11-20&until=2026-11-30")
    assert page.locator("svg.chart rect").count() >= 2
    running.shot(page, "kpi")
    context.close()

    auditor = browser.new_context(viewport=LAPTOP).new_page()
    sign_in(auditor, base, "carla")
    auditor.goto(f"{base}/audit")
    downloads = auditor.locator("tr[data-action='recordings.download']")
    assert downloads.count() == 1
    assert "web:ana" in downloads.inner_text()
    running.shot(auditor, "audit")
    auditor.context.close()


def test_the_pages_fit_a_tablet_and_switch_to_english(browser: Browser, running: Running) -> None:
    page = browser.new_context(viewport=TABLET).new_page()
    sign_in(page, running.base, "ana")
    page.click("a.lang")
    page.wait_for_load_state()
    assert page.locator("h1").inner_text() == "Search recordings"
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth"), "the page overflows a tablet"
    running.shot(page, "search-tablet-en")
    page.context.close()


def test_a_user_of_another_site_cannot_see_the_recording(browser: Browser, running: Running) -> None:
    base, rid = running.base, running.seeded.recordings["BCO-1"]
    page = browser.new_context(viewport=LAPTOP).new_page()
    sign_in(page, base, "otro")
    assert "no tiene acceso a la sede t" in page.locator("main").inner_text()
    for path in ("/recordings?account=BCO-1", f"/recordings/{rid}"):
        answer = page.goto(f"{base}{path}")
        assert answer is not None
        assert answer.status == 403
        assert "BCO-1" not in page.content()
    audio = page.request.get(f"{base}/recordings/{rid}/audio", headers={"Range": "bytes=0-"})
    assert audio.status == 403
    assert b"RIFF" not in audio.body()
    assert running.ranges_played(rid) == []
    page.context.close()
