"""The browser every page test drives: Debian's Chromium (the `chromium` peer) under Playwright, once a module."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from playwright.sync_api import Browser, Error, sync_playwright

from tests.peers import unavailable
from tests.peers.chromium import ARGS, chromium


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with chromium() as executable, sync_playwright() as playwright:
        try:
            launched = playwright.chromium.launch(executable_path=str(executable), args=ARGS, timeout=60_000)
        except Error as exc:
            unavailable(f"Debian's chromium does not start: {str(exc).splitlines()[0]}")
        yield launched
        launched.close()
