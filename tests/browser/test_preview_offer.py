"""Preview mode's offer on the agent's page in a real headless Chromium (Debian's, chrooted) driven by Playwright,
against a running node on the simulator: ready with the keyboard, the next account pushed to the page, skipped,
the next one called, its pop and disposition, and the following account offered.

Screenshots go to ``$CARTERA_SCREENSHOTS`` when set, else to the test's temporary directory."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from playwright.sync_api import Browser, expect
from sqlalchemy import select

from cartera.core.store.schema import AuditEntry
from tests.browser.test_agent_page import LAPTOP, sign_in
from tests.test_preview_offers import open_desk, seed
from tests.test_web_server import serving

pytestmark = pytest.mark.browser


def test_an_agent_skips_an_offer_calls_the_next_and_is_offered_another_once_dispositioned(
    browser: Browser, tmp_path: Path
) -> None:
    node = open_desk(tmp_path, "preview")
    seed(node)
    shots = Path(os.environ.get("CARTERA_SCREENSHOTS") or tmp_path / "screenshots")
    shots.mkdir(parents=True, exist_ok=True)
    runner = serving(node)
    try:
        page = browser.new_context(viewport=LAPTOP).new_page()
        sign_in(page, node.site.section.web.base_url, "ana")
        expect(page.locator("#offer")).to_be_hidden()  # paused: nothing offered
        page.keyboard.press("r")
        expect(page.locator("#offer-debtor")).to_have_text("Deudor T2")
        expect(page.locator("#offer-account")).to_have_text("BANCO/TARJETAS/T2")
        assert "300000" not in page.locator("#offer").inner_text()  # no debt before the right party
        page.screenshot(path=str(shots / "agent-preview-offer.png"), full_page=True)

        page.select_option("#skip-reason", "wrong_data")
        page.locator("body").focus()
        page.keyboard.press("s")
        expect(page.locator("#offer-debtor")).to_have_text("Deudor T3")
        page.keyboard.press("l")
        expect(page.locator("#debtor")).to_have_text("Deudor T3", timeout=10_000)  # answered: the pop
        expect(page.locator("#offer")).to_be_hidden()
        page.keyboard.press("c")
        expect(page.locator("#accounts")).to_contain_text("T3")
        expect(page.locator("#code option[value=wrong_party]")).to_have_count(1)
        page.select_option("#code", "wrong_party")
        page.keyboard.press("Control+Enter")
        expect(page.locator("#state")).to_have_attribute("data-state", "ready")
        expect(page.locator("#offer-debtor")).to_have_text("Deudor T1")

        with node.db.session() as session:
            skipped = session.execute(
                select(AuditEntry.subject, AuditEntry.details).where(AuditEntry.action == "workspace.preview_skip")
            ).all()
        assert [(subject, details["reason"]) for subject, details in skipped] == [
            ("account:BANCO/TARJETAS/T2", "wrong_data")
        ]
    finally:
        node.stop()
        runner.join(30)
        node.close()
