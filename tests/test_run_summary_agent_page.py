"""The end-of-run summary says how to open an agent's page when the site serves its pages (issue 16 item 10)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from cartera.cli.summary import site_summary
from cartera.node import Node
from tests.conftest import write_sites


def test_the_summary_says_how_to_open_an_agents_page(tmp_path: Path, open_node: Callable[[Path], Node]) -> None:
    node = open_node(write_sites(tmp_path))
    summary = site_summary(node, node.clock.now(), 0.0).splitlines()
    url = f"{node.site.section.web.base_url}/agent"
    at = next(n for n, line in enumerate(summary) if line.startswith("Open an agent's page"))
    assert summary[at].endswith(f"sign in at {url}:")
    assert "$CARTERA_USER_PASSWORD" in summary[at]
    assert summary[at + 1].endswith("--site t users add ana --role agent --extension agent-01")
    assert summary[at + 2].endswith("--site t run")


def test_a_named_seat_is_offered_and_a_site_without_pages_says_nothing(
    tmp_path: Path, open_node: Callable[[Path], Node]
) -> None:
    path = write_sites(tmp_path)
    path.write_text(path.read_text().replace("seed = 7\n", 'seed = 7\nseats = ["mesa-1", "mesa-2"]\n'))
    node = open_node(path)
    seated = site_summary(node, node.clock.now(), 0.0)
    assert "users add ana --role agent --extension mesa-1" in seated
    path.write_text(path.read_text().replace("[sites.t.web]\n", "[sites.t.web]\nenabled = false\n"))
    without = open_node(path)
    assert "agent's page" not in site_summary(without, without.clock.now(), 0.0)
