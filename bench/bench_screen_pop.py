"""Screen-pop latency: from the dialer's connection report to the agent's page receiving the pop, with many agents'
pages connected over server-sent events, and the node's CPU per connected page.

A node (simulator dialer, campaign off) serves its web app on a loopback port; ``--agents`` agent users each have
a session and an event stream open (``/agent/events``, read by a thread each, as a browser's EventSource does).
Each round reports one call connected to one agent through the node's dialer context
(``report_agent_connected``: the attempt recorded, the pop built from the store, pushed) and times it until that
agent's stream has delivered the ``screen_pop``. The baseline, in alternating rounds, is the same hub pushing a
bare one-field event (a ``call_ended``, a kind the agent's stream carries) to the same agent's stream: the
transport alone, without recording the connection or building the pop. CPU: the process's CPU time over
``--idle`` seconds with no page connected, then with every page connected (keep-alives only), per page, and the
CPU time of each measured round (a pop and a bare push); the in-process readers are counted too (an upper
bound). Usage::

    .venv/bin/python bench/bench_screen_pop.py --agents 50 --pops 300 [--json]
"""

from __future__ import annotations

import argparse
import json
import socket
import statistics
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import httpx

from cartera.core.models import AgentConnected
from cartera.core.store.schema import Account, ContactAttempt, Creditor, Debtor, Phone, Portfolio
from cartera.node import Node
from cartera.portfolio.identity import PortfolioKey
from cartera.runtime.context import NodeContext
from cartera.users.directory import Grant, Role, UserDirectory
from cartera.users.sessions import SessionStore
from cartera.web.context import SESSION_COOKIE
from cartera.workspace.hub import CALL_ENDED

SITES = """
[sites.bench]
timezone = "America/Bogota"
country = "CO"
data_dir = "{data}"

[sites.bench.compliance]
authorised_channels = ["call", "sms"]

[sites.bench.campaign]
enabled = false

[sites.bench.web]
port = {port}
workers = 2

[sites.bench.dialer]
plugin = "simulator"
seats = [{seats}]

[sites.bench.recording]
plugin = "localdir"
path = "archive"
"""


@dataclass
class Reader:
    """One agent's page: its event stream, read on a thread; when each awaited event arrived."""

    name: str
    cookie: str
    arrived: dict[str, float] = field(default_factory=dict)
    wanted: dict[str, threading.Event] = field(default_factory=dict)
    opened: threading.Event = field(default_factory=threading.Event)
    sock: socket.socket | None = None

    def expect(self, key: str) -> threading.Event:
        event = self.wanted[key] = threading.Event()
        return event

    def run(self, base: str) -> None:
        client = httpx.Client(base_url=base, cookies={SESSION_COOKIE: self.cookie}, timeout=httpx.Timeout(10, read=60))
        try:
            with client.stream("GET", "/agent/events") as answer:
                self.sock = answer.extensions["network_stream"].get_extra_info("socket")
                kind = data = ""
                for line in answer.iter_lines():
                    if line.startswith("event: "):
                        kind = line[7:]
                    elif line.startswith("data: "):
                        data = line[6:]
                    elif not line and data:
                        self._got(kind, json.loads(data))
                        kind = data = ""
        except httpx.HTTPError:
            return

    def _got(self, kind: str, data: dict[str, object]) -> None:
        now = time.perf_counter()
        if kind == "agent_state":
            self.opened.set()
            return
        key = f"{kind}:{data.get('attempt_id', data.get('n'))}"
        self.arrived[key] = now
        if key in self.wanted:
            self.wanted[key].set()

    def close(self) -> None:
        if self.sock is not None:
            self.sock.shutdown(socket.SHUT_RDWR)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def seed(node: Node, agents: int) -> list[tuple[str, str, int]]:
    """``agents`` agent users, each with an account to be called about: (name, session token, account id)."""
    users, sessions = UserDirectory(node.db), SessionStore(node.db, 600, 24, lambda: datetime.now(UTC))
    grant = (Grant("bench", PortfolioKey("BANCO", "TARJETAS")),)
    seeded = []
    with node.db.session() as session:
        portfolio = Portfolio(creditor=Creditor(code="BANCO"), code="TARJETAS", site="bench", country="CO")
        accounts = []
        for n in range(agents):
            debtor = Debtor(name=f"Deudor {n}", phones=[Phone(e164=f"+5730011{n:05d}", position=0)])
            accounts.append(
                Account(
                    portfolio=portfolio,
                    ref=f"BCO-{n}",
                    debtor=debtor,
                    balance=Decimal(500000),
                    currency="COP",
                    status="active",
                    updated_at=datetime.now(UTC),
                )
            )
        session.add_all(accounts)
        session.flush()
        ids = [account.id for account in accounts]
    for n, account_id in enumerate(ids):
        user = users.add(f"agent{n}", "bench password 123", Role.AGENT, grant, extension=f"agent-{n:02d}")
        token, _ = sessions.create(user.id)
        seeded.append((user.name, token, account_id))
    return seeded


def attempt(node: Node, account_id: int, n: int) -> int:
    with node.db.session() as session:
        row = ContactAttempt(
            site="bench",
            account_id=account_id,
            phone=f"+5730011{n:05d}",
            state="placing",
            requested_at=node.clock.now(),
        )
        session.add(row)
        session.flush()
        return row.id


def quantiles(values: list[float]) -> dict[str, float]:
    cuts = statistics.quantiles(values, n=100)
    return {"p50_ms": round(cuts[49] * 1000, 2), "p95_ms": round(cuts[94] * 1000, 2), "n": len(values)}


def cpu_over(seconds: float) -> float:
    start = time.process_time()
    time.sleep(seconds)
    return time.process_time() - start


def measure(
    node: Node, readers: list[Reader], seeded: list[tuple[str, str, int]], rounds: int
) -> tuple[list[float], list[float]]:
    """Seconds from each connection report to its pop on the page, and from each bare push to the page, alternating."""
    context, pops, bare = NodeContext(node, "dialer"), [], []
    for n in range(rounds):
        index = n % len(readers)
        reader, (name, _, account_id) = readers[index], seeded[index]
        attempt_id = attempt(node, account_id, index)
        arrived = reader.expect(f"screen_pop:{attempt_id}")
        start = time.perf_counter()
        context.report_agent_connected(AgentConnected(attempt_id, f"agent-{index:02d}", node.clock.now()))
        if not arrived.wait(5):
            raise SystemExit(f"the pop of call {attempt_id} never reached {name}")
        pops.append(reader.arrived[f"screen_pop:{attempt_id}"] - start)
        pushed = reader.expect(f"{CALL_ENDED}:{n}")
        start = time.perf_counter()
        node.workspace.publish(CALL_ENDED, {"n": n}, agent=name)  # a kind the agent's stream carries
        if not pushed.wait(5):
            raise SystemExit(f"the bare event {n} never reached {name}")
        bare.append(reader.arrived[f"{CALL_ENDED}:{n}"] - start)
    return pops, bare


@contextmanager
def bench_node(agents: int) -> Iterator[tuple[Node, list[tuple[str, str, int]]]]:
    """A node serving its web app on a free loopback port, with ``agents`` seeded agents (see :func:`seed`)."""
    with tempfile.TemporaryDirectory(prefix="bench-pop-") as tmp:
        config = Path(tmp) / "sites.toml"
        seats = ", ".join(f'"agent-{n:02d}"' for n in range(agents))
        config.write_text(SITES.format(data=Path(tmp) / "data", port=free_port(), seats=seats))
        node = Node.open(config, "bench")
        runner = threading.Thread(target=node.run, daemon=True)
        seeded = seed(node, agents)
        runner.start()
        try:
            while True:
                with socket.socket() as probe:
                    if probe.connect_ex(("127.0.0.1", node.site.section.web.port)) == 0:
                        break
                time.sleep(0.05)
            yield node, seeded
        finally:
            node.stop()
            runner.join(30)
            node.close()


def open_readers(node: Node, seeded: list[tuple[str, str, int]]) -> list[Reader]:
    """One event stream read on a thread per seeded agent, each opened (its first state received)."""
    readers = [Reader(name, token) for name, token, _ in seeded]
    for reader in readers:
        threading.Thread(target=reader.run, args=(node.site.section.web.base_url,), daemon=True).start()
    for reader in readers:
        if not reader.opened.wait(30):
            raise SystemExit(f"{reader.name}'s stream never opened")
    return readers


def cpu_figures(idle_cpu: float, connected_cpu: float, idle: float, agents: int) -> dict[str, float]:
    return {
        "cpu_idle_s_per_s": round(idle_cpu / idle, 4),
        "cpu_connected_s_per_s": round(connected_cpu / idle, 4),
        "cpu_per_connected_agent_pct": round((connected_cpu - idle_cpu) / agents / idle * 100, 3),
    }


def run(agents: int, rounds: int, idle: float) -> dict[str, object]:
    with bench_node(agents) as (node, seeded):
        idle_cpu = cpu_over(idle)
        readers = open_readers(node, seeded)
        connected_cpu = cpu_over(idle)
        busy = time.process_time()
        pops, bare = measure(node, readers, seeded, rounds)
        busy = time.process_time() - busy
        for reader in readers:
            reader.close()
    pop, baseline = quantiles(pops), quantiles(bare)
    return {
        "agents": agents,
        "screen_pop": pop,
        "bare_event": baseline,
        "ratio_p50": round(pop["p50_ms"] / baseline["p50_ms"], 2),
        "ratio_p95": round(pop["p95_ms"] / baseline["p95_ms"], 2),
        **cpu_figures(idle_cpu, connected_cpu, idle, agents),
        "cpu_ms_per_pop_and_bare_round": round(busy / rounds * 1000, 2),
    }


def main(bench: Callable[[int, int, float], dict[str, object]] = run, doc: str = __doc__, pops: int = 300) -> None:
    """The command line of ``bench`` (``run`` here): its figures as ``key value`` lines, or JSON."""
    parser = argparse.ArgumentParser(description=doc.split("\n\n", maxsplit=1)[0])
    parser.add_argument("--agents", type=int, default=50)
    parser.add_argument("--pops", type=int, default=pops)
    parser.add_argument("--idle", type=float, default=20.0, help="seconds of each CPU window")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    result = bench(args.agents, args.pops, args.idle)
    if args.json:
        print(json.dumps(result, indent=2))
        return
    for key, value in result.items():
        print(f"{key:30} {value}")


if __name__ == "__main__":
    main()
