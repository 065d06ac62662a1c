"""Screen-pop latency to the DOM: from the dialer's connection report to the debtor on the agent's page in a real
headless Chromium, with ``--agents`` agent pages open, beside the event stream's receipt of the same pop.

The node and its agents are ``bench_screen_pop``'s. One Chromium (Debian's, the ``chromium`` peer, driven by
Playwright) opens one browser context per agent, signed in with its session cookie, on ``/agent``: the page's own
script (``agent.js``) reads the event stream and writes the debtor's name into ``#debtor``. A MutationObserver on
``#debtor`` records, per call, ``performance.timeOrigin + performance.now()`` when the name is written. Each round
reports one call connected to one agent through the node's dialer context and takes the report's wall-clock time
(``time.time()``) just before; the DOM latency is the page's time minus that one. Both are the same machine's
wall clock (CLOCK_REALTIME, Chromium in a chroot on the same kernel); ``clock_offset_ms`` is the page's clock
against the bench's, read on every page before and after the rounds (``performance.now()`` is monotonic, so a
step of the wall clock during the run would show there). The baseline, from the same rounds, is the pop's
receipt by an in-process reader of the same agent's event stream (``bench_screen_pop.Reader``). CPU: the node's
process alone (Chromium's processes are others) over ``--idle`` seconds with no page, then with every Chromium
page connected (keep-alives only), per page. Usage (the Chromium peer is shared: take its lock)::

    flock /tmp/cartera-peer-chromium.lock .venv/bin/python bench/bench_screen_pop_browser.py --agents 50 --pops 250
"""

from __future__ import annotations

import statistics
import sys
import time
from pathlib import Path

from bench_screen_pop import Reader, attempt, bench_node, cpu_figures, cpu_over, main, open_readers, quantiles
from playwright.sync_api import Browser, Page, sync_playwright

from cartera.core.models import AgentConnected
from cartera.node import Node
from cartera.runtime.context import NodeContext
from cartera.web.context import SESSION_COOKIE

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests.peers: the browser's provisioning
from tests.peers.chromium import ARGS, chromium

WAIT_MS = 5000  #: longest wait for one pop on a page
#: Installed in each page once it loaded: the time each call's debtor was written into ``#debtor``, and a promise
#: of that time for the bench to await.
OBSERVER = """(wait) => {
  const popped = new Map(), waiting = new Map();
  const desk = document.getElementById("desk");
  new MutationObserver(() => {
    const at = performance.timeOrigin + performance.now();
    const id = Number(desk.dataset.popAttempt);
    if (!id || popped.has(id) || !document.getElementById("debtor").textContent) return;
    popped.set(id, at);
    if (waiting.has(id)) waiting.get(id)(at);
  }).observe(document.getElementById("debtor"), {childList: true, characterData: true, subtree: true});
  window.benchPoppedAt = (id) => popped.has(id) ? Promise.resolve(popped.get(id)) : Promise.race([
    new Promise((resolve) => waiting.set(id, resolve)),
    new Promise((_, reject) => setTimeout(() => reject(new Error("no pop of call " + id)), wait)),
  ]);
}"""


def open_pages(browser: Browser, node: Node, seeded: list[tuple[str, str, int]]) -> list[Page]:
    """One browser context per agent, signed in by its session cookie, on the agent page with its stream open."""
    base = node.site.section.web.base_url
    pages = []
    for name, token, _ in seeded:
        context = browser.new_context(viewport={"width": 1366, "height": 768})
        context.add_cookies([{"name": SESSION_COOKIE, "value": token, "url": base}])
        page = context.new_page()
        page.goto(f"{base}/agent")
        if page.url != f"{base}/agent":
            raise SystemExit(f"{name}'s page went to {page.url}")
        page.evaluate(OBSERVER, WAIT_MS)
        pages.append(page)
    roster, deadline = node.workspace.roster, time.monotonic() + 60
    for name, _, _ in seeded:
        while roster.get(name).pages < 1:
            if time.monotonic() > deadline:
                raise SystemExit(f"{name}'s page never opened its event stream")
            time.sleep(0.05)
    return pages


def clock_offsets(pages: list[Page]) -> list[tuple[float, float]]:
    """Each page's wall clock minus the bench's, in seconds, and the half-width of the reading's window."""
    offsets = []
    for page in pages:
        before = time.time()
        at: float = page.evaluate("performance.timeOrigin + performance.now()")
        after = time.time()
        offsets.append((at / 1000 - (before + after) / 2, (after - before) / 2))
    return offsets


def measure(
    node: Node, pages: list[Page], readers: list[Reader], seeded: list[tuple[str, str, int]], rounds: int
) -> tuple[list[float], list[float]]:
    """Seconds from each connection report to its debtor in the page's DOM, and to its receipt on the stream."""
    context, dom, streamed = NodeContext(node, "dialer"), [], []
    for n in range(rounds):
        index = n % len(pages)
        page, reader, (name, _, account_id) = pages[index], readers[index], seeded[index]
        attempt_id = attempt(node, account_id, index)
        arrived = reader.expect(f"screen_pop:{attempt_id}")
        wall, start = time.time(), time.perf_counter()
        context.report_agent_connected(AgentConnected(attempt_id, f"agent-{index:02d}", node.clock.now()))
        if not arrived.wait(WAIT_MS / 1000):
            raise SystemExit(f"the pop of call {attempt_id} never reached {name}'s stream")
        streamed.append(reader.arrived[f"screen_pop:{attempt_id}"] - start)
        shown: float = page.evaluate("id => window.benchPoppedAt(id)", attempt_id)
        dom.append(shown / 1000 - wall)
    return dom, streamed


def run(agents: int, rounds: int, idle: float) -> dict[str, object]:
    with (
        bench_node(agents) as (node, seeded),
        chromium() as executable,
        sync_playwright() as playwright,
    ):
        browser = playwright.chromium.launch(executable_path=str(executable), args=ARGS, timeout=60_000)
        try:
            idle_cpu = cpu_over(idle)
            pages = open_pages(browser, node, seeded)
            connected_cpu = cpu_over(idle)
            readers = open_readers(node, seeded)
            offsets = clock_offsets(pages)
            busy = time.process_time()
            dom, streamed = measure(node, pages, readers, seeded, rounds)
            busy = time.process_time() - busy
            offsets += clock_offsets(pages)
            for reader in readers:
                reader.close()
        finally:
            browser.close()
    shown = quantiles(dom)
    return {
        "agents": agents,
        "screen_pop_dom": shown | {"max_ms": round(max(dom) * 1000, 2)},
        "screen_pop_stream": quantiles(streamed) | {"max_ms": round(max(streamed) * 1000, 2)},
        "clock_offset_ms": {
            "median": round(statistics.median(offset for offset, _ in offsets) * 1000, 2),
            "largest": round(max((offset for offset, _ in offsets), key=abs) * 1000, 2),
            "reading_within": round(max(width for _, width in offsets) * 1000, 2),
        },
        **cpu_figures(idle_cpu, connected_cpu, idle, agents),
        "cpu_ms_per_round": round(busy / rounds * 1000, 2),
    }


if __name__ == "__main__":
    main(run, __doc__, pops=250)
