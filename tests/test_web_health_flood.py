"""A stranger's flood of ``/metrics`` or ``/healthz`` (no sign-in needed) takes neither the store from the node's
scheduled jobs nor the threads from signed-in users' pages (round 21 M1): concurrent requests share one
computation, run on a thread of its own, and wait for it holding no thread."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from sqlalchemy import text

from cartera.core.hooks import load_plugins
from cartera.node import Node
from cartera.runtime.store_status import StoreStatus
from cartera.web import health
from cartera.web.workers import SharedResult
from tests.browser.seed import PASSWORD, seed
from tests.conftest import write_sites
from tests.scheduled_runs import JobRuns

pytestmark = pytest.mark.abuse

#: More requests at once than Starlette's thread pool (40) and the store's connection pool (15) hold.
FLOOD = 48


@dataclass
class Held:
    """A store read that holds a store connection until ``release``; ``calls`` counts how many ran."""

    computing: threading.Event
    release: threading.Event
    calls: list[int]


def held(monkeypatch: pytest.MonkeyPatch, method: str) -> Held:
    """``StoreStatus.method`` holding a store connection (a slow scrape of a large store) until released."""
    hold = Held(threading.Event(), threading.Event(), [])
    real = getattr(StoreStatus, method)
    lock = threading.Lock()

    def slow(status: StoreStatus) -> object:
        with lock:
            hold.calls.append(1)
        with status._db.reading() as session:
            session.execute(text("SELECT 1"))
            hold.computing.set()
            hold.release.wait(60)
        return real(status)

    monkeypatch.setattr(StoreStatus, method, slow)
    return hold


@pytest.fixture
def node(tmp_path: Path) -> Iterator[Node]:
    config = write_sites(tmp_path)  # the jobs at their default pace: a tick a second, archival as often
    config.write_text(config.read_text().replace("tick_seconds = 0.2", "tick_seconds = 1").replace("= 0.5", "= 1"))
    node = Node.open(config, "t", load_plugins(entry_points=False))
    seed(node, tmp_path / "spool")
    runner = threading.Thread(target=node.run, kwargs={"duration": 300})
    runner.start()
    try:
        for _ in range(500):
            if node.lifecycle.scheduler is not None and node.scheduler_running:
                break
            runner.join(0.02)
        yield node
    finally:
        node.stop()
        runner.join(60)
        node.close()


def signed_in(base: str) -> httpx.Client:
    client = httpx.Client(base_url=base, timeout=30)
    form = client.get("/login")
    csrf = form.text.split('name="csrf" value="', 1)[1].split('"', 1)[0]
    answer = client.post("/login", data={"user": "ana", "password": PASSWORD, "csrf": csrf})
    assert answer.status_code == 303
    return client


@pytest.mark.parametrize(("path", "method"), [("/metrics", "counts"), ("/healthz", "reachable")])
def test_a_flood_of_scrapes_computes_once_and_stops_no_job_nor_page(
    node: Node, monkeypatch: pytest.MonkeyPatch, path: str, method: str
) -> None:
    """While ``FLOOD`` requests wait on one held store read, each scheduled job keeps running (counted runs, not a
    wall-clock figure) and a signed-in supervisor's page answers; they all get the one result."""
    monkeypatch.setattr(health, "FRESH_SECONDS", 3600.0)  # a late request is served the result, however slow
    base = node.site.section.web.base_url
    supervisor = signed_in(base)
    scheduler = node.lifecycle.scheduler
    assert scheduler is not None
    jobs = JobRuns(scheduler)
    hold = held(monkeypatch, method)

    def scrape(_: int) -> int:
        with httpx.Client(base_url=base, timeout=90) as stranger:
            return stranger.get(path).status_code

    page = 0
    try:
        with ThreadPoolExecutor(FLOOD) as strangers:
            flood = strangers.map(scrape, range(FLOOD))
            assert hold.computing.wait(30), f"no {path} reached the store"
            jobs.listen()
            everyone_ran = jobs.each_ran(3, timeout=25)  # while the flood waits on its held store read
            try:
                page = supervisor.get("/recordings").status_code
            except httpx.TimeoutException:
                page = -1
            hold.release.set()
            statuses = list(flood)
    finally:
        hold.release.set()
        supervisor.close()
    assert len(jobs.jobs) == 2, jobs.jobs
    assert everyone_ran, f"a scheduled job waited on the {path} flood: runs while it was held {jobs.runs}"
    assert page == 200, f"a signed-in page waited on the {path} flood"
    assert set(statuses) == {200}
    assert len(hold.calls) == 1, f"{FLOOD} concurrent {path} requests computed {len(hold.calls)} times"


def test_a_shared_result_is_served_while_fresh_computed_again_once_stale_and_a_failure_is_not_kept() -> None:
    fresh = [3600.0]
    computed: list[int] = []

    def compute() -> int:
        computed.append(1)
        if len(computed) == 3:
            raise RuntimeError("the store did not answer")
        return len(computed)

    shared = SharedResult(compute, lambda: fresh[0], "test-shared")

    async def get() -> int:
        return await shared.get()

    assert [asyncio.run(get()) for _ in range(3)] == [1, 1, 1], "a fresh result is served as is"
    fresh[0] = -1.0  # every result stale
    assert asyncio.run(get()) == 2
    with pytest.raises(RuntimeError):
        asyncio.run(get())
    assert asyncio.run(get()) == 4, "a failure is not served again: the next request computes"
    fresh[0] = 3600.0
    assert asyncio.run(get()) == 4
